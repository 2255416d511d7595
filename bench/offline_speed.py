"""How fast is the offline extractive summarizer on the longest content the API accepts?

Builds a deterministic 100,000-character text (MAX_CONTENT_CHARS' default) of English-like
sentences in paragraphs, summarizes it with the offline provider several times and prints the
best and median times, with the size of the summary. A figure for the README, not a timed test:
the test suite only checks that it stays well under a second.

    .venv/bin/python bench/offline_speed.py [--chars 100000] [--repeat 20]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.settings import Settings  # noqa: E402
from tasktypes.base import Job  # noqa: E402
from tasktypes.extractive import split_sentences  # noqa: E402
from tasktypes.summarize import Summarize, SummarizeCreate  # noqa: E402
from worker.providers import OfflineProvider  # noqa: E402

TOPICS = ["redis", "queue", "worker", "retry", "breaker", "latency", "provider", "summary", "token", "backlog"]
FILLER = ["the", "a", "of", "to", "and", "in", "that", "is", "for", "with", "on", "as", "by", "from", "at"]
VERBS = ["keeps", "moves", "drains", "measures", "limits", "delays", "records", "returns", "splits", "shares"]


def text_of(chars: int, seed: int = 7) -> str:
    """English-like sentences of 8 to 24 words in paragraphs of 3 to 8 sentences, cut at `chars`."""
    rng = random.Random(seed)
    paragraphs: list[str] = []
    size = 0
    while size < chars:
        sentences = []
        for _ in range(rng.randint(3, 8)):
            words = [rng.choice(TOPICS if rng.random() < 0.3 else FILLER) for _ in range(rng.randint(6, 22))]
            words.insert(1, rng.choice(VERBS))
            sentences.append(" ".join(words).capitalize() + ".")
        paragraphs.append(" ".join(sentences))
        size += len(paragraphs[-1]) + 2
    return "\n\n".join(paragraphs)[:chars]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chars", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    text = text_of(args.chars)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    job = Job("bench", SummarizeCreate(content=text), settings, OfflineProvider(settings).complete)
    times, summary = [], None
    for _ in range(args.repeat):
        started = time.perf_counter()
        summary = Summarize().run_offline(job)
        times.append((time.perf_counter() - started) * 1000)
    assert summary is not None
    out = sys.stdout
    out.write(f"offline summarizer, {len(text):,} characters, {len(split_sentences(text)):,} sentences, ")
    out.write(f"{args.repeat} runs\n  best {min(times):.1f} ms, median {statistics.median(times):.1f} ms, ")
    out.write(f"worst {max(times):.1f} ms\n  summary: {len(summary.result)} characters, ")
    out.write(f"provider={summary.provider}, model={summary.model}\n")


if __name__ == "__main__":
    main()
