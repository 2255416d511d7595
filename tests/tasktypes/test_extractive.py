"""The offline extractive summarizer (summarize's offline answer): deterministic, order-preserving,
fast, robust on odd input."""

from __future__ import annotations

import time

import pytest

from core.settings import Settings
from tasktypes.base import Job
from tasktypes.extractive import split_sentences, summarize
from tasktypes.summarize import Summarize, SummarizeCreate
from worker.providers import OfflineProvider

ARTICLE = (
    "Redis keeps the task queue in memory. "
    "The weather was pleasant on Tuesday. "
    "Each worker pulls a task from the Redis queue and calls the model. "
    "Lunch was served at noon! "
    "When a task fails, the worker puts the task back in the Redis retry queue. "
    "Nobody remembered the name of the cat? "
    "The queue and the retry queue are both Redis lists."
)


def test_deterministic() -> None:
    assert summarize(ARTICLE) == summarize(ARTICLE) == summarize(str(ARTICLE))


def test_picks_topical_sentences_in_original_order() -> None:
    sentences = split_sentences(ARTICLE)
    picked = split_sentences(summarize(ARTICLE, 3))
    assert len(picked) == 3
    indexes = [sentences.index(s) for s in picked]
    assert indexes == sorted(indexes)
    assert all("queue" in s.lower() for s in picked)


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_sentence_count(count: int) -> None:
    assert len(split_sentences(summarize(ARTICLE, count))) == count


def test_offline_answer_uses_setting() -> None:
    settings = Settings(offline_summary_sentences=2)
    refuse = OfflineProvider(settings).complete
    answer = Summarize().run_offline(Job("t1", SummarizeCreate(content=ARTICLE), settings, refuse))
    assert answer.provider == "offline" and answer.usage is None
    assert len(split_sentences(answer.result)) == 2


def test_short_text_returned_whole() -> None:
    assert summarize("Just one sentence here.") == "Just one sentence here."
    assert summarize("  First.   Second!  ") == "First. Second!"


def test_100k_characters_is_fast() -> None:
    words = [f"word{i % 997}" for i in range(20_000)]
    text = ". ".join(" ".join(words[i : i + 12]) for i in range(0, len(words), 12))[:100_000]
    assert len(text) >= 99_000
    started = time.perf_counter()
    result = summarize(text)
    assert time.perf_counter() - started < 1.0
    assert 0 < len(result) < 2_000


def test_no_punctuation_stays_short() -> None:
    text = " ".join(f"term{i % 40}" for i in range(5_000))
    result = summarize(text, 3)
    assert 0 < len(result.split()) <= 3 * 60


def test_splits_on_newlines_and_paragraphs() -> None:
    text = "Title line\nFirst point stands alone\n- a bullet\n\nA new paragraph starts here"
    assert split_sentences(text) == [
        "Title line",
        "First point stands alone",
        "- a bullet",
        "A new paragraph starts here",
    ]


def test_joins_hard_wrapped_lines_and_keeps_abbreviations() -> None:
    text = "The report by Dr. Smith was\nlong and detailed. It covered e.g. the budget. Pi is 3.14 today."
    assert split_sentences(text) == [
        "The report by Dr. Smith was long and detailed.",
        "It covered e.g. the budget.",
        "Pi is 3.14 today.",
    ]


def test_quotes_stay_with_their_sentence() -> None:
    assert split_sentences('He said "stop." Then he left.') == ['He said "stop."', "Then he left."]


def test_unicode() -> None:
    text = "Café crème est délicieux. Über alles schön! 日本語の文。二つ目の文！三つ目？ Emoji 🎉 party time."
    sentences = split_sentences(text)
    assert "日本語の文。" in sentences and "Emoji 🎉 party time." in sentences
    assert len(split_sentences(summarize(text, 2))) == 2


@pytest.mark.parametrize("text", ["", "   \n\t ", "!!! ???", "...", "{content} {0}", "\n\n\n"])
def test_edge_cases_do_not_crash(text: str) -> None:
    assert summarize(text) == " ".join(text.split())
