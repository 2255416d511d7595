"""Long inputs, for any type: the split at paragraph and sentence ends, the pieces kept between
attempts, and the halving of the piece size when a model's context is smaller than CHUNK_CHARS.

Each finished piece is kept in the task's piece hash (`Job.save`, guarded by the attempt token),
so when a call fails the next attempt redoes only that piece, not the finished ones.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from typing import TypeVar

from core.errors import LLMContextTooLong
from tasktypes.base import Completion, Job, Usage

T = TypeVar("T")

# Below this many characters a piece, a context-length refusal is not about the text's length.
RECHUNK_FLOOR = 1000

_PARAGRAPHS = re.compile(r"\n[ \t]*\n\s*")
_SENTENCE_ENDS = re.compile(r"(?<=[.!?…;:])\s+|(?<=[。！？])")


def split_text(text: str, limit: int) -> list[str]:
    """Pieces of at most `limit` characters, in order, cut at paragraph ends where they fit,
    else at sentence ends, else at spaces, else (one endless word) anywhere. Whitespace between
    pieces is dropped; nothing else is lost."""
    return [piece for _, piece in split_with_breaks(text, limit)]


def split_with_breaks(text: str, limit: int) -> list[tuple[str, str]]:
    """`split_text`'s pieces, each with the break that came before it in the text ("" for the
    first, "\n\n" after a paragraph, " " inside one, "" inside a word longer than `limit`), so
    that pieces worked on one by one can be joined back as the text was laid out."""
    pieces: list[tuple[str, str]] = []
    current, before = "", ""
    for unit, separator in _units(text, limit):
        if current and len(current) + len(separator) + len(unit) <= limit:
            current += separator + unit
            continue
        if current:
            pieces.append((before, current))
        current, before = unit, (separator if current else "")  # the first piece has nothing before it
    if current:
        pieces.append((before, current))
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
        for n, (sentence, glue) in enumerate(_sentences(paragraph, limit)):
            yield sentence, glue if n else "\n\n"


def _sentences(paragraph: str, limit: int) -> Iterator[tuple[str, str]]:
    """The paragraph's sentences, each with the break before it: " ", or "" after a word cut in
    two. One longer than `limit` is cut at the last space that fits, else (one endless word, a URL
    or an encoded blob) anywhere, where no space may be put back."""
    glue = " "
    for sentence in _SENTENCE_ENDS.split(paragraph):
        sentence = sentence.strip()
        while len(sentence) > limit:
            space = sentence.rfind(" ", 0, limit + 1)
            cut = space if space > 0 else limit
            yield sentence[:cut].rstrip(), glue
            glue = " " if space > 0 else ""
            sentence = sentence[cut:].lstrip()
        if sentence:
            yield sentence, glue
            glue = " "


class Pieces:
    """The calls of one attempt over the pieces of a long input: a piece finished by an earlier
    attempt is read back, a new one is kept as soon as it is answered; every call's tokens count."""

    def __init__(self, job: Job, limit: int) -> None:
        self.job = job
        self.limit = limit
        self.saved = job.saved()
        self.usage = Usage()

    def answer(self, tag: str, index: int, text: str, ask: Callable[[str], Completion]) -> Completion:
        """The kept answer of this very text (same tag, place and piece size), or `ask(text)`'s."""
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        field = f"{self.limit}:{tag}:{index}:{digest}"
        if field in self.saved:
            kept = json.loads(self.saved[field])
            completion = Completion(kept["text"], kept["provider"], kept["model"], kept.get("usage"))
        else:
            completion = ask(text)
            record = {"text": completion.text, "provider": completion.provider, "model": completion.model,
                      "usage": completion.usage}  # fmt: skip
            self.job.save(field, json.dumps(record))
        self.usage.add(completion.usage)
        return completion


def shrinking(job: Job, work: Callable[[int], T]) -> T:
    """`work(limit)` with the piece size the provider's context allows (CHUNK_CHARS, or any length
    offline). A model whose context is smaller refuses with `context_length_exceeded`: the work is
    done again in pieces half as long, within the same attempt, down to RECHUNK_FLOOR characters
    (then the refusal stands: input_rejected)."""
    limit = job.context_chars or 0
    while True:
        try:
            return work(limit)
        except LLMContextTooLong:
            if not limit or limit // 2 < RECHUNK_FLOOR:
                raise
            limit //= 2
            job.progress(0, f"the model's context is smaller: pieces of {limit} characters")
