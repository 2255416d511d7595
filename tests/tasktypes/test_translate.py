"""`translate`: the request it sends, and long text translated piece by piece, joined in order with
the text's own breaks; a failed piece is asked again alone. Through the runner, against the stand-in."""

from __future__ import annotations

import re

import pytest

from core.settings import Settings
from core.states import State
from tasktypes import translate
from tasktypes.base import fill, prompt
from tasktypes.pieces import split_with_breaks
from tests.stub_llm import StubLLM
from tests.tasktypes.conftest import MAIN_MODEL, attempt, bodies, run_to_end, submit
from worker.runner import Runner

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]
INSIDE = re.compile(r".*<text>\n(.*)\n</text>", re.S)


def paragraph(n: int, sentences: int = 8, extra: str = "") -> str:
    """Numbered sentences of about 60 characters, each ending with `extra` (a directive, so that
    every piece carries it however the text is cut)."""
    return " ".join(f"Paragraph {n} sentence {i} is about {WORDS[(n + i) % 10]}{extra}." for i in range(sentences))


def inside(prompt_text: str) -> str:
    """The text between the <text> tags of a translate prompt."""
    found = INSIDE.match(prompt_text)
    assert found is not None, prompt_text
    return found.group(1)


def joined(pieces: list[tuple[str, str]]) -> str:
    return "".join(before + piece for before, piece in pieces)


# --- split_with_breaks (pure) ------------------------------------------------------------------
def test_pieces_joined_with_their_breaks_are_the_text_again() -> None:
    """Whole paragraphs where they fit, a long paragraph at its sentence ends: each piece's break
    is the one the text had there, so joining gives the text back, character for character."""
    text = "\n\n".join([paragraph(1, 14), paragraph(2, 30), paragraph(3, 14), paragraph(4, 3)])
    pieces = split_with_breaks(text, 1000)
    assert len(pieces) >= 3 and all(len(piece) <= 1000 for _, piece in pieces)
    assert pieces[0][0] == "" and {before for before, _ in pieces[1:]} == {"\n\n", " "}
    assert joined(pieces) == text


def test_the_breaks_are_the_texts_layout_normalized() -> None:
    """Runs of blank lines between paragraphs come back as one blank line; whitespace around the
    text is dropped."""
    text = "  First paragraph.  \n \n\n\n" + "Second " * 200 + "end.\n\n\nThird."
    assert joined(split_with_breaks(text, 1000)) == "First paragraph.\n\n" + "Second " * 200 + "end.\n\nThird."


def test_a_word_longer_than_a_piece_is_joined_without_a_space() -> None:
    """A URL or an encoded blob cut anywhere: no space is put back inside it."""
    blob = "x" * 2500
    text = f"See {blob} here.\n\nNext."
    pieces = split_with_breaks(text, 1000)
    assert [len(p) for _, p in pieces] == [3, 1000, 1000, 513]
    assert [b for b, _ in pieces] == ["", " ", "", ""]
    assert joined(pieces) == text


# --- through the runner ----------------------------------------------------------------------
@pytest.mark.parametrize(("source", "said"), [("French", "from French "), (None, "")])
def test_one_call_with_the_translate_prompt(runner: Runner, stub: StubLLM, source: str | None, said: str) -> None:
    content = "Bonjour tout le monde. [[tag:fr]]"
    body = {"content": content, "target_language": "English", **({"source_language": source} if source else {})}
    task_id = submit(runner.store, "translate", body)

    assert attempt(runner, task_id) == "completed"

    task = runner.store.get(task_id)
    assert (task.result, task.provider, task.model) == ("summary:fr", "openrouter", MAIN_MODEL)
    user = fill(prompt("translate"), source=said, target="English", content=content)
    assert user.startswith(f"Translate the text between the <text> tags {said}into English.")
    assert bodies(stub) == [{
        "model": MAIN_MODEL, "max_tokens": runner.settings.openrouter_max_tokens,
        "messages": [{"role": "system", "content": translate.SYSTEM}, {"role": "user", "content": user}],
    }], "no temperature and no response_format: the provider's defaults"  # fmt: skip


def test_a_long_text_is_translated_piece_by_piece_and_joined_in_order(runner: Runner, stub: StubLLM) -> None:
    """[[echo]] translates into upper case: the result is the whole text upper-cased only if every
    piece was asked once, in order, and joined with its own break."""
    text = "\n\n".join(paragraph(n, sentences, " [[echo]]") for n, sentences in ((1, 14), (2, 30), (3, 14)))
    task_id = submit(runner.store, "translate", {"content": text, "target_language": "Upper"})

    assert attempt(runner, task_id) == "completed"

    task = runner.store.get(task_id)
    assert task.result == text.upper()
    pieces = [piece for _, piece in split_with_breaks(text, 1000)]
    assert [inside(c["messages"][-1]["content"]) for c in bodies(stub)] == pieces and len(pieces) >= 3
    words = sum(len(c["content"].split()) + len(inside(c["content"]).split()) for c in stub.calls())
    assert task.total_tokens == words, "every piece's tokens: its prompt's words and its answer's"
    assert runner.store.chunks(task_id) == {}, "the kept pieces go once the task completed"


def test_a_failed_piece_is_asked_again_alone(runner: Runner, stub: StubLLM) -> None:
    parts = [paragraph(n, 14) + f" [[tag:p{n}]]" + (" [[fail:1]]" if n == 3 else "") for n in range(1, 6)]
    task_id = submit(runner.store, "translate", {"content": "\n\n".join(parts), "target_language": "German"})

    assert attempt(runner, task_id) == "scheduled"
    failed = runner.store.get(task_id)
    assert (failed.state, failed.error_type) == (State.SCHEDULED, "transient")
    assert failed.current_step == "translating piece 3 of 5"
    assert len(runner.store.chunks(task_id)) == 2, "pieces 1 and 2 are kept"

    assert run_to_end(runner, task_id) == ["completed"]
    done = runner.store.get(task_id)
    assert done.result == "\n\n".join(f"summary:p{n}" for n in range(1, 6))
    asked = [re.search(r"\[\[tag:(p\d)\]\]", c["content"]).group(1) for c in stub.calls()]  # type: ignore[union-attr]
    assert asked == ["p1", "p2", "p3", "p3", "p4", "p5"]


def test_a_translate_task_that_reaches_an_offline_worker_goes_to_the_dlq(settings: Settings, stub: StubLLM) -> None:
    """The API refuses it offline (422 provider_required); one that was queued before the key was
    removed cannot be answered by a worker without a provider, and waits in the DLQ for one."""
    offline = Runner(settings.model_copy(update={"llm_provider": "offline"}))
    task_id = submit(offline.store, "translate", {"content": "Hallo.", "target_language": "French"})
    assert attempt(offline, task_id) == "dlq"
    task = offline.store.get(task_id)
    assert task.error_type == "provider_problem" and "OPENROUTER_API_KEY" in task.last_error
    assert stub.calls() == []
