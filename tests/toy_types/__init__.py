"""Task types that exist only for the tests, loaded with TASK_TYPE_MODULES (never imported by the
test process itself: the registry is per process, and the API tests check its exact routes)."""
