"""One router per resource: tasks, queues, health."""
