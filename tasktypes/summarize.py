"""`summarize`: a few sentences of any text. Long input is summarized in pieces, then the
summaries are summarized (map-reduce). Offline, the extractive summarizer answers."""

from __future__ import annotations

from pydantic import BaseModel

from core.errors import LLMInputRejected
from tasktypes import extractive, register
from tasktypes.base import Answer, Completion, CompletionRequest, Content, Job, TaskType, fill, prompt
from tasktypes.pieces import Pieces, shrinking, split_text

SYSTEM = "You write concise, faithful summaries. You never invent facts."
MAX_LEVELS = 4  # reduce rounds before the last combine call, whatever the sizes


class SummarizeCreate(BaseModel):
    """Body of `POST /api/v1/tasks/summarize/`: the text to summarize."""

    content: Content


def request(text: str, template: str = "summarize") -> CompletionRequest:
    """The call for `text`: the prompt of `template` (summarize, or summarize_combine for the
    reduce step of a map-reduce)."""
    user = fill(prompt(template), content=text)
    return CompletionRequest([{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}])


def ask(job: Job, text: str, template: str = "summarize") -> Completion:
    return job.complete(request(text, template))


class Summarize(TaskType):
    name = "summarize"
    description = "A few sentences that keep the text's key facts, names and numbers."
    Create = SummarizeCreate
    answers_offline = True

    def run(self, job: Job) -> Answer:
        return shrinking(job, lambda limit: self._run(job, job.input.content, limit))

    def _run(self, job: Job, content: str, limit: int) -> Answer:
        if not limit or len(content) <= limit:
            done = ask(job, content)
            return Answer(done.text, done.provider, done.model, done.usage)
        return MapReduce(job, limit).run(content)

    def run_offline(self, job: Job) -> Answer:
        """The extractive summary: deterministic, any length in one pass."""
        text = extractive.summarize(job.input.content, job.settings.offline_summary_sentences)
        if not text:
            raise LLMInputRejected("the text has no sentence to summarize")
        return Answer(text, "offline", "extractive")


class MapReduce:
    """One attempt's map-reduce over a long text: each piece summarized (kept between attempts),
    the summaries summarized again while they are longer than one call can take, then combined."""

    def __init__(self, job: Job, limit: int) -> None:
        self.job, self.limit = job, limit
        self.pieces = Pieces(job, limit)

    def run(self, content: str) -> Answer:
        texts = split_text(content, self.limit)
        chunks = len(texts)
        summaries = self._map(texts, 0)
        for level in range(1, MAX_LEVELS + 1):
            joined = "\n\n".join(summaries)
            if len(joined) <= self.limit:
                break
            shorter = split_text(joined, self.limit)
            if len(shorter) >= len(texts):
                break  # the summaries do not shrink: combine what there is
            texts, summaries = shorter, self._map(shorter, level)
        self.job.progress(95, f"combining {len(summaries)} summaries")
        final = ask(self.job, "\n\n".join(summaries), "summarize_combine")
        self.pieces.usage.add(final.usage)
        return Answer(final.text, final.provider, final.model, self.pieces.usage.value(), chunks)

    def _map(self, texts: list[str], level: int) -> list[str]:
        summaries = []
        template = "summarize" if level == 0 else "summarize_combine"
        for i, text in enumerate(texts):
            if level == 0:
                self.job.progress(90 * i // len(texts), f"summarizing chunk {i + 1} of {len(texts)}")
            else:
                self.job.progress(90, f"reducing: part {i + 1} of {len(texts)} (round {level})")
            done = self.pieces.answer(str(level), i, text, lambda t: ask(self.job, t, template))
            summaries.append(done.text)
        return summaries


register(Summarize())
