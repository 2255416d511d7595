"""LLM providers: OpenRouter (any OpenAI-compatible server), and the offline provider that makes
no call (a type's own offline answer runs instead, see `tasktypes.base.TaskType.run_offline`).

Calls are synchronous on purpose: they run in Celery's threads and inside pybreaker, which only
counts failures of synchronous calls. Every failure leaves this module as one of the `LLMError`
subclasses, decided in one place (`classify`) from status, headers and body.
"""

from __future__ import annotations

import email.utils
import json
import logging
import re
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from core.errors import (
    LLMAccountProblem,
    LLMContentFlagged,
    LLMContextTooLong,
    LLMError,
    LLMInputRejected,
    LLMModelUnknown,
    LLMProviderProblem,
    LLMRateLimited,
    LLMTransient,
    ProviderRequired,
)
from core.settings import Settings
from tasktypes.base import Completion, CompletionRequest, provider_required

log = logging.getLogger("asynctaskflow.worker.llm")

MESSAGE_LIMIT = 300  # characters of a provider's error message kept in a task's last_error
RAW_LIMIT = 160  # characters of the upstream's own words (error.metadata.raw) kept beside it


class Throttled(LLMRateLimited):
    """The fleet's own rate limit (LLM_RATE_LIMIT_REQUESTS) had no token: no call was made, and
    the task waits in the schedule, spending no retry and no worker slot."""

    error_type = "throttled"
    from_provider = False


@dataclass(frozen=True)
class CallRecord:
    """One HTTP call to the provider, as the per-day metrics and the provider state see it."""

    model: str
    error_type: str = ""  # "" for a usable answer, else the LLMError's error_type
    message: str = ""
    usage: dict[str, int] | None = None


Observer = Callable[[CallRecord], None]


@dataclass
class Budget:
    """What one attempt allows its provider calls: a deadline (time.monotonic()) for the whole
    attempt, and `take`, called before each HTTP call, which raises `Throttled` when the fleet's
    rate limit has no token for it."""

    deadline: float
    take: Callable[[], None] = lambda: None


class Provider(Protocol):
    """Anything that answers a chat-completions request, synchronously, raising only `LLMError`s.

    `context_chars` is the longest text one call should get (0: any length); a type splits longer
    input (`tasktypes.pieces`). `observer`, when set, sees every network call.
    """

    name: str
    model: str
    context_chars: int
    observer: Observer | None

    def complete(self, request: CompletionRequest, budget: Budget | None = None) -> Completion: ...

    def close(self) -> None: ...


# --- classification (pure) -------------------------------------------------------------------
# What the error bodies of OpenAI-compatible servers say, as each server's documentation and
# issue tracker show them (tests/provider_bodies.py holds one real body per case). The body is
# read before the status: LiteLLM's proxy answers an unknown model and a refused key with 400,
# OpenAI answers spent credits with 429, and neither status says what happened.
_QUOTA_CODES = frozenset({"insufficient_quota"})
_AUTH_CODES = frozenset({"invalid_api_key", "incorrect_api_key", "invalid_authentication", "auth_error",
                         "authentication_error", "authenticationerror", "no_db_connection",
                         "token_not_found_in_db"})  # fmt: skip
_MODEL_CODES = frozenset({"model_not_found"})
_CONTEXT_CODES = frozenset({"context_length_exceeded", "contextwindowexceedederror"})
_RATE_CODES = frozenset({"rate_limit_exceeded", "ratelimiterror"})
_QUOTA_TEXT = re.compile(r"exceeded your current quota|insufficient[_ ]quota", re.I)
_AUTH_TEXT = re.compile(
    r"incorrect api key|invalid api key|authentication ?error|no connected db|invalid (user|proxy server) (key|token)",
    re.I,
)
_MODEL_TEXT = re.compile(
    r"\bmodel\b[^.]{0,200}?\b(does not exist|not found|is not available|not supported)"
    r"|invalid model (name|id)|is not a valid model id|unknown model|no such model|model_not_found",
    re.I,
)
_CONTEXT_TEXT = re.compile(r"maximum context length|context_length_exceeded|context ?window ?exceeded", re.I)


@dataclass(frozen=True)
class ErrorBody:
    """The error an answer's body describes, whichever server's shape it has:
    `{"error": {message, type, code, param, metadata}}` (OpenAI, OpenRouter, LiteLLM, Ollama's
    /v1, vLLM), `{"object": "error", message, type, code}` (vLLM before 0.8), `{"error": "text"}`
    (Ollama's own API), `{"detail": "text"}` (FastAPI-based proxies). `code` and `type` are
    lower-case text ("" when absent or null; LiteLLM sends the string "None")."""

    message: str = ""
    code: str = ""
    type: str = ""
    metadata: dict[str, Any] | None = None

    @property
    def status(self) -> int | None:
        """`code` as an HTTP status, when it is one (OpenRouter's 200 with an error object)."""
        return int(self.code) if self.code.isdigit() and 100 <= int(self.code) <= 599 else None


def error_body(data: Any) -> ErrorBody | None:
    """The error a parsed body carries, or None when it carries none."""
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if isinstance(error, str):
        return ErrorBody(message=error)
    if isinstance(error, dict):
        metadata = error.get("metadata")
        return ErrorBody(_text(error.get("message")), _token(error.get("code")), _token(error.get("type")),
                         metadata if isinstance(metadata, dict) else None)  # fmt: skip
    if data.get("object") == "error":
        return ErrorBody(_text(data.get("message")), _token(data.get("code")), _token(data.get("type")))
    if isinstance(data.get("detail"), str):
        return ErrorBody(message=data["detail"])
    return None


def _text(value: Any) -> str:
    """An error message; LiteLLM sometimes nests one more `{"error": "..."}` in it."""
    if isinstance(value, dict) and isinstance(value.get("error"), str):
        return value["error"]
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def _token(value: Any) -> str:
    text = "" if value is None or isinstance(value, bool) else str(value).strip().lower()
    return "" if text in ("none", "null") else text


def by_body(error: ErrorBody) -> type[LLMError] | None:
    """The class an error body names on its own, whatever the status: spent credits and a refused
    key pause every call, an unknown model is the operator's (after the fallback models), a too
    long input is the input's, a rate limit is a rate limit; None when the body says none of these."""
    names = {error.code, error.type}
    rules: tuple[tuple[frozenset[str], re.Pattern[str], type[LLMError]], ...] = (
        (_QUOTA_CODES, _QUOTA_TEXT, LLMAccountProblem),
        (_AUTH_CODES, _AUTH_TEXT, LLMAccountProblem),
        (_MODEL_CODES, _MODEL_TEXT, LLMModelUnknown),
        (_CONTEXT_CODES, _CONTEXT_TEXT, LLMContextTooLong),
    )
    for codes, text, kind in rules:
        if names & codes or text.search(error.message):
            return kind
    if error.type == "notfounderror" and "model" in error.message.lower():  # vLLM
        return LLMModelUnknown
    return LLMRateLimited if names & _RATE_CODES else None


def classify(status: int, headers: Mapping[str, str], body: bytes | str) -> LLMError | None:
    """The error an HTTP answer stands for, or None when it carries a usable completion.

    An HTTP 200 can still be a failure: OpenRouter reports upstream errors as a 200 with an
    `error` object (classified as if its `code` were the status), and a body without a usable
    `choices[0].message.content` is treated as a transient glitch.
    """
    data = _json(body)
    if not 200 <= status < 300:
        return _classified(status, headers, error_body(data), body)
    if not isinstance(data, dict):
        return LLMTransient(f"HTTP {status}: response is not a JSON object: {_snippet(body)}")
    error = _embedded_error(data)
    if error is not None:
        found = error_body({"error": error}) or ErrorBody()
        code = found.status or 502  # a missing or non-numeric code counts as a bad gateway
        return _classified(code, headers, found, body, shown=f"{status} with error code {found.code or code}")
    return _check_choice(data)


def _embedded_error(data: dict[str, Any]) -> dict[str, Any] | None:
    """The `error` object of a 200 answer: top-level, or on the first choice (OpenRouter uses both)."""
    if isinstance(data.get("error"), dict):
        return data["error"]
    choice = _first_choice(data)
    error = choice.get("error") if choice is not None else None
    return error if isinstance(error, dict) else None


def _classified(
    status: int, headers: Mapping[str, str], error: ErrorBody | None, body: bytes | str, shown: str | None = None
) -> LLMError:
    """The body's own verdict (`by_body`), else the status's (`_by_status`)."""
    message = f"HTTP {shown or status}: {_error_message(error, body)}"
    retry_after = parse_retry_after(_header(headers, "retry-after"))
    kind = by_body(error) if error is not None else None
    if kind is not None:
        return kind(message, retry_after if kind is LLMRateLimited else None)
    return _by_status(status, retry_after, error, message)


def _by_status(status: int, retry_after: float | None, error: ErrorBody | None, message: str) -> LLMError:
    """Map an error status (or an error object's code) to the retry policy's error classes."""
    if status == 429 or (status == 503 and retry_after is not None):
        return LLMRateLimited(message, retry_after)
    if status >= 500 or status == 408:
        return LLMTransient(message)
    if status in (401, 402):
        return LLMAccountProblem(message)
    if status == 403 and _moderated(error):
        return LLMContentFlagged(message)  # OpenRouter: the model's moderation flagged this input
    if status in (403, 404):
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
        return LLMContentFlagged("the provider's content filter refused this content")
    return LLMTransient(f"HTTP 200 with empty completion (finish_reason={choice.get('finish_reason')!r})")


def _first_choice(data: dict[str, Any]) -> dict[str, Any] | None:
    choices = data.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return None


def _moderated(error: ErrorBody | None) -> bool:
    """OpenRouter's 403 for flagged input carries `reasons` / `flagged_input` in its metadata."""
    metadata = (error.metadata if error is not None else None) or {}
    return bool(metadata.get("reasons") or metadata.get("flagged_input"))


def _error_message(error: ErrorBody | None, body: bytes | str) -> str:
    """The error's message, then which upstream answered (metadata.provider_name) and its own
    words (metadata.raw, each bounded so neither hides the other), or the start of the body."""
    if error is None:
        return _snippet(body) or "(empty body)"
    message = _truncate(" ".join((error.message or "no message").split()))
    metadata = error.metadata or {}
    if metadata.get("provider_name"):
        message += f" [upstream: {_truncate(str(metadata['provider_name']), 60)}]"
    raw = metadata.get("raw")
    if raw:
        message += f" (raw: {_truncate(_snippet(raw if isinstance(raw, str) else json.dumps(raw)), RAW_LIMIT)})"
    return message


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


def _truncate(text: str, limit: int = MESSAGE_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- providers -------------------------------------------------------------------------------
class OpenRouterProvider:
    """OpenRouter's (or any OpenAI-compatible server's) chat completions endpoint.

    One httpx transport (`httpx.HTTPTransport`, a connection pool of one) per worker thread,
    each keeping its connection alive between calls, all sharing one SSL context. A single
    client shared by every thread is thread-safe but scans its whole pool under a lock on every
    request and every response close: at 64 threads that scan was 18 % of the worker's CPU. The
    request is built here and handed to the transport, skipping `httpx.Client`'s per-request
    merging of base URL, headers, cookies, auth and redirects, none of which this one POST
    uses: a third of the call's CPU (bench/RESULTS.md). The model is
    OPENROUTER_MODEL; when it fails in a way another model may not (an upstream outage, a 429 of
    that model, an unknown model), the OPENROUTER_FALLBACK_MODELS are asked in order, within the
    same attempt. Our own fallback rather than OpenRouter's `models` parameter: it works with any
    OpenAI-compatible server, and each model's failure is recorded.
    """

    name = "openrouter"

    def __init__(self, settings: Settings) -> None:
        key = settings.openrouter_api_key.get_secret_value() if settings.openrouter_api_key else ""
        self._key = key
        self.model = settings.openrouter_model
        self.models = [self.model, *settings.fallback_models]
        self.context_chars = settings.chunk_chars
        self.observer: Observer | None = None
        self._max_tokens = settings.openrouter_max_tokens
        self.base_url = settings.openrouter_base_url.rstrip("/")
        self._url = self.base_url + "/chat/completions"
        # Without a key, send none and let the server's 401 say so ("Bearer " alone is illegal).
        auth = {"Authorization": f"Bearer {key}"} if key else {}
        self._headers = {**BASE_HEADERS, **request_headers(settings), **auth}
        # httpx's timeouts bound each read, not the whole answer: a server that trickles bytes
        # would hold a worker slot for ever. With the threads pool Celery enforces no time limit,
        # so the provider gives up at the soft time limit itself and the task is rescheduled.
        self._deadline = settings.celery_task_soft_time_limit
        self._timeout = {"timeout": httpx.Timeout(settings.openrouter_timeout).as_dict()}
        self._ssl: ssl.SSLContext | None = None
        self._local = threading.local()
        self._transports: list[httpx.HTTPTransport] = []
        self._transports_lock = threading.Lock()

    def complete(self, request: CompletionRequest, budget: Budget | None = None) -> Completion:
        """One chat completion, falling back model by model (unless the request names its model);
        raises an `LLMError` subclass when no model gave an answer (see `_worst`)."""
        budget = budget or Budget(time.monotonic() + self._deadline)
        models = [request.model] if request.model else self.models
        failures: list[tuple[str, LLMError]] = []
        for model, backup in zip(models, [*models[1:], None], strict=True):
            try:
                return self._ask(model, request, budget)
            except Throttled:
                raise  # no call was made: the fleet's limit, not this model, said no
            except LLMError as error:
                failures.append((model, error))
                if backup is None or not _another_model_may_help(error) or time.monotonic() >= budget.deadline:
                    break
                log.warning("model %s failed (%s); trying %s", model, error.error_type, backup)
        raise _worst(failures)

    def close(self) -> None:
        """Close every thread's connection (at worker shutdown)."""
        with self._transports_lock:
            transports, self._transports = self._transports, []
        for transport in transports:
            transport.close()

    def _transport(self) -> httpx.HTTPTransport:
        """This thread's transport, made on its first call."""
        transport: httpx.HTTPTransport | None = getattr(self._local, "transport", None)
        if transport is None:
            with self._transports_lock:
                if self._ssl is None:
                    self._ssl = httpx.create_ssl_context()
                limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
                transport = httpx.HTTPTransport(verify=self._ssl, limits=limits)
                self._transports.append(transport)
            self._local.transport = transport
        return transport

    def _ask(self, model: str, request: CompletionRequest, budget: Budget) -> Completion:
        budget.take()
        try:
            status, headers, body = self._post(self._payload(model, request), budget.deadline)
            error = classify(status, headers, body)
        except LLMError as e:
            error = e
        if error is not None:
            error = self._scrubbed(error)
            self._observe(CallRecord(model, error.error_type, str(error)))
            raise error
        data = json.loads(body)
        choice = data["choices"][0]  # checked by classify
        completion = Completion(choice["message"]["content"].strip(), self.name, str(data.get("model") or model),
                                _usage(data), str(choice.get("finish_reason") or ""))  # fmt: skip
        self._observe(CallRecord(completion.model, usage=completion.usage))
        return completion

    def _payload(self, model: str, request: CompletionRequest) -> dict[str, Any]:
        """The request body: the type's fields that are set, OPENROUTER_MAX_TOKENS by default."""
        payload: dict[str, Any] = {"model": model, "messages": request.messages,
                                   "max_tokens": request.max_tokens or self._max_tokens}  # fmt: skip
        if request.temperature is not None:
            payload["temperature"] = request.temperature
        if request.response_format is not None:
            payload["response_format"] = request.response_format
        return payload

    def _observe(self, record: CallRecord) -> None:
        """Tell the observer; its failure (Redis away) must never fail the call itself."""
        if self.observer is None:
            return
        try:
            self.observer(record)
        except Exception as e:  # metrics are best effort
            log.warning("LLM call not recorded: %s", e)

    def _post(self, payload: dict[str, Any], deadline: float) -> tuple[int, httpx.Headers, bytes]:
        """POST and read the answer by the deadline, translating httpx's exceptions where they
        enter; the key never reaches a message."""
        try:
            content = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
            request = httpx.Request("POST", self._url, headers=self._headers, content=content, extensions=self._timeout)
            response = self._transport().handle_request(request)
            try:
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if time.monotonic() > deadline:
                        raise LLMTransient(f"no complete answer within the soft time limit ({self._deadline:g}s)")
                return response.status_code, response.headers, bytes(body)
            finally:
                response.close()
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


# What httpx.Client would add that this call needs; no Accept-Encoding, so answers come as is.
BASE_HEADERS = {"Accept": "application/json", "Content-Type": "application/json", "User-Agent": "asynctaskflow"}


def request_headers(settings: Settings) -> dict[str, str]:
    """OpenRouter's optional attribution headers (its app rankings), from the settings; empty
    values are left out."""
    headers = {"HTTP-Referer": settings.openrouter_http_referer, "X-Title": settings.openrouter_x_title}
    return {name: value for name, value in headers.items() if value}


def _another_model_may_help(error: LLMError) -> bool:
    """A model's outage, throttling or absence is that model's; a refused input or a refused key
    would be refused by every model, so those end the fallback."""
    return not isinstance(error, (LLMInputRejected, LLMAccountProblem))


def _worst(failures: list[tuple[str, LLMError]]) -> LLMError:
    """One error for the attempt, with every model's reason in the message: a refused key or
    spent credits if any model met them (they concern every model), else the first failure a
    later attempt can cure (transient or rate-limited: the task is retried), else the first."""
    if len(failures) == 1:
        return failures[0][1]
    errors = [e for _, e in failures]
    account = [e for e in errors if isinstance(e, LLMAccountProblem)]
    retryable = [e for e in errors if isinstance(e, (LLMTransient, LLMRateLimited))]
    chosen = (account or retryable or errors)[0]
    message = "; ".join(f"{model}: {error}" for model, error in failures)
    return type(chosen)(message, chosen.retry_after)


def _usage(data: dict[str, Any]) -> dict[str, int] | None:
    """The integer token counts of `usage`, if the provider sent any."""
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return None
    counts = {k: v for k, v in usage.items() if isinstance(v, int) and not isinstance(v, bool)}
    return counts or None


class OfflineProvider:
    """The provider when no LLM is configured: it makes no call. A type with an offline answer
    gives it without asking (`TaskType.run_offline`); a type without one is refused at submit,
    and a task of it that reaches this worker anyway is refused here (`ProviderRequired`: DLQ, to
    be re-driven once a key is set). It never answers with something other than was asked."""

    name = "offline"
    model = "extractive"
    context_chars = 0
    observer: Observer | None = None

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def complete(self, request: CompletionRequest, budget: Budget | None = None) -> Completion:
        raise ProviderRequired(provider_required())

    def close(self) -> None:
        """Nothing to release; present so callers can close any provider."""


def build_provider(settings: Settings) -> Provider:
    """The offline provider without an API key (or when asked for), OpenRouter otherwise."""
    if settings.llm_uses_offline:
        log.info("LLM provider: offline (types with an offline answer only)")
        return OfflineProvider(settings)
    models = ", ".join([settings.openrouter_model, *settings.fallback_models])
    log.info("LLM provider: %s at %s", models, settings.openrouter_base_url)
    return OpenRouterProvider(settings)
