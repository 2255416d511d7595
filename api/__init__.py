"""The HTTP API: submit tasks, read them, operate the queues. Talks only to Redis, never to Celery."""
