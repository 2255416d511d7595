"""Routes under /api/v1/queues: depths, state counts and the consumers' current ratio; the ids in
each queue; the dead-letter queue (view, re-drive, purge); and the live stream of state changes.

Every figure comes from a structure's length or a counter the transition scripts keep; nothing
here scans the tasks, so the cost does not grow with how many are stored.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Body, Request
from fastapi.responses import StreamingResponse

from api.auth import Admin
from api.deps import CursorDep, LimitDep, OffsetDep, SettingsDep, StoreDep, TaskTypeDep, registered_type
from api.errors import REDIS_DOWN, ApiError
from api.listing import load_page
from api.routes import errors_doc
from api.schemas import (
    ErrorBody,
    OwnerBacklog,
    PriorityDepth,
    Purged,
    QueueDepths,
    QueueEntry,
    QueueStatus,
    QueueTasks,
    Requeued,
    RequeueRequest,
    TaskPage,
    ThroughputBucket,
    ThroughputHistory,
)
from core.policy import retry_share
from core.settings import Settings
from core.shards import CounterTotals
from core.states import State
from core.store import LIST_QUEUES, ZSET_QUEUES, AsyncTaskStore

log = logging.getLogger(__name__)
# Queues, the DLQ and the live stream show and change every task: admin keys only.
router = APIRouter(prefix="/api/v1/queues", tags=["queues"], dependencies=[Admin])

QUEUES = (*LIST_QUEUES, *ZSET_QUEUES)
TOP_OWNERS = 10  # a dashboard's panel: the keys that hold most of the backlog
SSE_EVENTS = ("snapshot", "transition", "progress", "ping")


async def read_status(store: AsyncTaskStore, settings: Settings) -> QueueStatus:
    """Depths read from the structures (in all and per priority level), counts per state, the keys
    with the most pending work, the live consumers, and the retry share they use now (the same
    function of the retry backlog every consumer computes). Both the status route and the live
    stream's snapshot are this."""
    depths = await store.depths()
    states = await store.state_counts()
    workers = await store.live_consumers()
    ratio = retry_share(
        settings.retry_ratio, settings.retry_ratio_floor, depths["retry"], settings.retry_pressure_threshold
    )
    return QueueStatus(
        queues=QueueDepths(**depths),
        states={State(name): count for name, count in states.items()},
        retry_ratio=ratio,
        workers=len(workers),
        priorities=[PriorityDepth(**level) for level in await store.priority_depths()],
        top_owners=[OwnerBacklog(**row) for row in await store.top_owners(TOP_OWNERS)],
    )


@router.get("/status", response_model=QueueStatus, responses=errors_doc())
async def queue_status(store: StoreDep, settings: SettingsDep) -> QueueStatus:
    """The pipeline at a glance: queue depths (in all and per priority level), tasks per state, the
    keys with the most pending tasks, retry ratio, live workers."""
    return await read_status(store, settings)


@router.get("/throughput", response_model=ThroughputHistory, responses=errors_doc())
async def throughput(store: StoreDep) -> ThroughputHistory:
    """Tasks completed and failed per second (the last minute) and per minute (the last hour),
    from the rings the finishing scripts tick: what a chart shows before the live stream adds to it."""
    now, seconds, minutes = await store.throughput_history()

    def buckets(rows: list[tuple[int, int, int]]) -> list[ThroughputBucket]:
        return [ThroughputBucket(start=start, completed=c, failed=f) for start, c, f in rows]

    return ThroughputHistory(now=now, seconds=buckets(seconds), minutes=buckets(minutes))


def sse(event: str, data: str) -> str:
    """One Server-Sent Event frame."""
    return f"event: {event}\ndata: {data}\n\n"


async def _stream(
    store: AsyncTaskStore, pubsub: Any, first: str, keepalive: float, totals: CounterTotals | None
) -> AsyncIterator[str]:
    try:
        yield sse("snapshot", first)
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=keepalive)
            if message is None:
                yield sse("ping", json.dumps({"at": await store.now_ms()}))
                continue
            data = message["data"]
            event = json.loads(data)
            if totals is not None and "counters" in event:  # several shards: the fleet's figures
                event["counters"] = totals.total(message["channel"], event["counters"])
                data = json.dumps(event)
            yield sse(str(event.get("event", "transition")), data)
    except REDIS_DOWN as exc:  # the client reconnects and gets a fresh snapshot
        log.warning("live stream ended: redis unreachable: %s", exc)
    finally:
        # A client that went away cancels this generator; shielded, the subscription still ends.
        with anyio.CancelScope(shield=True):
            await pubsub.aclose()


@router.get(
    "/status/stream",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "`text/event-stream`: a `snapshot` event (the status), then a `transition` event per "
            "state change and a `progress` event per progress report, and a `ping` event every "
            "SSE_KEEPALIVE_SECONDS while idle.",
            "content": {"text/event-stream": {"example": 'event: transition\ndata: {"event": "transition", '
                        '"task_id": "6f1c…", "from": "PENDING", "to": "ACTIVE", "at": 1763700000000, '
                        '"worker": "host:12:ab12cd", "counters": {"started": 42}}\n\n'}},
        },
        503: {"model": ErrorBody},
    },
)  # fmt: skip
async def status_stream(store: StoreDep, settings: SettingsDep) -> StreamingResponse:
    """Server-Sent Events: the status first, then every state change as the transition scripts
    publish it (the events are emitted in the same step as the change, so the stream cannot drift
    from the truth). Subscribed before the snapshot is read, so no change falls between them."""
    pubsub = store.pubsub()
    channels = store.event_channels
    await pubsub.subscribe(*channels)
    try:
        # SUBSCRIBE is only sent; its confirmations say Redis has it, and only then can no change
        # fall between the subscription and the snapshot read on another connection.
        for _ in channels:
            await pubsub.get_message(timeout=settings.redis_socket_timeout)
        first = (await read_status(store, settings)).model_dump_json()
        totals = CounterTotals(await store.channel_counters()) if len(channels) > 1 else None
    except BaseException:
        await pubsub.aclose()
        raise
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    stream = _stream(store, pubsub, first, settings.sse_keepalive_seconds, totals)
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)


@router.get("/dlq", response_model=TaskPage, responses=errors_doc(422))
async def dead_letters(store: StoreDep, limit: LimitDep, cursor: CursorDep, task_type: TaskTypeDep) -> TaskPage:
    """Dead tasks, most recently dead first, each with its type and the error that killed it.

    With `task_type`, only that type's dead tasks, in the same order: the DLQ (bounded by
    DLQ_MAX_SIZE) is read on and each entry's type checked, so pages are full unless some 2,000
    entries were checked first (FILTER_SCAN_MAX: then short, and `next_cursor` goes on)."""
    return await load_page(store, State.DLQ, limit, cursor, task_type=task_type, state_order=True)


async def _batches(settings: Settings, store: AsyncTaskStore) -> int:
    """How many batches cover the DLQ as it is now: a bulk action stops there, so tasks that die
    again meanwhile cannot keep it going forever."""
    return math.ceil((await store.depths())["dlq"] / settings.scheduler_batch_size)


@router.post("/dlq/requeue", response_model=Requeued, responses=errors_doc(422))
async def requeue_dead(
    request: Request, store: StoreDep, settings: SettingsDep, body: Annotated[RequeueRequest | None, Body()] = None
) -> Requeued:
    """Re-drive dead tasks to the retry list with a fresh retry budget: the `task_ids` given, or
    every dead task of `task_type` (an operator who fixed that type's configuration), or every dead
    task (without a body). Atomic per batch of SCHEDULER_BATCH_SIZE; `not_dead` lists the given
    ids that were not dead."""
    batch = settings.scheduler_batch_size
    if body is not None and body.task_ids is not None:
        moved, not_dead = await _requeue_ids(store, body.task_ids, batch)
        log.info("%d dead tasks requeued by id", moved)
        return Requeued(requeued=moved, not_dead=not_dead)
    if body is not None and body.task_type is not None:
        task_type = registered_type(request, body.task_type, ("body", "task_type"))
        moved, _moved_on = await _requeue_ids(store, await _dead_of_type(store, task_type, batch), batch)
        log.info("%d dead %s tasks requeued", moved, task_type)
        return Requeued(requeued=moved, not_dead=[])
    moved = 0
    for _ in range(await _batches(settings, store)):
        done, _skipped = await store.requeue_dead([], batch)
        moved += done
        if done < batch:
            break
    log.info("%d dead tasks requeued", moved)
    return Requeued(requeued=moved, not_dead=[])


async def _requeue_ids(store: AsyncTaskStore, task_ids: list[str], batch: int) -> tuple[int, list[str]]:
    """Re-drive `task_ids`, a batch per atomic step: how many moved, and the ids that were not dead."""
    moved, not_dead = 0, list[str]()
    for start in range(0, len(task_ids), batch):
        done, skipped = await store.requeue_dead(task_ids[start : start + batch], batch)
        moved, not_dead = moved + done, not_dead + skipped
    return moved, not_dead


async def _dead_of_type(store: AsyncTaskStore, task_type: str, batch: int) -> list[str]:
    """The ids of the DLQ as it is now whose task is of `task_type`, read page by page (the DLQ is
    bounded by DLQ_MAX_SIZE). Read before any moves, so tasks that die again meanwhile (newer than
    where the walk began) are not re-driven twice."""
    ids, cursor = list[str](), None
    while True:
        page = await store.page(State.DLQ, batch, cursor, task_type=task_type, state_order=True)
        ids += page.ids
        if page.cursor is None:
            return ids
        cursor = page.cursor


@router.delete("/dlq", response_model=Purged, responses=errors_doc())
async def purge_dead(store: StoreDep, settings: SettingsDep) -> Purged:
    """Delete every dead task (hash, history, index entries), oldest first, a batch per atomic step."""
    batch, deleted = settings.scheduler_batch_size, 0
    for _ in range(await _batches(settings, store)):
        done = await store.purge(State.DLQ, 0, 0, batch)
        deleted += done
        if done < batch:
            break
    # Deleting data is worth a warning; finding nothing to delete is not.
    log.log(logging.WARNING if deleted else logging.INFO, "%d dead tasks purged", deleted)
    return Purged(deleted=deleted)


@router.get("/{name}/tasks", response_model=QueueTasks, responses=errors_doc(404, 422))
async def queue_tasks(name: str, store: StoreDep, limit: LimitDep, offset: OffsetDep) -> QueueTasks:
    """The ids in one queue (`primary`, `retry`, `scheduled`, `dlq`), in queue order, a page at a
    time: FIFO for the pending lists, by due time for `scheduled`, by time of death for `dlq`."""
    if name not in QUEUES:
        raise ApiError(404, "queue_not_found", f"no queue {name!r}; expected one of {', '.join(QUEUES)}")
    total, rows = await store.queue_ids(name, offset, limit)
    more = offset + len(rows) < total and len(rows) == limit
    return QueueTasks(
        queue=name,  # type: ignore[arg-type]
        total=total,
        items=[QueueEntry(task_id=task_id, score=score) for task_id, score in rows],
        next_cursor=str(offset + limit) if more else None,
    )
