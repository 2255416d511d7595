"""Prometheus exposition, computed from Redis at scrape time (no in-process state, so any number
of API replicas report the same figures)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from core.keys import PRIORITIES, SIDES
from core.store import DURATION_BUCKETS_MS, Durations

BREAKER_STATES = ("closed", "open", "half-open")

# Every transition counter the scripts move (`counter = '…'` in core/scripts/*.lua; a test holds
# this list complete). Each is exported from the first scrape, at 0 until it moves, so a
# `rate()` alert on, say, `dead` works before the first task ever died.
TASK_EVENTS = (
    "submitted", "started", "taken_primary", "taken_retry", "completed", "failed", "dead", "retried",
    "postponed", "released", "recovered", "requeued", "requeued_failed", "requeued_cancelled", "promoted",
    "cancelled", "deleted", "expired",
)  # fmt: skip
# The transition counters also kept per task type (count_type() in create, complete, fail,
# schedule_retry and recover, which know the task's type; a test holds this list complete): each
# registered type has each series from the first scrape, at 0.
TYPE_EVENTS = ("submitted", "completed", "failed", "dead", "retried", "postponed", "recovered")
# Counters in the same hash that count LLM tokens, not transitions: their own metric, by kind,
# so that `sum(rate(atf_task_events_total[5m]))` adds up events only.
TOKEN_COUNTERS = {"prompt_tokens": "prompt", "completion_tokens": "completion"}


@dataclass
class Snapshot:
    """Everything one scrape reports, as read from Redis."""

    depths: dict[str, int]
    states: dict[str, int]
    totals: dict[str, int]
    durations: Durations
    breaker: str
    workers: int
    scheduler_alive: bool
    retry_ratio: float
    type_counters: dict[str, dict[str, int]] = field(default_factory=dict)  # type -> counter -> value
    type_sizes: dict[str, int] = field(default_factory=dict)  # tasks stored per type (every registered one)
    priorities: list[dict[str, int]] = field(default_factory=list)  # PENDING per level: {priority, primary, retry}


# Run times are whole milliseconds, so a run of m ms stands for [m - 0.5, m + 0.5). Below this
# bound the buckets are one millisecond wide, and each is exposed with its upper bound half a
# millisecond up (the same counts: no whole-ms run lies between b and b + 0.5), so that
# histogram_quantile's interpolation centres on m: with `le="0.005"` it put a 5 ms run at 4.5 ms.
WHOLE_MS_BUCKETS_UNTIL = 10


def _le(bound_ms: int) -> str:
    """The `le` label (seconds) of the bucket whose upper bound is `bound_ms` whole milliseconds."""
    upper = bound_ms + 0.5 if bound_ms <= WHOLE_MS_BUCKETS_UNTIL else bound_ms
    return repr(upper / 1000)


def _histogram(durations: Durations) -> HistogramMetricFamily:
    cumulative, buckets = 0, []
    for bound, count in zip(DURATION_BUCKETS_MS, durations.counts, strict=True):
        cumulative += count
        buckets.append((_le(bound), cumulative))
    buckets.append(("+Inf", cumulative + durations.overflow))
    family = HistogramMetricFamily("atf_task_duration_seconds", "Run time of completed attempts.")
    family.add_metric([], buckets, sum_value=durations.sum_ms / 1000)
    return family


def _gauge(name: str, doc: str, label: str, values: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key, value in values.items():
        family.add_metric([key], value)
    return family


def _queue_depth(s: Snapshot) -> GaugeMetricFamily:
    """Each queue's length; the pending sides (primary, retry) per priority level, every level from
    the first scrape (0 when empty), so `sum by (queue)` gives the totals; the sorted sets (scheduled,
    dlq) have no level: one sample each, with `priority=""`."""
    family = GaugeMetricFamily("atf_queue_depth", "Length of each queue structure, per priority level.",
                               labels=["queue", "priority"])  # fmt: skip
    levels = {level["priority"]: level for level in s.priorities}
    for side in SIDES:
        for priority in PRIORITIES:
            family.add_metric([side, str(priority)], levels.get(priority, {}).get(side, 0))
    for queue, depth in s.depths.items():
        if queue not in SIDES:
            family.add_metric([queue, ""], depth)
    return family


def _counters(totals: dict[str, int]) -> Iterator[Metric]:
    """Transitions by event (every known one, 0 until it moves), and LLM tokens by kind."""
    events = CounterMetricFamily("atf_task_events", "Transitions counted by the scripts, by kind.", labels=["event"])
    names = set(TASK_EVENTS) | {n for n in totals if n not in TOKEN_COUNTERS}
    for name in sorted(names):
        events.add_metric([name], totals.get(name, 0))
    yield events
    tokens = CounterMetricFamily("atf_llm_tokens", "LLM tokens of completed attempts, by kind.", labels=["kind"])
    for counter, kind in TOKEN_COUNTERS.items():
        tokens.add_metric([kind], totals.get(counter, 0))
    yield tokens


def _per_type(s: Snapshot) -> Iterator[Metric]:
    """Transitions by type and event (each type's TYPE_EVENTS from the first scrape, at 0), and
    the tasks of each type stored now. Their own families: `atf_task_events_total` keeps meaning
    all tasks, and its sum is not doubled by these series."""
    events = CounterMetricFamily(
        "atf_task_type_events", "Transitions of one task type, counted by the scripts, by kind.",
        labels=["task_type", "event"],
    )  # fmt: skip
    for task_type in sorted(s.type_sizes.keys() | s.type_counters.keys()):
        moved = s.type_counters.get(task_type, {})
        for name in sorted(set(TYPE_EVENTS) | moved.keys()):
            events.add_metric([task_type, name], moved.get(name, 0))
    yield events
    stored = "Tasks of each type stored now, whatever their state."
    yield _gauge("atf_task_type_tasks", stored, "task_type", s.type_sizes)


def families(s: Snapshot) -> Iterator[Metric]:
    """The metric families of one snapshot."""
    yield _queue_depth(s)
    yield _gauge("atf_tasks", "Tasks in each state now.", "state", s.states)
    yield from _counters(s.totals)
    yield from _per_type(s)
    yield _histogram(s.durations)
    breaker = {state: int(state == s.breaker) for state in BREAKER_STATES}
    yield _gauge("atf_circuit_breaker_state", "1 for the shared breaker's current state.", "state", breaker)
    yield GaugeMetricFamily("atf_workers_alive", "Consumer/worker pairs with a live heartbeat.", value=s.workers)
    yield GaugeMetricFamily("atf_scheduler_alive", "1 while a scheduler beats.", value=int(s.scheduler_alive))
    yield GaugeMetricFamily("atf_retry_ratio", "Share of pops preferring the retry list now.", value=s.retry_ratio)


class _OneScrape:
    """A collector that yields the families of one snapshot (prometheus_client's custom-collector form)."""

    def __init__(self, metrics: Iterable[Metric]) -> None:
        self._metrics = list(metrics)

    def collect(self) -> Iterable[Metric]:
        return self._metrics


def render(snapshot: Snapshot) -> bytes:
    """The text exposition format of one snapshot."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_OneScrape(families(snapshot)))  # type: ignore[arg-type]
    return generate_latest(registry)
