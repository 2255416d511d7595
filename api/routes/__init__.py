"""One router per resource: tasks (and their submit routes), queues, a key's usage, health, metrics, provider;
the helpers every router's routes share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from api.schemas import ErrorBody


def errors_doc(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error bodies a route can return (plus 503, which every route can)."""
    return {status: {"model": ErrorBody} for status in (*statuses, 503)}


def add_both_slashes(router: APIRouter, method: str, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
    """Serve `path/` and `path` alike; a redirect between them would turn some clients' POST into a GET."""
    router.add_api_route(f"{path}/", endpoint, methods=[method], **kwargs)
    router.add_api_route(path, endpoint, methods=[method], include_in_schema=False, **kwargs)
