"""Long inputs: split at paragraph and sentence ends, summarize each piece, then summarize the
summaries (map-reduce).

Each finished piece is kept in the task's chunk hash (`save_chunk`, guarded by the attempt
token), so when a call fails the next attempt redoes only that piece, not the finished ones.
Progress and the current step are reported per piece.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from worker.providers import Budget, Provider, Summary

_PARAGRAPHS = re.compile(r"\n[ \t]*\n\s*")
_SENTENCE_ENDS = re.compile(r"(?<=[.!?…;:])\s+|(?<=[。！？])")
MAX_LEVELS = 4  # reduce rounds before the last combine call, whatever the sizes


def split_text(text: str, limit: int) -> list[str]:
    """Pieces of at most `limit` characters, in order, cut at paragraph ends where they fit,
    else at sentence ends, else at spaces, else (one endless word) anywhere. Whitespace between
    pieces is dropped; nothing else is lost."""
    pieces: list[str] = []
    current = ""
    for unit, separator in _units(text, limit):
        if current and len(current) + len(separator) + len(unit) <= limit:
            current += separator + unit
            continue
        if current:
            pieces.append(current)
        current = unit
    if current:
        pieces.append(current)
    return pieces


def _units(text: str, limit: int) -> Iterator[tuple[str, str]]:
    """(unit, separator before it): whole paragraphs when they fit, else their sentences."""
    for paragraph in _PARAGRAPHS.split(text):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        if len(paragraph) <= limit:
            yield paragraph, "\n\n"
            continue
        for n, sentence in enumerate(_sentences(paragraph, limit)):
            yield sentence, " " if n else "\n\n"


def _sentences(paragraph: str, limit: int) -> Iterator[str]:
    """The paragraph's sentences; one longer than `limit` cut at the last space that fits."""
    for sentence in _SENTENCE_ENDS.split(paragraph):
        sentence = sentence.strip()
        while len(sentence) > limit:
            cut = sentence.rfind(" ", 0, limit + 1)
            cut = cut if cut > 0 else limit
            yield sentence[:cut].rstrip()
            sentence = sentence[cut:].lstrip()
        if sentence:
            yield sentence


@dataclass
class MapReduce:
    """One attempt's map-reduce over a long text.

    `saved` holds the pieces earlier attempts finished (field → JSON), `save` keeps a new one,
    `progress(percent, step)` reports how far the attempt got.
    """

    provider: Provider
    budget: Budget
    limit: int
    progress: Callable[[int, str], None]
    saved: dict[str, str]
    save: Callable[[str, str], None]

    def run(self, content: str) -> Summary:
        texts = split_text(content, self.limit)
        chunks = len(texts)
        summaries = self._map(texts, 0)
        for level in range(1, MAX_LEVELS + 1):
            joined = "\n\n".join(s.text for s in summaries)
            if len(joined) <= self.limit:
                break
            shorter = split_text(joined, self.limit)
            if len(shorter) >= len(texts):
                break  # the summaries do not shrink: combine what there is
            texts, summaries = shorter, self._map(shorter, level)
        self.progress(95, f"combining {len(summaries)} summaries")
        final = self.provider.summarize("\n\n".join(s.text for s in summaries), "combine", self.budget)
        usage = _total_usage([*self._used, final])
        return Summary(final.text, final.provider, final.model, usage, chunks)

    def __post_init__(self) -> None:
        self._used: list[Summary] = []  # every piece's summary, kept or new, for the token count

    def _map(self, texts: list[str], level: int) -> list[Summary]:
        summaries = []
        for i, text in enumerate(texts):
            if level == 0:
                self.progress(90 * i // len(texts), f"summarizing chunk {i + 1} of {len(texts)}")
            else:
                self.progress(90, f"reducing: part {i + 1} of {len(texts)} (round {level})")
            summaries.append(self._piece(text, level, i))
        self._used += summaries
        return summaries

    def _piece(self, text: str, level: int, index: int) -> Summary:
        """A kept summary of this very text, or a new call whose answer is kept at once."""
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        field = f"{self.limit}:{level}:{index}:{digest}"
        if field in self.saved:
            kept = json.loads(self.saved[field])
            return Summary(kept["text"], kept["provider"], kept["model"], kept.get("usage"))
        summary = self.provider.summarize(text, "summarize" if level == 0 else "combine", self.budget)
        record = {"text": summary.text, "provider": summary.provider, "model": summary.model, "usage": summary.usage}
        self.save(field, json.dumps(record))
        return summary


def _total_usage(summaries: list[Summary]) -> dict[str, int] | None:
    """Token counts of every call that went into the result, summed per field."""
    total: dict[str, int] = {}
    for summary in summaries:
        for name, count in (summary.usage or {}).items():
            total[name] = total.get(name, 0) + count
    return total or None
