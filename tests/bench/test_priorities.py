"""Issue 18's bench section (bench/priorities.py): the backlog it builds, its figures, ratios and
verdicts, and its tables, on made-up runs. No timing is asserted: the targets live in `make bench`."""

from __future__ import annotations

import math

import fakeredis
import pytest

from bench.priorities import (
    BEFORE,
    BEFORE_CLAIM,
    CURRENT,
    FALLBACK,
    all_cpu_ms,
    alternate,
    batches,
    claim_figures,
    claim_table,
    fill,
    noop_table,
    noop_verdict,
    paired,
    paired_median,
    verdict,
)
from core.keys import Keys


def test_a_backlog_is_split_evenly_over_owners_and_levels() -> None:
    one = batches(20_000, 1, (5,))
    assert one == [("owner-0000", 5, 20_000)]
    many = batches(20_000, 1000, (5,))
    assert len(many) == 1000 and {n for _, _, n in many} == {20}
    assert len({owner for owner, _, _ in many}) == 1000
    spread = batches(20_000, 1000, tuple(range(10)))
    assert sum(n for _, _, n in spread) == 20_000
    assert {n for _, _, n in spread} == {2}
    assert spread[:2] == [("owner-0000", 0, 2), ("owner-0000", 1, 2)]  # owner by owner, levels in order


def test_a_remainder_goes_to_the_first_cells() -> None:
    assert batches(7, 3, (5,)) == [("owner-0000", 5, 3), ("owner-0001", 5, 2), ("owner-0002", 5, 2)]


def test_a_backlog_too_small_to_give_every_owner_work_at_every_level_is_refused() -> None:
    with pytest.raises(ValueError):
        batches(5000, 1000, tuple(range(10)))
    with pytest.raises(ValueError):
        batches(10, 0, (5,))
    with pytest.raises(ValueError):
        batches(10, 1, ())


def test_fill_stores_each_owners_share_at_its_levels() -> None:
    # 250 tasks over 2 owners × levels 2 and 5: cells of 63, 63, 62, 62 (more than one create call
    # each: CREATE_BATCH is 100).
    client = fakeredis.FakeRedis(decode_responses=True)
    keys = Keys("t:")
    fill(client, keys, batches(250, 2, (2, 5)))
    assert client.zscore(keys.owners_backlog, "owner-0000") == 126
    assert client.zscore(keys.owners_backlog, "owner-0001") == 124
    depth = client.hgetall(keys.depth)
    assert (depth["primary:2"], depth["primary:5"]) == ("125", "125")
    assert client.llen(keys.pending("primary", 2, "owner-0000")) == 63
    assert client.llen(keys.pending("primary", 5, "owner-0001")) == 62


def test_pairs_alternate_which_runs_first() -> None:
    order: list[str] = []

    def run(label: str) -> dict[str, float]:
        order.append(label)
        return {"n": float(len(order))}

    runs = alternate({"a": lambda: run("a"), "b": lambda: run("b")}, 3, lambda _: None)
    assert order == ["a", "b", "b", "a", "a", "b"]
    assert runs == {"a": [{"n": 1.0}, {"n": 4.0}, {"n": 5.0}], "b": [{"n": 2.0}, {"n": 3.0}, {"n": 6.0}]}


def test_claim_figures_are_microseconds() -> None:
    got = claim_figures([100_000, 200_000, 300_000, 400_000], server_usec=500.0, server_calls=4)
    assert got["claims"] == 4
    assert got["mean_us"] == pytest.approx(250.0)
    assert got["p50_us"] == pytest.approx(250.0)
    assert got["p99_us"] == pytest.approx(397.0)
    assert got["server_us"] == pytest.approx(125.0)
    assert math.isnan(claim_figures([], 0.0, 0)["server_us"])


def test_verdicts() -> None:
    assert verdict([1.29, 1.0], at_most=1.3) == "pass"
    assert verdict([1.29, 1.31], at_most=1.3) == "fail"
    assert verdict([0.96], at_least=0.95) == "pass"
    assert verdict([1.20], at_least=0.95) == "pass"  # faster than before is within the target
    assert verdict([0.94], at_least=0.95) == "fail"
    assert verdict([math.nan, 1.0], at_most=1.3) == "n/a"
    assert verdict([], at_most=1.3) == "n/a"


def test_a_noop_verdict_says_when_the_noise_is_wider_than_the_margin() -> None:
    assert noop_verdict([0.97, 0.99, 1.02]) == "pass"
    assert noop_verdict([0.90, 0.92, 0.93]) == "fail"
    assert noop_verdict([0.71, 0.95, 1.12]) == "pass (noisy: pairs on both sides)"
    assert noop_verdict([0.71, 0.90, 1.12]) == "fail (noisy: pairs on both sides)"
    assert noop_verdict([]) == "n/a"


def test_ratios_are_taken_per_repetition() -> None:
    # The machine slowed down in the second repetition: both halved; the pair's ratio holds.
    runs = {"a": [{"x": 12.0}, {"x": 6.0}, {"x": 13.0}], "b": [{"x": 10.0}, {"x": 5.0}, {"x": 10.0}]}
    assert paired(runs, "a", "b", "x") == pytest.approx([1.2, 1.2, 1.3])
    assert paired_median(runs, "a", "b", "x") == pytest.approx(1.2)
    assert math.isnan(paired_median(runs, "a", "missing", "x"))
    assert math.isnan(paired({"a": [{"x": 1.0}], "b": [{"x": 0.0}]}, "a", "b", "x")[0])


def test_all_cpu_counts_each_process_once() -> None:
    # The container's figure already holds its consumer and worker: those are not added again.
    figures = {"api_cpu_ms": 1.0, "scheduler_cpu_ms": 0.01, "container_cpu_ms": 2.5, "consumer_cpu_ms": 0.7,
               "worker_cpu_ms": 1.8, "redis_cpu_ms": 0.5, "stub_cpu_ms": 0.3, "client_cpu_ms": 0.4}  # fmt: skip
    assert all_cpu_ms(figures) == pytest.approx(4.71)


def _claims(server: float, mean: float) -> list[dict[str, float]]:
    return [{"server_us": server, "mean_us": mean, "p50_us": mean, "p99_us": mean * 3, "fill_s": 1.0}]


def test_the_claim_table_judges_1000_owners_against_one() -> None:
    runs = {
        "1 owner, priority 5": _claims(100.0, 200.0),
        "10 owners, priority 5": _claims(100.0, 200.0),
        "1,000 owners, priority 5": _claims(125.0, 220.0),  # within 1.3×
        "1 owner, priorities 0–9": _claims(100.0, 200.0),
        "1,000 owners, priorities 0–9": _claims(100.0, 280.0),  # the client's 1.4× fails it
        BEFORE_CLAIM: _claims(50.0, 150.0),
    }
    text = claim_table(runs, 20_000, 3000)
    line = next(row for row in text.splitlines() if row.startswith("| 1,000 owners, priority 5 / 1 owner"))
    assert "1.25×" in line and "| pass |" in line
    line = next(row for row in text.splitlines() if row.startswith("| 1,000 owners, priorities 0–9 / "))
    assert "1.40×" in line and "| fail |" in line
    line = next(row for row in text.splitlines() if row.startswith(f"| 1 owner, priority 5 / {BEFORE_CLAIM}"))
    assert "2.00×" in line
    assert "| 1,000 owners, priority 5 | 1,000 × 20 | 5 | 125 |" in text


def test_the_noop_table_compares_with_the_tree_before_issue_18() -> None:
    runs = {
        CURRENT: [{"end_to_end": 96.0, "failed": 0.0, "incomplete": 0.0}, {"end_to_end": 90.0, "failed": 0.0,
                                                                           "incomplete": 0.0}],
        BEFORE: [{"end_to_end": 100.0, "failed": 0.0, "incomplete": 0.0}, {"end_to_end": 100.0, "failed": 0.0,
                                                                            "incomplete": 0.0}],
    }  # fmt: skip
    text = noop_table(runs, 5000, "")
    row = next(r for r in text.splitlines() if r.startswith(f"| {CURRENT} "))
    # The median of the pairs (93 / 100) fails; one pair (0.96) passed: the noise is wider than 5 %.
    assert "| 0.93× [0.90–0.96] |" in row and "| fail (noisy: pairs on both sides) |" in row
    assert "0.96×, 0.90×" in text  # each repetition's pair
    assert "did not run" not in text


def test_without_the_old_tree_the_noop_table_says_why() -> None:
    runs = {
        CURRENT: [{"end_to_end": 100.0, "failed": 0.0, "incomplete": 0.0}],
        FALLBACK: [{"end_to_end": 80.0, "failed": 0.0, "incomplete": 0.0}],
    }
    text = noop_table(runs, 5000, "git worktree add 707be21 failed: not a git repository")
    assert "did not run** (git worktree add 707be21 failed: not a git repository)" in text
    assert "1.25×" in text
