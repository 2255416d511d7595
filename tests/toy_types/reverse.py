"""`reverse`: the words of a text in reverse order. The suite's toy type: docs/TASK_TYPES.md
quotes this module whole, and tests/integration/test_task_types.py runs it through the stack."""

from __future__ import annotations

from pydantic import BaseModel

from tasktypes import register
from tasktypes.base import Answer, CompletionRequest, Content, Job, TaskType


class ReverseCreate(BaseModel):
    """Body of `POST /api/v1/tasks/reverse/`."""

    content: Content


class Reverse(TaskType):
    name = "reverse"
    description = "The words of the text in reverse order."
    Create = ReverseCreate
    answers_offline = True

    def run(self, job: Job) -> Answer:
        ask = f"Write the words of this text in reverse order, nothing else:\n\n{job.input.content}"
        done = job.complete(CompletionRequest([{"role": "user", "content": ask}]))
        return Answer(done.text, done.provider, done.model, done.usage)

    def run_offline(self, job: Job) -> Answer:
        return Answer(" ".join(reversed(job.input.content.split())), "offline", "reverse")


register(Reverse())
