"""`translate`: the whole text in another language. Long input is translated piece by piece
(each piece kept, so a retry redoes only a failed one) and the pieces joined in order, never
summarized. There is no offline translator: offline, a submit is refused (422 provider_required)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field

from tasktypes import register
from tasktypes.base import Answer, Completion, CompletionRequest, Content, Job, TaskType, clean_text, fill, prompt
from tasktypes.pieces import Pieces, shrinking, split_with_breaks

SYSTEM = "You are a professional translator. You translate faithfully and completely."

Language = Annotated[
    str,
    Field(min_length=1, max_length=64, examples=["French", "pt-BR"]),
    AfterValidator(clean_text),
]


class TranslateCreate(BaseModel):
    """Body of `POST /api/v1/tasks/translate/`."""

    content: Content
    target_language: Language = Field(description="The language to translate into: a name or a BCP 47 tag.")
    source_language: Language | None = Field(None, description="The text's language; the model tells when absent.")


def ask(job: Job, text: str) -> Completion:
    source = f"from {job.input.source_language} " if job.input.source_language else ""
    user = fill(prompt("translate"), source=source, target=job.input.target_language, content=text)
    return job.complete(CompletionRequest([{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]))


class Translate(TaskType):
    name = "translate"
    description = "The whole text in another language; long text is translated piece by piece and joined in order."
    Create = TranslateCreate

    def run(self, job: Job) -> Answer:
        return shrinking(job, lambda limit: self._run(job, limit))

    def _run(self, job: Job, limit: int) -> Answer:
        text = job.input.content
        if not limit or len(text) <= limit:
            done = ask(job, text)
            return Answer(done.text, done.provider, done.model, done.usage)
        pieces = split_with_breaks(text, limit)
        kept = Pieces(job, limit)
        parts: list[str] = []
        for i, (before, piece) in enumerate(pieces):
            job.progress(99 * i // len(pieces), f"translating piece {i + 1} of {len(pieces)}")
            done = kept.answer("translate", i, piece, lambda t: ask(job, t))
            parts.append(before + done.text)
        return Answer("".join(parts), done.provider, done.model, kept.usage.value(), len(pieces))


register(Translate())
