"""`reverse`: the text backwards. A whole task type in one module: load it with
TASK_TYPE_MODULES=tests.toy_types.reverse, in the API and in every worker."""

from __future__ import annotations

from pydantic import BaseModel

from tasktypes import register
from tasktypes.base import Answer, CompletionRequest, Content, Job, TaskType


class ReverseCreate(BaseModel):
    """Body of `POST /api/v1/tasks/reverse/`."""

    content: Content


class Reverse(TaskType):
    name = "reverse"
    description = "The text backwards, character by character."
    Create = ReverseCreate
    long_input = "refuse"  # one call: more than CHUNK_CHARS is a 413
    answers_offline = True

    def run(self, job: Job) -> Answer:
        """With a provider: the model is asked once."""
        ask = f"Write this text backwards, character by character. Reply with that only.\n\n{job.input.content}"
        done = job.complete(CompletionRequest([{"role": "user", "content": ask}]))
        return Answer(done.text, done.provider, done.model, done.usage)

    def run_offline(self, job: Job) -> Answer:
        """Without one: no model is needed."""
        return Answer(job.input.content[::-1], "offline", "reverse")


register(Reverse())
