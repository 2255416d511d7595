"""`python -m utils.reset_redis` (in compose: `docker compose run --rm reset`): inspect, and on
request reset, this deployment's state in Redis.

Without `--confirm` it only reads: queue depths, tasks per state, tasks in flight, workers, and
how many keys belong to the deployment. With `--confirm` it deletes this deployment's keys and
nothing else: the names come from `core.keys` (its `all_patterns`, under REDIS_KEY_PREFIX) and
are found with SCAN and removed with UNLINK, never FLUSHDB/FLUSHALL, so another application or
deployment sharing the server keeps its data.

- `--keep-tasks` deletes only the runtime state (consumer registry, heartbeats and counts,
  in-flight lists, the shared circuit breaker) and keeps every task and queue: the reset for a stuck deployment.
- `--drain` (with `--keep-tasks`) first hands every task in flight back to the queue, the way a
  consumer does on shutdown (no retry spent), so the reset loses nothing it was not asked to.
- `--broker` also deletes this deployment's Celery queues (and their bindings and unacked
  messages) in the broker database CELERY_BROKER_DB, or CELERY_BROKER_URL when that is a Redis;
  other Celery apps there are left alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from kombu.transport.redis import Channel

from core.errors import AsyncTaskFlowError
from core.keys import Keys, shard_keys
from core.redis import SyncClient, broker_client, redis_location, sync_client
from core.settings import Settings, get_settings
from core.shards import open_store
from core.states import State
from core.store import DEPTH_FIELDS, TaskStore, side_depths

SCAN_COUNT = 1000  # keys per SCAN step: large enough to be quick, small enough not to stall Redis
DELETE_BATCH = 500


@dataclass(frozen=True)
class Snapshot:
    """What the deployment holds right now."""

    queues: dict[str, int]
    states: dict[str, int]
    inflight: int
    workers_live: int
    workers_registered: int
    keys: int


def scan(client: SyncClient, patterns: Iterable[str]) -> dict[str, list[str]]:
    """Keys matching each pattern, found with SCAN (never KEYS, which blocks the server)."""
    return {p: sorted(set(client.scan_iter(match=p, count=SCAN_COUNT))) for p in patterns}


def unlink(client: SyncClient, names: Sequence[str]) -> int:
    """Delete in batches with UNLINK, which frees memory in the background."""
    return sum(int(client.unlink(*names[i : i + DELETE_BATCH])) for i in range(0, len(names), DELETE_BATCH))


def runtime_patterns(keys: Keys) -> list[str]:
    """The keys that describe running processes rather than tasks."""
    runtime = [keys.consumers, keys.heartbeat("*"), keys.consumer_stats("*"), keys.scheduler_heartbeat]
    return [*runtime, keys.inflight("*"), f"{keys.breaker_namespace}:*"]


def inflight_lists(client: SyncClient, keys: Keys) -> dict[str, list[str]]:
    """Task ids per consumer, for every in-flight list (registered or not)."""
    owner_at = len(keys.inflight(""))
    names = scan(client, [keys.inflight("*")])[keys.inflight("*")]
    return {name[owner_at:]: [str(i) for i in client.lrange(name, 0, -1)] for name in names}


def snapshot(client: SyncClient, keys: Keys) -> Snapshot:
    pipe = client.pipeline(transaction=False)
    pipe.hmget(keys.depth, list(DEPTH_FIELDS))
    for index in (keys.scheduled, keys.dlq):
        pipe.zcard(index)
    for state in State:
        pipe.zcard(keys.state_index(state))
    pending, *replies = pipe.execute()
    replies = list(side_depths(pending).values()) + replies
    registered = [str(c) for c in client.smembers(keys.consumers)]
    live = sum(1 for c in registered if client.exists(keys.heartbeat(c)) > 0)
    return Snapshot(
        queues=dict(zip(("primary", "retry", "scheduled", "dlq"), replies[:4], strict=True)),
        states={s.value: n for s, n in zip(State, replies[4:], strict=True)},
        inflight=sum(len(ids) for ids in inflight_lists(client, keys).values()),
        workers_live=live,
        workers_registered=len(registered),
        keys=sum(len(found) for found in scan(client, keys.all_patterns).values()),
    )


def describe(snap: Snapshot) -> list[str]:
    return [
        "queues:    " + ", ".join(f"{name} {n}" for name, n in snap.queues.items()),
        "by state:  " + ", ".join(f"{state} {n}" for state, n in snap.states.items()),
        f"in flight: {snap.inflight}",
        f"live workers: {snap.workers_live} of {snap.workers_registered} registered",
        f"keys:      {snap.keys} belong to this deployment",
    ]


def drain(store: TaskStore, client: SyncClient, keys: Keys) -> int:
    """Hand every task in flight back to the queue, as a stopping consumer does: an ACTIVE attempt
    is released to the head of its owner's new-work list (no retry spent); an id an old consumer
    moved but never claimed goes back through `recover`. A worker still running such an attempt
    has its result refused."""
    returned = 0
    reason = "handed back by the reset tool"
    for consumer_id, task_ids in inflight_lists(client, keys).items():
        for task_id in task_ids:
            try:
                store.release(task_id, consumer_id, store.get(task_id).attempt, reason, "reset")
                returned += 1
            except AsyncTaskFlowError:
                returned += store.recover(task_id, consumer_id, "", reason) == "requeued"
    return returned


def _ours(entry: str, queue_pattern: str) -> bool:
    """An unacked Celery message (JSON [payload, exchange, routing key]) bound for our queues."""
    try:
        _payload, exchange, routing_key = json.loads(entry)
    except ValueError:
        return False
    return any(fnmatchcase(str(name), queue_pattern) for name in (exchange, routing_key))


def reset_broker(broker: SyncClient, keys: Keys) -> dict[str, int]:
    """Delete this deployment's Celery queues, their bindings and their unacked messages. Key
    names of the broker are kombu's (read from its Redis transport), not ours."""
    queues = keys.dispatch_queue("*")
    # kombu 5.7 also keeps, per exchange (ours are named as their queue), a set of its permanent
    # bindings, and the exchanges' binding deadlines in one shared sorted set.
    patterns = [queues, Channel.keyprefix_queue % queues]
    permanent = getattr(Channel, "keyprefix_binding_permanent", None)
    if permanent:
        patterns.append(permanent % queues)
    deleted = {pattern: unlink(broker, names) for pattern, names in scan(broker, patterns).items()}
    deadlines = getattr(Channel, "keyprefix_binding_deadlines", None)
    if deadlines:
        exchanges = [name for name, _ in broker.zscan_iter(deadlines, match=queues, count=SCAN_COUNT)]
        deleted[deadlines] = broker.zrem(deadlines, *exchanges) if exchanges else 0
    tags = [tag for tag, entry in broker.hscan_iter(Channel.unacked_key, count=SCAN_COUNT) if _ours(entry, queues)]
    if tags:
        broker.hdel(Channel.unacked_key, *tags)
        broker.zrem(Channel.unacked_index_key, *tags)
    deleted[Channel.unacked_key] = len(tags)
    return deleted


def delete(client: SyncClient, patterns: list[str]) -> dict[str, int]:
    return {pattern: unlink(client, names) for pattern, names in scan(client, patterns).items()}


def report(title: str, deleted: dict[str, int]) -> None:
    print(f"{title}: {sum(deleted.values())}")
    for pattern, count in deleted.items():
        print(f"  {pattern:<40} {count}")


def state(client: SyncClient, shards: list[Keys]) -> Snapshot:
    """The deployment's state, every shard's added up (shard 0 holds the workers' registry)."""
    snaps = [snapshot(client, keys) for keys in shards]
    first = snaps[0]
    return Snapshot(
        queues={name: sum(s.queues[name] for s in snaps) for name in first.queues},
        states={name: sum(s.states[name] for s in snaps) for name in first.states},
        inflight=sum(s.inflight for s in snaps),
        workers_live=first.workers_live,
        workers_registered=first.workers_registered,
        keys=sum(s.keys for s in snaps),
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    shards = shard_keys(settings)
    keys = shards[0]
    broker = broker_client(settings) if args.broker else None
    if args.broker and broker is None:
        print("--broker: CELERY_BROKER_URL is not a Redis; clean its queues with that broker's own tools")
        return 2
    client = sync_client(settings)
    print(f"Redis {redis_location(settings)}, key prefix {settings.redis_key_prefix!r}")
    print("\n".join(describe(state(client, shards))))
    if not args.confirm:
        print("nothing changed; run again with --confirm to delete (see --help)")
        return 0
    if args.drain:
        store = open_store(settings, client)
        print(f"handed back to the queue: {sum(drain(store, client, shard) for shard in shards)}")
    patterns = [p for shard in shards for p in (runtime_patterns(shard) if args.keep_tasks else shard.all_patterns)]
    report("deleted keys", delete(client, patterns))
    if broker is not None:
        where = "CELERY_BROKER_URL" if settings.celery_broker_url else f"database {settings.celery_broker_db}"
        report(f"deleted from the broker ({where})", reset_broker(broker, keys))
    print("\n".join(describe(state(client, shards))))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m utils.reset_redis", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--confirm", action="store_true", help="delete (without it, only show the state)")
    p.add_argument("--keep-tasks", action="store_true", help="delete only workers, in-flight lists and the breaker")
    p.add_argument("--drain", action="store_true", help="with --keep-tasks: first return in-flight tasks to the queue")
    p.add_argument("--broker", action="store_true", help="also delete this deployment's Celery queues")
    return p


def main(argv: Sequence[str] | None = None, settings: Settings | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.drain and not args.keep_tasks:
        p.error("--drain needs --keep-tasks: a full reset deletes the tasks it would hand back")
    return run(args, settings or get_settings())


if __name__ == "__main__":
    sys.exit(main())
