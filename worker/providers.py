"""LLM providers: OpenRouter (any OpenAI-compatible server) and the offline summarizer.

Calls are synchronous on purpose: they run in Celery's threads and inside pybreaker, which only
counts failures of synchronous calls. Every failure leaves this module as one of the `LLMError`
subclasses, decided in one place (`classify`) from status, headers and body.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import httpx

from core.errors import LLMError, LLMInputRejected, LLMProviderProblem, LLMRateLimited, LLMTransient
from core.settings import Settings
from worker import offline

log = logging.getLogger("asynctaskflow.worker.llm")

PROMPT_PATH = Path(__file__).parent / "prompts" / "summarize.txt"
SYSTEM_PROMPT = "You write concise, faithful summaries. You never invent facts."
MESSAGE_LIMIT = 300  # characters of a provider's error text kept in a task's last_error


@dataclass
class Summary:
    """A provider's answer: the summary text and where it came from."""

    text: str
    provider: str
    model: str = ""
    usage: dict[str, int] | None = None


class Provider(Protocol):
    """Anything that turns content into a summary, synchronously, raising only `LLMError`s."""

    name: str

    def summarize(self, content: str) -> Summary: ...


# --- classification (pure) -------------------------------------------------------------------
def classify(status: int, headers: Mapping[str, str], body: bytes | str) -> LLMError | None:
    """The error an HTTP answer stands for, or None when it carries a usable completion.

    An HTTP 200 can still be a failure: OpenRouter reports upstream errors as a 200 with an
    `error` object (classified as if its `code` were the status), and a body without a usable
    `choices[0].message.content` is treated as a transient glitch.
    """
    data = _json(body)
    if not 200 <= status < 300:
        return _by_status(status, headers, data, body)
    if not isinstance(data, dict):
        return LLMTransient(f"HTTP {status}: response is not a JSON object: {_snippet(body)}")
    error = _embedded_error(data)
    if error is not None:
        code = _error_code(error)
        return _by_status(code, headers, {"error": error}, body, shown=f"{status} with error code {code}")
    return _check_choice(data)


def _embedded_error(data: dict[str, Any]) -> dict[str, Any] | None:
    """The `error` object of a 200 answer: top-level, or on the first choice (OpenRouter uses both)."""
    if isinstance(data.get("error"), dict):
        return data["error"]
    choice = _first_choice(data)
    error = choice.get("error") if choice is not None else None
    return error if isinstance(error, dict) else None


def _by_status(
    status: int, headers: Mapping[str, str], data: Any, body: bytes | str, shown: str | None = None
) -> LLMError:
    """Map an error status (or an error object's code) to the retry policy's error classes."""
    message = f"HTTP {shown or status}: {_error_message(data, body)}"
    retry_after = parse_retry_after(_header(headers, "retry-after"))
    if status == 429 or (status == 503 and retry_after is not None):
        return LLMRateLimited(message, retry_after)
    if status >= 500 or status == 408:
        return LLMTransient(message)
    if status in (401, 402, 403, 404):
        return LLMProviderProblem(message)
    if 400 <= status < 500:
        return LLMInputRejected(message)
    # 1xx/3xx (httpx does not follow redirects) or a 2xx code inside an error object: a base URL
    # that points at the wrong place is an operator's problem; anything else is a glitch.
    if 300 <= status < 400:
        return LLMProviderProblem(message + " (check OPENROUTER_BASE_URL)")
    return LLMTransient(message)


def _check_choice(data: dict[str, Any]) -> LLMError | None:
    """None when `choices[0].message.content` is a non-empty string."""
    choice = _first_choice(data)
    if choice is None:
        return LLMTransient(f"HTTP 200 without choices: {_snippet(json.dumps(data))}")
    message = choice.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str) and content.strip():
        return None
    if choice.get("finish_reason") == "content_filter":
        return LLMInputRejected("the provider's content filter refused this content")
    return LLMTransient(f"HTTP 200 with empty completion (finish_reason={choice.get('finish_reason')!r})")


def _first_choice(data: dict[str, Any]) -> dict[str, Any] | None:
    choices = data.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return None


def _error_code(error: dict[str, Any]) -> int:
    """An error object's code as a status; a missing or non-numeric code counts as a 502."""
    try:
        return int(error.get("code"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 502


def _error_message(data: Any, body: bytes | str) -> str:
    """error.message (plus error.metadata.raw, the upstream's own words), or the start of the body."""
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return _snippet(body) or "(empty body)"
    message = str(error.get("message") or "no message")
    metadata = error.get("metadata")
    raw = metadata.get("raw") if isinstance(metadata, dict) else None
    if raw:
        message += f" (raw: {raw if isinstance(raw, str) else json.dumps(raw)})"
    return _truncate(message)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After value (delta-seconds or an HTTP date), never negative."""
    if value is None or not value.strip():
        return None
    try:
        return max(float(value.strip()), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup that works for httpx.Headers and for plain dicts in tests."""
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _json(body: bytes | str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, TypeError):
        return None


def _snippet(body: bytes | str) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return _truncate(" ".join(text.split()))


def _truncate(text: str) -> str:
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


# --- providers -------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def prompt_template() -> str:
    """The user prompt, read once; `{content}` marks where the task's text goes."""
    return PROMPT_PATH.read_text(encoding="utf-8")


def render_prompt(content: str) -> str:
    """The prompt for `content`. str.replace, not str.format, so braces in user text are safe."""
    return prompt_template().replace("{content}", content)


class OpenRouterProvider:
    """OpenRouter's (or any OpenAI-compatible server's) chat completions endpoint.

    One `httpx.Client` per instance, shared by all worker threads: it is thread-safe, and a
    pool sized to the worker's concurrency keeps connections alive between calls.
    """

    name = "openrouter"

    def __init__(self, settings: Settings, client: httpx.Client | None = None) -> None:
        key = settings.openrouter_api_key.get_secret_value() if settings.openrouter_api_key else ""
        self._key = key
        self.model = settings.openrouter_model
        self._max_tokens = settings.openrouter_max_tokens
        self._url = settings.openrouter_base_url.rstrip("/") + "/chat/completions"
        # httpx's timeouts bound each read, not the whole answer: a server that trickles bytes
        # would hold a worker slot for ever. With the threads pool Celery enforces no time limit,
        # so the provider gives up at the soft time limit itself and the task is rescheduled.
        self._deadline = settings.celery_task_soft_time_limit
        self._client = client or httpx.Client(
            timeout=settings.openrouter_timeout,
            limits=httpx.Limits(
                max_connections=settings.openrouter_max_connections,
                max_keepalive_connections=settings.openrouter_max_connections,
            ),
        )

    def summarize(self, content: str) -> Summary:
        """One chat completion for the summary prompt; raises an `LLMError` subclass on any failure."""
        status, headers, body = self._post(self._payload(content))
        error = classify(status, headers, body)
        if error is not None:
            raise self._scrubbed(error)
        data = json.loads(body)
        text = data["choices"][0]["message"]["content"].strip()  # checked by classify
        return Summary(text, self.name, str(data.get("model") or self.model), _usage(data))

    def close(self) -> None:
        """Close the connection pool (at worker shutdown)."""
        self._client.close()

    def _payload(self, content: str) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": render_prompt(content)},
            ],
            "max_tokens": self._max_tokens,
        }

    def _post(self, payload: dict[str, Any]) -> tuple[int, httpx.Headers, bytes]:
        """POST and read the answer by the deadline, translating httpx's exceptions where they
        enter; the key never reaches a message."""
        headers = {"X-Title": "AsyncTaskFlow"}
        if self._key:  # without a key, send none and let the server's 401 say so ("Bearer " is illegal)
            headers["Authorization"] = f"Bearer {self._key}"
        deadline = time.monotonic() + self._deadline
        try:
            with self._client.stream("POST", self._url, json=payload, headers=headers) as response:
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if time.monotonic() > deadline:
                        raise LLMTransient(f"no complete answer within the soft time limit ({self._deadline:g}s)")
                return response.status_code, response.headers, bytes(body)
        except httpx.TimeoutException as e:
            raise LLMTransient(self._scrub(f"timeout calling {self._url}: {type(e).__name__}")) from e
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as e:
            raise LLMProviderProblem(self._scrub(f"bad OPENROUTER_BASE_URL {self._url}: {e}")) from e
        except httpx.RequestError as e:  # connect, read, write, protocol and decoding errors
            raise LLMTransient(self._scrub(f"{type(e).__name__} calling {self._url}: {e}")) from e

    def _scrub(self, message: str) -> str:
        """Remove the API key, in case a provider or a URL ever echoes it back."""
        return message.replace(self._key, "***") if self._key else message

    def _scrubbed(self, error: LLMError) -> LLMError:
        if not self._key or self._key not in str(error):
            return error
        return type(error)(self._scrub(str(error)), error.retry_after)


def _usage(data: dict[str, Any]) -> dict[str, int] | None:
    """The integer token counts of `usage`, if the provider sent any."""
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return None
    counts = {k: v for k, v in usage.items() if isinstance(v, int) and not isinstance(v, bool)}
    return counts or None


class OfflineProvider:
    """The extractive summarizer of `worker.offline`: no network, no account, deterministic."""

    name = "offline"
    model = "extractive"

    def __init__(self, settings: Settings) -> None:
        self._sentences = settings.offline_summary_sentences

    def summarize(self, content: str) -> Summary:
        return Summary(offline.summarize(content, self._sentences), self.name, self.model)

    def close(self) -> None:
        """Nothing to release; present so callers can close any provider."""


def build_provider(settings: Settings) -> Provider:
    """The offline summarizer without an API key (or when asked for), OpenRouter otherwise."""
    if settings.llm_uses_offline:
        log.info("LLM provider: offline extractive summarizer")
        return OfflineProvider(settings)
    log.info("LLM provider: %s at %s", settings.openrouter_model, settings.openrouter_base_url)
    return OpenRouterProvider(settings)
