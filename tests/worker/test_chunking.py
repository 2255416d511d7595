"""Long inputs: the split, the map-reduce (several rounds), and, end to end through the runner, a
chunk's failure that the next attempt retries alone; the chunk hash lives and dies with the task."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from core.errors import StaleAttempt
from core.settings import Settings
from core.states import State
from core.store import TaskStore, new_token
from core.task import Task
from tasktypes import extractive
from tasktypes.base import Completion, CompletionRequest, Job
from tasktypes.pieces import split_text
from tasktypes.summarize import MapReduce, SummarizeCreate
from tests.stub_llm import StubLLM
from worker.runner import Runner

CONSUMER = "c1"
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu"]


def paragraph(n: int, sentences: int = 8) -> str:
    """A paragraph of numbered sentences, about 60 characters each."""
    words = [WORDS[(n + i) % len(WORDS)] for i in range(sentences)]
    return " ".join(f"Paragraph {n} sentence {i} talks about {word} at length." for i, word in enumerate(words))


# --- split_text (pure) -----------------------------------------------------------------------
@pytest.mark.parametrize("limit", [1000, 1500, 5000])
def test_pieces_fit_the_limit_and_lose_nothing(limit: int) -> None:
    text = "\n\n".join(paragraph(n, sentences=5 + n % 30) for n in range(40))
    pieces = split_text(text, limit)
    assert all(0 < len(p) <= limit for p in pieces)
    assert "".join("".join(pieces).split()) == "".join(text.split()), "same characters, in order"


def test_paragraph_ends_are_preferred() -> None:
    paragraphs = [paragraph(n) for n in range(6)]  # each about 480 characters
    pieces = split_text("\n\n".join(paragraphs), 1000)
    assert pieces == ["\n\n".join(paragraphs[i : i + 2]) for i in range(0, 6, 2)]


def test_a_long_paragraph_is_cut_at_sentence_ends() -> None:
    long = paragraph(1, sentences=40)
    pieces = split_text(long, 1000)
    assert len(pieces) > 1 and all(p.endswith("at length.") for p in pieces)


def test_a_sentence_without_end_is_cut_at_spaces_and_an_endless_word_anywhere() -> None:
    words = " ".join(["word"] * 1000)
    assert all(len(p) <= 1000 and not p.startswith(" ") for p in split_text(words, 1000))
    assert split_text("x" * 2500, 1000) == ["x" * 1000, "x" * 1000, "x" * 500]
    assert split_text("  \n\n  ", 1000) == []


# --- MapReduce with the offline summarizer -----------------------------------------------------
class ExtractiveLLM:
    """An LLM stand-in that answers each call with the extractive summary of its text, counting
    which prompt it was asked (the map-reduce is under test, not it)."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def complete(self, request: CompletionRequest) -> Completion:
        prompt = request.messages[-1]["content"]
        kind = "combine" if "<summaries>" in prompt else "summarize"
        self.asked.append(kind)
        text = prompt.split(">\n", 1)[1].rsplit("\n<", 1)[0]
        return Completion(extractive.summarize(text), "local", "extractive")


def job(llm: ExtractiveLLM, saved: dict[str, str], steps: list[tuple[int, str]] | None = None) -> Job:
    progress = (lambda p, s: steps.append((p, s))) if steps is not None else (lambda p, s: None)
    return Job("t1", SummarizeCreate(content="x"), Settings(), llm.complete, 1000, progress, lambda: dict(saved),
               saved.__setitem__)  # fmt: skip


def test_many_chunks_reduce_in_rounds_and_kept_pieces_are_not_asked_again() -> None:
    text = "\n\n".join(paragraph(n, sentences=16) for n in range(60))
    llm, saved, steps = ExtractiveLLM(), {}, []
    summary = MapReduce(job(llm, saved, steps), 1000).run(text)
    assert summary.pieces == len(split_text(text, 1000)) >= 60
    assert any("round 1" in step for _, step in steps), "the summaries did not fit: a reduce round ran"
    assert steps[-1][0] == 95 and steps[-1][1].startswith("combining")
    assert [p for p, _ in steps] == sorted(p for p, _ in steps), "progress never goes back"
    assert llm.asked.count("combine") >= 2 and summary.result

    again = ExtractiveLLM()
    rerun = MapReduce(job(again, dict(saved)), 1000)
    assert rerun.run(text).result == summary.result
    assert again.asked == ["combine"], "every piece was kept: only the final combine is asked again"


# --- through the runner, against the stand-in ---------------------------------------------------

@pytest.fixture
def runner(redis_url: str, key_prefix: str, stub: StubLLM, real_redis: redis.Redis) -> Runner:
    return Runner(Settings(
        redis_url=redis_url, redis_key_prefix=key_prefix, openrouter_api_key="test-key",
        openrouter_base_url=stub.url, chunk_chars=1000, retry_backoff_base=0.01, max_retries=2,
    ))  # fmt: skip


def claim_next(store: TaskStore, task_id: str) -> str:
    token = new_token()
    claim = store.claim(CONSUMER, token, prefer_retry=True)
    assert (claim.status, claim.task_id) == ("ok", task_id)
    return token


def test_a_failed_chunk_is_retried_alone(runner: Runner, stub: StubLLM) -> None:
    parts = [paragraph(n, sentences=12) + f" [[tag:p{n}]]" + (" [[fail:1]]" if n == 3 else "") for n in range(1, 6)]
    store = runner.store
    task = store.create(Task(id=str(uuid.uuid4()), task_type="summarize", content="\n\n".join(parts), max_retries=2))

    assert runner.execute(task.id, claim_next(store, task.id), CONSUMER) == "scheduled"
    failed = store.get(task.id)
    assert (failed.state, failed.retry_count, failed.error_type) == (State.SCHEDULED, 1, "transient")
    assert (failed.progress, failed.current_step) == (36, "summarizing chunk 3 of 5")
    assert len(store.chunks(task.id)) == 2, "chunks 1 and 2 are kept"

    time.sleep(0.05)
    assert store.promote_due(10) == 1
    assert runner.execute(task.id, claim_next(store, task.id), CONSUMER) == "completed"
    done = store.get(task.id)
    assert (done.state, done.result, done.progress) == (State.COMPLETED, "stub summary", 100)

    asked = [next((f"p{n}" for n in range(1, 6) if f"[[tag:p{n}]]" in c["content"]), "combine") for c in stub.calls()]
    assert asked == ["p1", "p2", "p3", "p3", "p4", "p5", "combine"], "only the failed chunk was asked twice"
    answered = [c for c in stub.calls() if c["status"] == 200]
    expected = sum(len(c["content"].split()) + (1 if "[[tag:" in c["content"] else 2) for c in answered)
    assert done.total_tokens == expected, "usage of every call that went into the result"
    assert store.chunks(task.id) == {}, "the kept pieces go once the task completed"


def test_short_content_is_one_call(runner: Runner, stub: StubLLM) -> None:
    task = runner.store.create(Task(id=str(uuid.uuid4()), task_type="summarize", content="Short text. [[tag:one]]"))
    assert runner.execute(task.id, claim_next(runner.store, task.id), CONSUMER) == "completed"
    assert runner.store.get(task.id).result == "summary:one" and len(stub.calls()) == 1


# --- the chunk hash: written only by the owning attempt, deleted with the task -----------------
def active(store: TaskStore) -> tuple[str, str]:
    task = store.create(Task(id=str(uuid.uuid4()), task_type="summarize", content="x"))
    return task.id, claim_next(store, task.id)


def test_a_stale_attempt_cannot_write_a_chunk(store: TaskStore) -> None:
    task_id, token = active(store)
    with pytest.raises(StaleAttempt):
        store.save_chunk(task_id, "not-the-token", "f", "{}", 60_000)
    assert not store.r.exists(store.keys.task_chunks(task_id))
    store.save_chunk(task_id, token, "f", "{}", 60_000)
    assert store.chunks(task_id) == {"f": "{}"} and 0 < store.r.pttl(store.keys.task_chunks(task_id)) <= 60_000


def test_deleting_or_purging_a_task_deletes_its_chunks(store: TaskStore) -> None:
    ids = []
    for _ in range(2):
        task_id, token = active(store)
        store.save_chunk(task_id, token, "f", "{}", 60_000)
        store.fail(task_id, CONSUMER, token, State.FAILED, "rejected", "input_rejected")
        ids.append(task_id)
    store._run_placed(ids[0], lambda place: store.ops.delete(ids[0], place))
    assert not store.r.exists(store.keys.task_chunks(ids[0])) and store.r.exists(store.keys.task_chunks(ids[1]))
    assert store.purge(State.FAILED, 0, 0, 10) == 1
    assert not store.r.exists(store.keys.task_chunks(ids[1]))
