"""Pure figures of the benchmark: percentiles, steady-state throughput, medians with their
range, and Markdown tables. No I/O here, so tests/bench checks them without starting anything."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

Timeline = Sequence[tuple[float, int]]  # (seconds, tasks done so far), in time order


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0–100) with linear interpolation between closest ranks (numpy's
    default), so p50 of an even count is the mean of the two middle values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def crossing(timeline: Timeline, count: float) -> tuple[float, int] | None:
    """The first sample at which at least `count` tasks were done, or None if never."""
    return next(((t, n) for t, n in timeline if n >= count), None)


def steady_throughput(timeline: Timeline, total: int, low: float = 0.1, high: float = 0.9) -> float:
    """Tasks per second between the moments `low` and `high` of `total` were done: no start-up,
    no tail. NaN when the run did not reach `high` or the window is empty."""
    start, end = crossing(timeline, total * low), crossing(timeline, total * high)
    if start is None or end is None or end[0] <= start[0]:
        return math.nan
    return (end[1] - start[1]) / (end[0] - start[0])


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max) of the runs' values, NaNs left out (NaN triple when nothing is left)."""
    kept = [v for v in values if not math.isnan(v)]
    if not kept:
        return math.nan, math.nan, math.nan
    return statistics.median(kept), min(kept), max(kept)


def number(value: float, digits: int | None = None) -> str:
    """A figure for a table: thousands separators, fewer decimals as the value grows."""
    if math.isnan(value):
        return "n/a"
    if digits is None:
        digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return f"{value:,.{digits}f}"


def cell(values: Sequence[float], digits: int | None = None) -> str:
    """`median [min–max]` of the runs; a single run shows its value alone."""
    mid, low, high = spread(values)
    if math.isnan(mid):
        return "n/a"
    if len([v for v in values if not math.isnan(v)]) == 1:
        return number(mid, digits)
    return f"{number(mid, digits)} [{number(low, digits)}–{number(high, digits)}]"


def ratio(value: float, reference: float) -> str:
    """`value / reference` as `0.83×`, or n/a when either is missing or the reference is 0."""
    if math.isnan(value) or math.isnan(reference) or reference == 0:
        return "n/a"
    return f"{value / reference:.2f}×"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table; the first column is left-aligned, the others right-aligned."""
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"row has {len(row)} cells, header {len(header)}: {row}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
