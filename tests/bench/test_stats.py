"""The harness's pure figures (bench/stats.py): percentiles, steady-state throughput, cells and
tables. No timing is asserted here; performance targets live in `make bench`."""

from __future__ import annotations

import math

import pytest

from bench.stats import cell, crossing, number, percentile, ratio, spread, steady_throughput, table


def test_percentile_interpolates_between_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 50) == 2.5
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(list(map(float, range(1, 101))), 99) == pytest.approx(99.01)
    assert math.isnan(percentile([], 50))


def test_steady_throughput_ignores_start_up_and_tail() -> None:
    # 10 s of start-up with nothing done, then 100 tasks/s for 10 s, then a slow tail.
    timeline = [(float(t), 0) for t in range(10)]
    timeline += [(10 + i / 10, i * 10) for i in range(101)]
    timeline += [(30.0, 1000)]
    assert steady_throughput(timeline, 1000) == pytest.approx(100.0)
    assert crossing(timeline, 100) == (11.0, 100)


def test_steady_throughput_of_an_unfinished_run_is_nan() -> None:
    assert math.isnan(steady_throughput([(0.0, 0), (1.0, 500)], 1000))
    assert math.isnan(steady_throughput([], 10))


def test_cells_show_median_and_range() -> None:
    assert spread([3.0, 1.0, math.nan, 2.0]) == (2.0, 1.0, 3.0)
    assert cell([310.4, 300.2, 305.9]) == "306 [300–310]"
    assert cell([4.25]) == "4.25"
    assert cell([math.nan]) == "n/a"
    assert number(1234567.0) == "1,234,567"
    assert ratio(80.0, 100.0) == "0.80×"
    assert ratio(1.0, 0.0) == "n/a"


def test_table_is_markdown_and_rejects_ragged_rows() -> None:
    text = table(["a", "b"], [["x", "1"]])
    assert text.splitlines() == ["| a | b |", "|---|---:|", "| x | 1 |"]
    with pytest.raises(ValueError):
        table(["a", "b"], [["x"]])
