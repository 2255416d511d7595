"""Figures derived from the counters the transition scripts keep: quantiles from the run-time
histogram, the statistics overview. Pure functions over what the store read."""

from __future__ import annotations

from api.schemas import Statistics, Throughput, TypeFigures
from core.states import State
from core.store import DURATION_BUCKETS_MS, Durations


def quantile(durations: Durations, q: float) -> float | None:
    """The q-quantile (0 < q < 1) of the run times in ms; None before any run.

    Interpolated linearly inside its bucket, as Prometheus' histogram_quantile does, but over the
    whole milliseconds the bucket can hold (run times are whole ms): (lower, upper] holds
    lower+1 … upper, so a bucket one millisecond wide gives its value exactly, where plain
    interpolation would say 4.5 for a run of 5 ms. The buckets are at most 10 % wide, so the
    estimate is within 10 % of the true quantile. Past the last bound, the last bound is the best
    the histogram knows."""
    if durations.count == 0:
        return None
    rank = q * durations.count
    seen, lower = 0, 0
    for bound, count in zip(DURATION_BUCKETS_MS, durations.counts, strict=True):
        if count and seen + count >= rank:
            first = lower + 1  # the smallest whole ms in this bucket
            return round(first + (bound - first) * (rank - seen) / count, 1)
        seen, lower = seen + count, bound
    return float(DURATION_BUCKETS_MS[-1])


def success_rate(totals: dict[str, int]) -> float | None:
    """Share of finished attempts' tasks that completed: completed / (completed + failed + dead)."""
    done = totals.get("completed", 0)
    finished = done + totals.get("failed", 0) + totals.get("dead", 0)
    return round(done / finished, 4) if finished else None


def type_figures(counters: dict[str, dict[str, int]], stored: dict[str, int]) -> dict[str, TypeFigures]:
    """Each type's figures, by name: the types `stored` names (every registered one) and those
    the counters name (one no longer loaded); a counter the schema does not know is left out."""
    known = TypeFigures.model_fields.keys() - {"stored", "success_rate"}
    figures = {}
    for task_type in sorted(stored.keys() | counters.keys()):
        moved = {name: value for name, value in counters.get(task_type, {}).items() if name in known}
        figures[task_type] = TypeFigures(**moved, stored=stored.get(task_type, 0), success_rate=success_rate(moved))
    return figures


def overview(
    states: dict[str, int],
    totals: dict[str, int],
    durations: Durations,
    throughput: dict[str, dict[str, int]],
    by_type: dict[str, TypeFigures],
) -> Statistics:
    mean = round(durations.sum_ms / durations.count, 1) if durations.count else None
    return Statistics(
        states={State(name): count for name, count in states.items()},
        totals=totals,
        success_rate=success_rate(totals),
        duration_p50_ms=quantile(durations, 0.5),
        duration_p95_ms=quantile(durations, 0.95),
        duration_mean_ms=mean,
        throughput_last_minute=Throughput(**throughput["last_minute"]),
        throughput_last_hour=Throughput(**throughput["last_hour"]),
        by_type=by_type,
    )
