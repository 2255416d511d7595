"""Logical shards (REDIS_SHARDS): the deployment's data split N ways, each shard a complete copy of
the data model (queues, indexes, counters) under a hash tag of its own, so a Redis Cluster spreads
the shards over its masters and every transition still touches one slot.

- A task lives on one shard for its whole life, and its id says which: the last byte of the UUID
  is the shard's number. Get, cancel, delete, retry and every worker report go straight to it.
- A submit goes to the shard of its Idempotency-Key's hash (a retry finds its first try), else to
  the next shard in turn; a bulk submit goes to one shard, so it stays one atomic step.
- A consumer claims from its home shard first, and stays with the shard that last gave it work
  until that one is empty, then tries the others in turn (an empty claim costs a script call, so
  it is not paid per task). Idle, it waits for a wake-up mark of any shard: one thread per shard
  blocks on that shard's list (a cluster cannot block on keys of several slots at once).
- Shard 0 is also the control shard: consumers' heartbeats and registry, the Celery workers'
  beats, the shared breaker, the fleet's rate limits, the provider's state, the scheduler's beat.
- Reads fan out: figures are summed, listings merged by score with a cursor that carries every
  shard's own position.
- Priorities, fairness and the per-key limits hold per shard.

With REDIS_SHARDS=1 (the default) the store is the one shard, and without a cluster the key names
are those of before shards (no hash tag).
"""

from __future__ import annotations

import asyncio
import base64
import heapq
import itertools
import json
import logging
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from redis.exceptions import RedisClusterException, RedisError

from core.keys import Keys, shard_keys
from core.redis import Durability
from core.settings import Settings
from core.states import State
from core.store import (
    AsyncTaskStore,
    Claim,
    Created,
    Durations,
    OwnerUsage,
    Page,
    TaskStore,
    cursor_after,
    ring_buckets,
    ring_sum,
)
from core.task import Task

# How long a shard's watcher blocks on its wake-up list per call (it then blocks again).
WATCH_SECONDS = 5.0
# A listing cursor over several shards: this mark, then base64 of the JSON list of each shard's
# own cursor ("" once that shard is done, null before its first page).
MERGED_CURSOR = "~"
T = TypeVar("T")
log = logging.getLogger("asynctaskflow.shards")


def shard_of(task_id: str, count: int) -> int:
    """The shard a task id names (its last byte); an id of no shard (made before shards, or not a
    task's) is shard 0's."""
    if count == 1:
        return 0
    try:
        shard = int(task_id[-2:], 16)
    except ValueError:
        return 0
    return shard if shard < count else 0


def new_task_id(shard: int, count: int) -> str:
    """A random UUID whose last byte names `shard` (a plain random UUID with one shard)."""
    raw = uuid.uuid4().hex
    return str(uuid.UUID(raw if count == 1 else raw[:-2] + f"{shard:02x}"))


def home_shard(consumer_id: str, count: int) -> int:
    """The shard a consumer claims from first."""
    return zlib.crc32(consumer_id.encode()) % count


def encode_cursor(cursors: list[str | None]) -> str:
    return MERGED_CURSOR + base64.urlsafe_b64encode(json.dumps(cursors).encode()).decode()


def decode_cursor(cursor: str | None, count: int) -> list[str | None] | None:
    """Each shard's own cursor from a merged one (None: the first page), or None if `cursor` is
    not one a listing over `count` shards returned."""
    if not cursor:
        return [None] * count
    if not cursor.startswith(MERGED_CURSOR):
        return None
    try:
        cursors = json.loads(base64.urlsafe_b64decode(cursor[len(MERGED_CURSOR) :].encode()))
    except ValueError:
        return None
    fine = isinstance(cursors, list) and len(cursors) == count
    return cursors if fine and all(c is None or isinstance(c, str) for c in cursors) else None


def merge_pages(pages: list[Page | None], cursors: list[str | None], limit: int) -> Page:
    """The newest `limit` entries of every shard's page (`None`: a shard already done), and the
    cursor that carries each shard on from the last entry taken of it (a shard whose page was
    taken whole goes on from that page's own cursor; one with none is done)."""
    heads = []
    for shard, page in enumerate(pages):
        if page is not None:
            entries = enumerate(zip(page.ids, page.scores, strict=True))
            heads += [(-score, _desc(task_id), shard, n) for n, (task_id, score) in entries]
    taken = heapq.nsmallest(limit, heads)
    count = Counter(shard for _, _, shard, _ in taken)
    next_cursors: list[str | None] = []
    for shard, page in enumerate(pages):
        if page is None:
            next_cursors.append("")
        elif count[shard] == len(page.ids):
            next_cursors.append(page.cursor or "")
        elif count[shard]:
            last = count[shard] - 1
            next_cursors.append(cursor_after(page.ids[last], page.scores[last], page.tag))
        else:
            next_cursors.append(cursors[shard])
    ids = [pages[shard].ids[n] for _, _, shard, n in taken]  # type: ignore[union-attr]
    more = any(c != "" for c in next_cursors)
    return Page(ids, encode_cursor(next_cursors) if more else None, [-neg for neg, _, _, _ in taken])


def _desc(text: str) -> tuple[int, ...]:
    """A key that sorts strings in reverse, as Redis orders ties of a reversed range."""
    return tuple(-b for b in text.encode())


def _sum(dicts: Iterable[dict[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for d in dicts:
        total.update(d)
    return dict(total)


class CounterTotals:
    """Fleet-wide counter values for the live stream: an event carries the new values of its own
    shard's counters, so the totals add the latest value seen of every shard (seeded with each
    shard's counters when the stream starts; values are absolute, so nothing is counted twice)."""

    def __init__(self, per_channel: dict[str, dict[str, int]]) -> None:
        self._latest = per_channel

    def total(self, channel: str, counters: dict[str, int]) -> dict[str, int]:
        self._latest.setdefault(channel, {}).update(counters)
        return {name: sum(latest.get(name, 0) for latest in self._latest.values()) for name in counters}


class ShardedTaskStore(TaskStore):
    """TaskStore's interface over every shard: itself the control shard (what it does not
    override runs there), each task's calls on the task's own shard, the rest on all of them."""

    def __init__(self, client: Any, keys: list[Keys], durability: Durability | None = None) -> None:
        super().__init__(client, keys[0], durability)
        self.shards = [TaskStore(client, k, durability) for k in keys]
        self._claiming: dict[str, int] = {}  # consumer → the shard that last gave it work
        self._woken = threading.Event()
        self._watchers: list[threading.Thread] = []
        self._watch_lock = threading.Lock()

    def at(self, task_id: str) -> TaskStore:
        return self.shards[shard_of(task_id, len(self.shards))]

    # --- one task: its own shard ----------------------------------------------------------------
    def create(self, task: Task) -> Task:
        return self.at(task.id).create(task)

    def get(self, task_id: str) -> Task:
        return self.at(task_id).get(task_id)

    def history(self, task_id: str) -> list[dict[str, Any]]:
        return self.at(task_id).history(task_id)

    def complete(
        self, task_id: str, consumer_id: str, token: str, result: str, provider: str, model: str = "",
        usage: dict[str, int] | None = None,
    ) -> None:  # fmt: skip
        self.at(task_id).complete(task_id, consumer_id, token, result, provider, model, usage)

    def requeue_failed(self, task_id: str) -> bool:
        return self.at(task_id).requeue_failed(task_id)

    def save_chunk(self, task_id: str, token: str, field: str, value: str, ttl_ms: int) -> None:
        self.at(task_id).save_chunk(task_id, token, field, value, ttl_ms)

    def chunks(self, task_id: str) -> dict[str, str]:
        return self.at(task_id).chunks(task_id)

    def drop_chunks(self, task_id: str) -> None:
        self.at(task_id).drop_chunks(task_id)

    def set_progress(self, task_id: str, token: str, progress: int, step: str = "") -> None:
        self.at(task_id).set_progress(task_id, token, progress, step)

    def schedule_retry(
        self, task_id: str, consumer_id: str, token: str, delay: float, error: str, error_type: str,
        spend: bool = True, streak: str = "reset",
    ) -> int:  # fmt: skip
        return self.at(task_id).schedule_retry(task_id, consumer_id, token, delay, error, error_type, spend, streak)

    def rate_limit_streak(self, task_id: str) -> tuple[int, int]:
        return self.at(task_id).rate_limit_streak(task_id)

    def fail(self, task_id: str, consumer_id: str, token: str, target: State, error: str, error_type: str) -> None:
        self.at(task_id).fail(task_id, consumer_id, token, target, error, error_type)

    def release(self, task_id: str, consumer_id: str, token: str, reason: str, error_type: str) -> None:
        self.at(task_id).release(task_id, consumer_id, token, reason, error_type)

    def recover(self, task_id: str, consumer_id: str, token: str, reason: str) -> str:
        return self.at(task_id).recover(task_id, consumer_id, token, reason)

    # --- a consumer's work: home shard first, then where the work is ---------------------------
    def claim(self, consumer_id: str, token: str, prefer_retry: bool) -> Claim:
        count = len(self.shards)
        start = self._claiming.get(consumer_id, home_shard(consumer_id, count))
        claim = Claim("empty", "")
        for index in [(start + n) % count for n in range(count)]:
            claim = self.shards[index].claim(consumer_id, token, prefer_retry)
            if claim.status != "empty":
                self._claiming[consumer_id] = index
                return claim
        self._claiming.pop(consumer_id, None)  # all empty: home first again
        return claim

    def wait_for_work(self, timeout: float, consumer_id: str = "") -> bool:  # noqa: ARG002 - any shard's work
        """Wait up to `timeout` seconds for a wake-up mark on any shard."""
        with self._watch_lock:
            if not self._watchers:
                self._watchers = [threading.Thread(target=self._watch, args=(shard,), daemon=True)
                                  for shard in self.shards]  # fmt: skip
                for watcher in self._watchers:
                    watcher.start()
        woken = self._woken.wait(timeout)
        self._woken.clear()
        return woken

    def _watch(self, shard: TaskStore) -> None:
        """A watcher thread: block on `shard`'s wake-up list, and wake the consumer on a mark."""
        while True:
            try:
                if shard.wait_for_work(WATCH_SECONDS):
                    self._woken.set()
            except (RedisError, RedisClusterException, OSError) as e:  # Redis away: the consumer's loop says so
                log.debug("wake-up watcher: %s", e)
                time.sleep(1.0)

    def inflight_count(self, consumer_id: str) -> int:
        return sum(shard.inflight_count(consumer_id) for shard in self.shards)

    def inflight_ids(self, consumer_id: str) -> list[str]:
        """Oldest claim first across the shards, as on one: the consumer's `worker_lost` takes the
        oldest CELERY_WORKER_CONCURRENCY of them for the ones its worker had started."""
        return [task_id for _, task_id in self.inflight_claimed_at(consumer_id)]

    def inflight_claimed_at(self, consumer_id: str) -> list[tuple[int, str]]:
        return sorted((pair for shard in self.shards for pair in shard.inflight_claimed_at(consumer_id)),
                      key=lambda pair: pair[0])  # fmt: skip

    # --- every shard --------------------------------------------------------------------------
    def beat(self, consumer_id: str, info: dict[str, Any], ttl: float) -> None:
        """The heartbeat on the control shard; the consumer's counts kept on every shard."""
        super().beat(consumer_id, info, ttl)
        for shard in self.shards[1:]:
            shard.keep_consumer_stats(consumer_id)

    def keep_consumer_stats(self, consumer_id: str) -> None:
        for shard in self.shards:
            shard.keep_consumer_stats(consumer_id)

    def recover_expired_leases(self, lease_seconds: float, batch: int) -> int:
        return sum(shard.recover_expired_leases(lease_seconds, batch) for shard in self.shards)

    def promote_due(self, batch: int) -> int:
        return sum(shard.promote_due(batch) for shard in self.shards)

    def fold_tally(self) -> int:
        return sum(shard.fold_tally() for shard in self.shards)

    def retry_backlog(self) -> int:
        return sum(shard.retry_backlog() for shard in self.shards)

    def adopt_legacy(self, batch: int) -> int:
        return sum(shard.adopt_legacy(batch) for shard in self.shards)

    def set_limits(self, limits: dict[str, int]) -> int:
        return sum(shard.set_limits(limits) for shard in self.shards)

    def purge(self, state: State, retention_ms: int, max_keep: int | None, batch: int) -> int:
        return sum(shard.purge(state, retention_ms, max_keep, batch) for shard in self.shards)

    def prune_token_days(self, count: int) -> int:
        return sum(shard.prune_token_days(count) for shard in self.shards)


class ShardedAsyncTaskStore(AsyncTaskStore):
    """AsyncTaskStore's interface over every shard, as ShardedTaskStore's."""

    def __init__(self, client: Any, keys: list[Keys], durability: Durability | None = None) -> None:
        super().__init__(client, keys[0], durability)
        self.shards = [AsyncTaskStore(client, k, durability) for k in keys]
        self._turn = itertools.count()

    def at(self, task_id: str) -> AsyncTaskStore:
        return self.shards[shard_of(task_id, len(self.shards))]

    async def _each(self, call: Callable[[AsyncTaskStore], Awaitable[T]]) -> list[T]:
        """`call` on every shard at once (a read's latency is one shard's, not N)."""
        return list(await asyncio.gather(*(call(shard) for shard in self.shards)))

    def _grouped(self, task_ids: list[str]) -> dict[int, list[str]]:
        """The ids by the shard each names, in their order."""
        by_shard: dict[int, list[str]] = {}
        for task_id in task_ids:
            by_shard.setdefault(shard_of(task_id, len(self.shards)), []).append(task_id)
        return by_shard

    # --- submit --------------------------------------------------------------------------------
    def shard_for(self, idempotency_key: str) -> int:
        """The Idempotency-Key's shard (its retry goes where the first try went), else the next
        in turn."""
        if idempotency_key:
            return zlib.crc32(idempotency_key.encode()) % len(self.shards)
        return next(self._turn) % len(self.shards)

    def new_task_id(self, shard: int) -> str:
        return new_task_id(shard, len(self.shards))

    @property
    def event_channels(self) -> list[str]:
        return [shard.keys.events for shard in self.shards]

    async def channel_counters(self) -> dict[str, dict[str, int]]:
        return dict(zip(self.event_channels, await self._each(lambda shard: shard.counters()), strict=True))

    async def create(self, task: Task) -> Task:
        return await self.at(task.id).create(task)

    async def create_many(self, tasks: list[Task], idempotency_key: str = "", retention_ms: int = 0) -> Created:
        shards = {shard_of(task.id, len(self.shards)) for task in tasks}
        if len(shards) > 1:
            raise ValueError("tasks created in one step must share their shard")
        return await self.shards[shards.pop() if shards else 0].create_many(tasks, idempotency_key, retention_ms)

    # --- one task: its own shard ----------------------------------------------------------------
    async def history(self, task_id: str) -> list[dict[str, Any]]:
        return await self.at(task_id).history(task_id)

    async def get(self, task_id: str) -> Task:
        return await self.at(task_id).get(task_id)

    async def owner_of(self, task_id: str) -> str:
        return await self.at(task_id).owner_of(task_id)

    async def retry(self, task_id: str) -> State:
        return await self.at(task_id).retry(task_id)

    async def cancel(self, task_id: str) -> State:
        return await self.at(task_id).cancel(task_id)

    async def delete(self, task_id: str) -> None:
        await self.at(task_id).delete(task_id)

    async def get_many(self, task_ids: list[str]) -> list[Task]:
        by_shard = self._grouped(task_ids)
        found = {t.id: t for shard, ids in by_shard.items() for t in await self.shards[shard].get_many(ids)}
        return [found[task_id] for task_id in task_ids if task_id in found]

    async def requeue_dead(self, task_ids: list[str], batch: int) -> tuple[int, list[str]]:
        if not task_ids:
            replies = await self._each(lambda shard: shard.requeue_dead([], batch))
        else:
            replies = [await self.shards[n].requeue_dead(ids, batch) for n, ids in self._grouped(task_ids).items()]
        return sum(n for n, _ in replies), [i for _, skipped in replies for i in skipped]

    async def purge(self, state: State, retention_ms: int, max_keep: int | None, batch: int) -> int:
        return sum(await self._each(lambda shard: shard.purge(state, retention_ms, max_keep, batch)))

    # --- listings: merged by score --------------------------------------------------------------
    async def page(
        self,
        state: State | None,
        limit: int,
        cursor: str | None,
        owner: str = "",
        task_type: str = "",
        state_order: bool = False,
        priority: int | None = None,
    ) -> Page:
        cursors = decode_cursor(cursor, len(self.shards))
        if cursors is None:
            raise ValueError("not a cursor of this listing")

        async def read(shard: AsyncTaskStore, at: str | None) -> Page | None:  # "": that shard is done
            return None if at == "" else await shard.page(state, limit, at, owner, task_type, state_order, priority)

        pages = await asyncio.gather(*(read(shard, at) for shard, at in zip(self.shards, cursors, strict=True)))
        return merge_pages(list(pages), cursors, limit)

    async def queue_ids(self, queue: str, offset: int, limit: int) -> tuple[int, list[tuple[str, int | None]]]:
        """Shard after shard, each in its own queue order."""
        total, rows = 0, list[tuple[str, int | None]]()
        for shard in self.shards:
            length, _ = await shard.queue_ids(queue, 0, 0)
            skip = max(0, offset - total)
            if len(rows) < limit and skip < length:
                rows += (await shard.queue_ids(queue, skip, limit - len(rows)))[1]
            total += length
        return total, rows

    # --- figures: summed ----------------------------------------------------------------------
    async def depths(self) -> dict[str, int]:
        return _sum(await self._each(lambda shard: shard.depths()))

    async def priority_depths(self) -> list[dict[str, int]]:
        levels = zip(*await self._each(lambda shard: shard.priority_depths()), strict=True)
        return [{**rows[0], **{side: sum(r[side] for r in rows) for side in ("primary", "retry")}} for rows in levels]

    async def state_counts(self) -> dict[str, int]:
        return _sum(await self._each(lambda shard: shard.state_counts()))

    async def counters(self) -> dict[str, int]:
        return _sum(await self._each(lambda shard: shard.counters()))

    async def type_counters(self) -> dict[str, dict[str, int]]:
        merged: dict[str, dict[str, int]] = {}
        for by_type in await self._each(lambda shard: shard.type_counters()):
            for task_type, counters in by_type.items():
                merged[task_type] = _sum([merged.get(task_type, {}), counters])
        return merged

    async def type_sizes(self, task_types: list[str]) -> dict[str, int]:
        return _sum(await self._each(lambda shard: shard.type_sizes(task_types)))

    async def durations(self) -> Durations:
        each = await self._each(lambda shard: shard.durations())
        counts = [sum(column) for column in zip(*(d.counts for d in each), strict=True)]
        return Durations(counts, sum(d.overflow for d in each), sum(d.sum_ms for d in each), sum(d.count for d in each))

    async def throughput(self) -> dict[str, dict[str, int]]:
        now, rings = await self._all_rings()
        return {
            "last_minute": _sum(ring_sum(seconds, now // 1000, 60) for seconds, _ in rings),
            "last_hour": _sum(ring_sum(minutes, now // 60_000, 60) for _, minutes in rings),
        }

    async def throughput_history(self) -> tuple[int, list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        now, rings = await self._all_rings()

        def summed(index: int, unit_ms: int) -> list[tuple[int, int, int]]:
            each = [ring_buckets(ring[index], unit_ms, now, 60) for ring in rings]
            return [(rows[0][0], sum(r[1] for r in rows), sum(r[2] for r in rows)) for rows in zip(*each, strict=True)]

        return now, summed(0, 1000), summed(1, 60_000)

    async def _all_rings(self) -> tuple[int, list[tuple[dict[str, str], dict[str, str]]]]:
        """Every shard's rings, read against the control shard's clock (one bucket grid)."""
        read = await self._each(lambda shard: shard._rings())
        return read[0][0], [(seconds, minutes) for _, seconds, minutes in read]

    async def top_owners(self, count: int) -> list[dict[str, Any]]:
        totals: dict[str, Counter[str]] = {}
        for rows in await self._each(lambda shard: shard.top_owners(count)):
            for row in rows:
                totals.setdefault(row["owner"], Counter()).update({"backlog": row["backlog"], "active": row["active"]})
        ranked = sorted(totals.items(), key=lambda item: -item[1]["backlog"])[:count]
        return [{"owner": owner, "backlog": c["backlog"], "active": c["active"]} for owner, c in ranked]

    async def usage(self, owner: str) -> OwnerUsage:
        """The limits as each shard enforces them, the use summed; held until the latest hold."""
        each = await self._each(lambda shard: shard.usage(owner))
        holds = [u.held_until for u in each if u.held_until is not None]
        first = each[0]
        return OwnerUsage(
            owner=owner, day=first.day, concurrency=first.concurrency, daily_tokens=first.daily_tokens,
            active=sum(u.active for u in each), backlog=sum(u.backlog for u in each),
            tokens_today=sum(u.tokens_today for u in each), held_until=max(holds) if holds else None,
        )  # fmt: skip

    async def consumer_stats(self, consumer_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Each shard counts what a consumer took and settled of it: summed."""
        merged: dict[str, dict[str, Any]] = {}
        for stats in await self._each(lambda shard: shard.consumer_stats(consumer_ids)):
            for consumer_id, figures in stats.items():
                into = merged.setdefault(consumer_id, {"taken": {}})
                for name, value in figures.items():
                    if name == "taken":
                        into["taken"] = _sum([into["taken"], value])
                    else:
                        into[name] = into.get(name, 0) + value
        return merged

    async def ping(self) -> bool:
        return all(await self._each(lambda shard: shard.ping()))


def open_store(settings: Settings, client: Any, durability: Durability | None = None) -> TaskStore:
    """The deployment's store for the consumer, worker and scheduler: one shard's TaskStore, or
    the sharded one (REDIS_SHARDS > 1)."""
    keys = shard_keys(settings)
    return TaskStore(client, keys[0], durability) if len(keys) == 1 else ShardedTaskStore(client, keys, durability)


def open_async_store(settings: Settings, client: Any, durability: Durability | None = None) -> AsyncTaskStore:
    """The deployment's store for the API, as `open_store`."""
    keys = shard_keys(settings)
    if len(keys) == 1:
        return AsyncTaskStore(client, keys[0], durability)
    return ShardedAsyncTaskStore(client, keys, durability)
