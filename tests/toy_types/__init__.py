"""Task types that exist only in the test suite, loaded with TASK_TYPE_MODULES."""
