"""What a task type is, and what it is given for one attempt.

A type is one module in this folder (or any module named in TASK_TYPE_MODULES) holding one
`TaskType` subclass, registered with `tasktypes.register`. The API builds its submit routes and
their OpenAPI schemas from the registry; the worker runs the type's `run` (or `run_offline`). The
queue machinery and `core/` never name a type, and a type never reaches into Redis: everything it
may do is on the `Job` it is given.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, Field

from core.errors import ProviderRequired
from core.settings import Settings

PROMPTS = Path(__file__).parent / "prompts"

# C0 and C1 control characters and DEL, except tab, line feed and carriage return (which texts have).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Lone UTF-16 surrogates (JSON allows "\ud800"): no UTF-8 encoding exists, so Redis could not store them.
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """A text Redis can store and a model can read: not blank, valid Unicode, no control characters."""
    if not text.strip():
        raise ValueError("must not be blank")
    no_lone_surrogates(text)
    if _CONTROL.search(text):
        raise ValueError("must not hold control characters other than tab and line breaks")
    return text


def no_lone_surrogates(value: Any) -> Any:
    """Any JSON value unchanged, unless one of its strings (or keys) holds a lone surrogate, which
    Redis could not store: for the free-form fields of an input (a schema, a message's parts)."""
    if isinstance(value, str) and _SURROGATE.search(value):
        raise ValueError("must be valid Unicode (it holds a lone surrogate)")
    if isinstance(value, dict):
        for key, item in value.items():
            no_lone_surrogates(key)
            no_lone_surrogates(item)
    elif isinstance(value, list):
        for item in value:
            no_lone_surrogates(item)
    return value


Content = Annotated[str, Field(min_length=1, description="The text to work on."), AfterValidator(clean_text)]


@dataclass(frozen=True)
class CompletionRequest:
    """One chat-completions call as a type asks for it; the provider adds the model (unless the
    type names one), the key and the rest of the HTTP request. `None` leaves a field to the
    provider's default (`max_tokens`: OPENROUTER_MAX_TOKENS)."""

    messages: list[dict[str, Any]]
    model: str = ""  # "" = OPENROUTER_MODEL, then the OPENROUTER_FALLBACK_MODELS
    max_tokens: int | None = None
    temperature: float | None = None
    response_format: dict[str, Any] | None = None


@dataclass(frozen=True)
class Completion:
    """A provider's answer to one request."""

    text: str
    provider: str
    model: str = ""
    usage: dict[str, int] | None = None
    finish_reason: str = ""


@dataclass(frozen=True)
class Answer:
    """What an attempt produced: the task's result (text, or JSON text for a JSON type), who
    answered, the tokens of every call that went into it, and how many pieces a long input was
    worked on in (0: one call; then the kept pieces are dropped with the task's completion)."""

    result: str
    provider: str
    model: str = ""
    usage: dict[str, int] | None = None
    pieces: int = 0


@dataclass
class Job:
    """One attempt of one task, as its type sees it.

    `input` is the type's own input model, rebuilt from the stored task. `complete` makes one LLM
    call within the attempt's deadline and the fleet's rate limit, raising `LLMError`s.
    `context_chars` is the longest text one call should get (0: any length). `progress(percent,
    step)` reports how far the attempt got; `saved()` reads the pieces earlier attempts finished
    and `save(field, value)` keeps a new one (both guarded by the attempt token)."""

    task_id: str
    input: Any
    settings: Settings
    complete: Callable[[CompletionRequest], Completion]
    context_chars: int = 0
    progress: Callable[[int, str], None] = lambda percent, step: None
    saved: Callable[[], dict[str, str]] = dict
    save: Callable[[str, str], None] = lambda field, value: None


@dataclass(frozen=True)
class Refusal:
    """A submit a type refuses although its input model accepted it (a setting decides): a 422
    naming the field."""

    field: str
    message: str


def provider_required(type_name: str = "") -> str:
    """The message for a type that needs a real LLM, naming the settings to set."""
    who = f"task type {type_name!r}" if type_name else "this call"
    return (
        f"{who} needs an LLM provider; the offline provider runs because no "
        "OPENROUTER_API_KEY is set (or LLM_PROVIDER=offline). Set OPENROUTER_API_KEY, and "
        "OPENROUTER_BASE_URL for a server other than OpenRouter."
    )


class TaskType:
    """One kind of LLM job. Subclasses set the class attributes and implement `run`.

    - `name`: the route segment (`POST /api/v1/tasks/{name}/`) and the task's `task_type`;
    - `Create`: the input model checked at submit (a 422 names the field);
    - `result_format`: "text", or "json" (the result is a JSON document, shown as JSON);
    - `long_input`: "split" (`run` handles any length, in pieces) or "refuse" (a submit longer
      than CHUNK_CHARS, the model's context, is refused with 413);
    - `answers_offline`: whether `run_offline` gives a real result without an LLM; if not, a
      submit is refused (422 `provider_required`) while the offline provider runs.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    Create: ClassVar[type[BaseModel]]
    result_format: ClassVar[Literal["text", "json"]] = "text"
    long_input: ClassVar[Literal["split", "refuse"]] = "split"
    answers_offline: ClassVar[bool] = False

    def content_of(self, body: BaseModel) -> str:
        """The text stored as the task's `content` (shown in lists, counted against
        MAX_CONTENT_CHARS); by default the input's `content` field."""
        return str(getattr(body, "content", ""))

    def size_of(self, body: BaseModel) -> int:
        """Characters of input the model will read, for MAX_CONTENT_CHARS and CHUNK_CHARS."""
        return len(self.content_of(body))

    def params_of(self, body: BaseModel) -> dict[str, Any]:
        """The rest of the input, stored as the task's JSON `params`."""
        return body.model_dump(mode="json", by_alias=True, exclude={"content"}, exclude_none=True)

    def input_of(self, content: str, params: dict[str, Any]) -> BaseModel:
        """The input model again, from what the task stored (the inverse of the two above)."""
        data = {"content": content, **params} if "content" in self.Create.model_fields else params
        return self.Create.model_validate(data)

    def refusals(self, body: BaseModel, settings: Settings) -> list[Refusal]:
        """What the settings refuse of an input its model accepted (none by default)."""
        return []

    def run(self, job: Job) -> Answer:
        """The result, from one or more `job.complete` calls; raises `LLMError`s."""
        raise NotImplementedError

    def run_offline(self, job: Job) -> Answer:
        """The result without an LLM (`answers_offline`); by default the type needs one."""
        raise ProviderRequired(provider_required(self.name))


@lru_cache(maxsize=64)
def prompt(name: str) -> str:
    """A prompt file of this folder (`prompts/<name>.txt`), read once per process."""
    return (PROMPTS / f"{name}.txt").read_text(encoding="utf-8")


def fill(template: str, **values: str) -> str:
    """`template` with each `{name}` replaced; str.replace, not str.format, so braces in user
    text are safe."""
    for name, value in values.items():
        template = template.replace("{" + name + "}", value)
    return template


@dataclass
class Usage:
    """Token counts summed over the calls of one attempt."""

    total: dict[str, int] = field(default_factory=dict)

    def add(self, usage: dict[str, int] | None) -> None:
        for name, count in (usage or {}).items():
            self.total[name] = self.total.get(name, 0) + count

    def value(self) -> dict[str, int] | None:
        return dict(self.total) or None
