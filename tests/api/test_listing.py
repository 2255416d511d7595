"""GET /api/v1/tasks: pages, cursors and the status filter."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.api.conftest import Pipeline, submit

pytestmark = pytest.mark.anyio


async def walk(client: httpx.AsyncClient, path: str, **params: str | int) -> list[list[str]]:
    """Every page of a listing, following `next_cursor` until it is null."""
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get(path, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append([item["task_id"] for item in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 100, "cursor does not advance"


async def test_pages_cover_every_task_exactly_once_newest_first(client: httpx.AsyncClient) -> None:
    # Submitted back to back, many share a millisecond: page boundaries fall inside such ties.
    created = [await submit(client, f"text {i}") for i in range(23)]

    pages = await walk(client, "/api/v1/tasks/", limit=4)

    assert [len(p) for p in pages] == [4, 4, 4, 4, 4, 3]
    seen = [task_id for page in pages for task_id in page]
    assert sorted(seen) == sorted(created)
    assert len(set(seen)) == len(seen)
    listed = (await client.get("/api/v1/tasks", params={"limit": 20})).json()["items"]
    stamps = [item["created_at"] for item in listed]
    assert stamps == sorted(stamps, reverse=True)


async def test_exact_multiple_of_limit_ends_with_null_cursor(client: httpx.AsyncClient) -> None:
    for i in range(4):
        await submit(client, f"text {i}")

    pages = await walk(client, "/api/v1/tasks", limit=2)

    assert [len(p) for p in pages] == [2, 2]


async def test_empty_listing(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/tasks/")

    assert response.status_code == 200
    assert response.json() == {"items": [], "next_cursor": None}


async def test_default_limit_is_capped_by_list_page_max(client: httpx.AsyncClient) -> None:
    for i in range(21):
        await submit(client, f"text {i}")

    body = (await client.get("/api/v1/tasks/")).json()

    assert len(body["items"]) == 20  # list_page_max of these tests, below the default of 50
    assert body["next_cursor"] is not None


async def test_status_filter_case_insensitive(client: httpx.AsyncClient, pipeline: Pipeline) -> None:
    first, second, third = [await submit(client, f"text {i}") for i in range(3)]
    pipeline.complete(first)
    pipeline.fail(second)

    for value in ("COMPLETED", "completed", "Completed"):
        items = (await client.get("/api/v1/tasks/", params={"status": value})).json()["items"]
        assert [item["task_id"] for item in items] == [first]
    failed = (await client.get("/api/v1/tasks", params={"status": "failed"})).json()["items"]
    assert [(item["task_id"], item["last_error"]) for item in failed] == [(second, "input rejected")]
    pending = await walk(client, "/api/v1/tasks/", status="PENDING", limit=1)
    assert pending == [[third]]
    everything = (await client.get("/api/v1/tasks/", params={"status": ""})).json()["items"]
    assert len(everything) == 3


async def test_status_filter_pages_with_cursor(client: httpx.AsyncClient) -> None:
    created = [await submit(client, f"text {i}") for i in range(5)]
    for task_id in created[:3]:
        await client.post(f"/api/v1/tasks/{task_id}/cancel")

    pages = await walk(client, "/api/v1/tasks/", status="cancelled", limit=2)

    assert sorted(t for page in pages for t in page) == sorted(created[:3])


async def test_bad_status_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/tasks/", params={"status": "RUNNING"})

    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "invalid_status"
    assert "RUNNING" in body["message"] and "PENDING" in body["message"]


@pytest.mark.parametrize("limit", ["0", "-1", "21", "abc", "1.5"])
async def test_bad_limit_is_422(client: httpx.AsyncClient, limit: str) -> None:
    response = await client.get("/api/v1/tasks/", params={"limit": limit})

    assert response.status_code == 422
    body = response.json()
    assert body["code"] in ("invalid_limit", "validation_error")
    assert body["message"]


async def test_limit_bounds_are_inclusive(client: httpx.AsyncClient) -> None:
    for limit in (1, 20):
        assert (await client.get("/api/v1/tasks/", params={"limit": limit})).status_code == 200


# A fixed id: parametrized ids must be the same in every pytest-xdist worker (make test-fast).
FIXED_ID = "5b0e9a52-8a4e-4f0e-9c3d-2f1a7b6c4d8e"


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "123",
        "abc:" + FIXED_ID,
        "-5:" + FIXED_ID,
        "1.5:" + FIXED_ID,
        "12:not-a-uuid",
        "12:" + FIXED_ID.upper(),
        "inf:" + FIXED_ID,
        "(12:" + FIXED_ID,
        "١٢:" + FIXED_ID,  # Arabic-Indic digits: str.isdigit() says yes, Redis says no
    ],
)
async def test_bad_cursor_is_422_never_500(client: httpx.AsyncClient, cursor: str) -> None:
    await submit(client)

    for path in ("/api/v1/tasks/", "/api/v1/queues/dlq"):
        response = await client.get(path, params={"cursor": cursor})
        assert response.status_code == 422, (path, response.text)
        assert response.json()["code"] == "invalid_cursor"


async def test_well_formed_cursor_past_the_end_is_an_empty_page(client: httpx.AsyncClient) -> None:
    await submit(client)

    body = (await client.get("/api/v1/tasks/", params={"cursor": f"1:{uuid.uuid4()}"})).json()

    assert body == {"items": [], "next_cursor": None}
