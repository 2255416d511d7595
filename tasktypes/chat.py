"""`chat`: one raw chat-completions request, run for you: the "run my 50,000 prompts without
losing one" use. The result is the assistant's message content with its `finish_reason`, `usage`
and `model`. The model must be one of CHAT_ALLOWED_MODELS (the configured model and its fallbacks
by default) and `max_tokens` at most CHAT_MAX_TOKENS. Without `model` the configured model
answers, then its fallbacks; a named model answers alone. Input longer than one call can take is
refused at submit (413). There is no offline chat (422 provider_required)."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.settings import Settings
from tasktypes import register
from tasktypes.base import Answer, CompletionRequest, Job, Refusal, TaskType, clean_text, no_lone_surrogates


class ChatMessage(BaseModel):
    """One message, as the chat-completions API takes it (other fields, such as `name`, pass through)."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]] = Field(description="Text, or OpenAI's content parts.")

    @field_validator("content")
    @classmethod
    def _clean(cls, content: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
        if isinstance(content, str):
            return clean_text(content)
        if not content:
            raise ValueError("must hold at least one content part")
        return no_lone_surrogates(content)

    @model_validator(mode="after")
    def _storable_extras(self) -> ChatMessage:
        no_lone_surrogates(self.model_extra or {})
        return self

    def text(self) -> str:
        """The message's text (the text parts of a list of parts; "" for parts without text, such
        as images)."""
        if isinstance(self.content, str):
            return self.content
        return " ".join(text for part in self.content if (text := str(part.get("text") or "").strip()))


class ChatCreate(BaseModel):
    """Body of `POST /api/v1/tasks/chat/`: the fields of a chat-completions request that this
    service passes on; any other field (`stream`, `tools`, `n`, …) is refused."""

    model_config = ConfigDict(extra="forbid")

    messages: list[ChatMessage] = Field(
        min_length=1, max_length=1000, examples=[[{"role": "user", "content": "Name three prime numbers."}]]
    )
    model: str | None = Field(None, min_length=1, max_length=200, description="One of CHAT_ALLOWED_MODELS.")
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(
        None, gt=0, description="At most CHAT_MAX_TOKENS; OPENROUTER_MAX_TOKENS when absent."
    )
    response_format: dict[str, Any] | None = Field(None, examples=[{"type": "json_object"}])

    @field_validator("response_format")
    @classmethod
    def _known_format(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and value.get("type") not in ("text", "json_object", "json_schema"):
            raise ValueError('"type" must be text, json_object or json_schema')
        return no_lone_surrogates(value)


class Chat(TaskType):
    name = "chat"
    description = (
        "One chat-completions request: messages, and optionally model, temperature, max_tokens and response_format."
    )
    Create = ChatCreate
    result_format = "json"
    long_input = "refuse"

    def content_of(self, body: BaseModel) -> str:
        """The last user message: what a list of tasks shows of a chat (never blank: a message of
        parts without text, such as an image, is named as such)."""
        assert isinstance(body, ChatCreate)
        last = ([m for m in body.messages if m.role == "user"] or body.messages)[-1]
        return last.text() or f"({last.role} message without text)"

    def size_of(self, body: BaseModel) -> int:
        assert isinstance(body, ChatCreate)
        return sum(len(m.text()) for m in body.messages)

    def refusals(self, body: BaseModel, settings: Settings) -> list[Refusal]:
        assert isinstance(body, ChatCreate)
        refused = []
        if body.model is not None and body.model not in settings.chat_models:
            allowed = ", ".join(settings.chat_models)
            refused.append(Refusal("model", f"model {body.model!r} is not allowed; CHAT_ALLOWED_MODELS: {allowed}"))
        if body.max_tokens is not None and body.max_tokens > settings.chat_max_tokens:
            refused.append(Refusal("max_tokens", f"at most CHAT_MAX_TOKENS ({settings.chat_max_tokens})"))
        return refused

    def run(self, job: Job) -> Answer:
        chat: ChatCreate = job.input
        messages = [m.model_dump(exclude_none=True) for m in chat.messages]
        request = CompletionRequest(messages, chat.model or "", chat.max_tokens, chat.temperature, chat.response_format)
        done = job.complete(request)
        result = {"content": done.text, "finish_reason": done.finish_reason or None, "usage": done.usage,
                  "model": done.model}  # fmt: skip
        return Answer(json.dumps(result, ensure_ascii=False), done.provider, done.model, done.usage)


register(Chat())
