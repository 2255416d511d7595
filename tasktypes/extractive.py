"""A deterministic extractive summarizer, standard library only.

It is the default provider when no API key is configured, so a new user sees the whole pipeline
work without an account or a model download. It picks the sentences whose words are most frequent
in the text (Luhn's idea) and returns them in their original order.
"""

from __future__ import annotations

import math
import re
from collections import Counter

# Sentence ends: Latin punctuation needs following whitespace ("3.5" and "e.g.x" stay whole);
# CJK full-width punctuation is not followed by a space in real text.
_SENTENCE_END = re.compile(r"(?:(?<=[.!?…])|(?<=[.!?…][\"'”’)\]]))\s+|(?<=[。！？])")
_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")
_WORD = re.compile(r"\w+")
_SPACES = re.compile(r"\s+")

# fmt: off
# A fragment ending in one of these is not a sentence end ("Dr. Smith", "e.g. this").
_ABBREVIATIONS = frozenset(
    {
        "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "eg", "ie", "al", "fig", "vol", "inc", "ltd",
        "co", "corp", "dept", "approx", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov",
        "dec"
    }
)

# Function words carry no topic; counting them would favour long sentences of filler.
_STOPWORDS = frozenset(
    {
        "a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any", "are", "as", "at",
        "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could", "did",
        "do", "does", "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has", "have",
        "having", "he", "her", "here", "hers", "herself", "him", "himself", "his", "how", "i", "if", "in", "into", "is",
        "it", "its", "itself", "just", "me", "more", "most", "my", "myself", "no", "nor", "not", "now", "of", "off",
        "on", "once", "only", "or", "other", "our", "ours", "ourselves", "out", "over", "own", "same", "she", "should",
        "so", "some", "such", "than", "that", "the", "their", "theirs", "them", "themselves", "then", "there", "these",
        "they", "this", "those", "through", "to", "too", "under", "until", "up", "very", "was", "we", "were", "what",
        "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yours",
        "yourself", "yourselves"
    }
)
# fmt: on

# A run with no punctuation longer than this is cut into pieces, so a summary of unpunctuated
# text (a transcript, a pasted list) stays short instead of being the whole input.
_MAX_SENTENCE_WORDS = 60


def summarize(text: str, max_sentences: int = 3) -> str:
    """The `max_sentences` highest-scoring sentences of `text`, in their original order.

    Deterministic: the same text always gives the same summary (ties go to the earlier sentence).
    Returns "" for text without any non-space character.
    """
    sentences = split_sentences(text)
    if len(sentences) <= max_sentences:
        return " ".join(sentences)
    scores = _scores(sentences)
    ranked = sorted(range(len(sentences)), key=lambda i: (-scores[i], i))
    return " ".join(sentences[i] for i in sorted(_distinct(sentences, ranked, max_sentences)))


def _distinct(sentences: list[str], ranked: list[int], limit: int) -> list[int]:
    """The first `limit` indexes of `ranked` whose sentences differ: repeated boilerplate is said once."""
    chosen: dict[str, int] = {}
    for i in ranked:
        chosen.setdefault(sentences[i], i)
        if len(chosen) == limit:
            break
    return list(chosen.values())


def split_sentences(text: str) -> list[str]:
    """Sentences of `text` with whitespace collapsed; paragraphs and list lines always end one."""
    sentences: list[str] = []
    for paragraph in _PARAGRAPH.split(text):
        for block in _line_blocks(paragraph):
            for piece in _split_block(block):
                sentences.extend(_chunk_long(piece))
    return sentences


def _line_blocks(paragraph: str) -> list[str]:
    """Join hard-wrapped lines; a newline followed by a capital, digit or bullet starts a new block.

    Hard-wrapped prose continues in lower case, while headings and list items start a line of
    their own, so this keeps "the cat\\nsat" whole but splits "Title\\nFirst point".
    """
    blocks: list[str] = []
    for line in paragraph.splitlines():
        line = line.strip()
        if not line:
            continue
        if blocks and line[0].islower():
            blocks[-1] += " " + line
        else:
            blocks.append(line)
    return blocks


def _split_block(block: str) -> list[str]:
    """Split at sentence punctuation, re-joining pieces cut after an abbreviation or an initial."""
    pieces: list[str] = []
    for raw in _SENTENCE_END.split(block):
        piece = _SPACES.sub(" ", raw).strip()
        if not piece:
            continue
        if pieces and (piece[0].islower() or _ends_with_abbreviation(pieces[-1])):
            pieces[-1] += " " + piece
        else:
            pieces.append(piece)
    return pieces


def _ends_with_abbreviation(piece: str) -> bool:
    """True for "Dr.", "e.g.", "J." — a period that does not end a sentence."""
    if not piece.endswith("."):
        return False
    last = piece.rsplit(" ", 1)[-1].rstrip(".").replace(".", "").lower()
    return last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha())


def _chunk_long(sentence: str) -> list[str]:
    """Cut an over-long unpunctuated run into pieces of at most `_MAX_SENTENCE_WORDS` words."""
    words = sentence.split(" ")
    if len(words) <= _MAX_SENTENCE_WORDS:
        return [sentence]
    return [" ".join(words[i : i + _MAX_SENTENCE_WORDS]) for i in range(0, len(words), _MAX_SENTENCE_WORDS)]


def _content_words(sentence: str) -> list[str]:
    """Lower-cased words that carry meaning: no stopwords, no single characters, no bare numbers."""
    return [w for w in _WORD.findall(sentence.lower()) if len(w) > 1 and not w.isdigit() and w not in _STOPWORDS]


def _scores(sentences: list[str]) -> list[float]:
    """Sum of normalized word frequencies, divided by sqrt(length) so neither long nor tiny sentences win."""
    words = [_content_words(s) for s in sentences]
    frequency = Counter(w for ws in words for w in ws)
    top = max(frequency.values(), default=1)
    return [sum(frequency[w] for w in ws) / top / math.sqrt(len(ws)) if ws else 0.0 for ws in words]
