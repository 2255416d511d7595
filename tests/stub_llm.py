"""A loopback OpenAI-compatible stand-in for the LLM, for unit and integration tests.

Behaviour is scripted per task by directives in the LAST user message's content, so a test
controls each call through the task it submits:

    [[tag:XYZ]]       answer "summary:XYZ" (without a tag: "stub summary")
    [[answer:TEXT]]   answer TEXT itself (e.g. a JSON object for extract; TEXT cannot hold "]")
    [[status:N]]      always answer status N with {"error": {"message": ..., "code": N}}
    [[400]]           400 "stub rejected this input (<digest of the content>)": each input its own words
    [[body:NAME]]     answer one of PROVIDER_BODIES: a real error body of OpenAI, OpenRouter, vLLM,
                      Ollama or LiteLLM, with the status that server sends it with (no Retry-After)
    [[fail:N]]        the first N calls with this exact content answer 500, later ones 200
    [[429:S]]         the first call with this content answers 429 with Retry-After: S, later ones 200
    [[retry_after:S]] add Retry-After: S to any error answer (e.g. with [[status:503]])
    [[delay:S]]       sleep S seconds before answering (added to the base delay)
    [[trickle:S]]     the first call with this content sends its 200 one byte every 0.2 s for S
                      seconds before the body: no read timeout fires, only a total deadline helps
    [[error200]]      200 with {"error": {"code": 502, "message": "upstream"}}
    [[raw:TEXT]]      error answers carry OpenRouter's error.metadata {raw: TEXT, provider_name: "StubUpstream"}
    [[models:A=S,B=T]] calls asking for model A answer status S, for B status T (others answer normally):
                      a failing main model in front of its fallbacks; S may also name a PROVIDER_BODIES
                      entry ([[models:main=litellm/invalid_model]])
    [[moderated]]     403 with metadata.reasons, as OpenRouter's moderation answers flagged input
    [[nochoices]]     200 with {"id": "x"}
    [[badjson]]       200 with the body `not json`

Faults for the whole server, for chaos tests (in-process `stub.state.set_fault(...)`, or
`POST /_fault` with the same fields as JSON; `DELETE /_fault` ends it):
    status=500, share=1.0        answer `status` to that share of calls (chosen at random)
    retry_after=S                with a Retry-After: S header
    seconds=T                    for T seconds, then answer normally again
A delay range (`max_delay`, or `--max-delay`) draws each call's delay uniformly from [delay, max_delay].

A request without `Authorization: Bearer <token>` gets a 401. Every call is recorded as
{content, status, at, model, token, retry_after, headers}; `GET /_calls` lists them, `POST /_reset`
clears them, the per-content counters and the fault.

`state.context_chars` (> 0) plays a model with a small context: a prompt longer than that many
characters answers OpenAI's `context_length_exceeded`.

`GET {base}/key` answers as OpenRouter's key endpoint: {"data": {label, usage, limit,
limit_remaining, is_free_tier, rate_limit}} from `state.key_info`, or `state.key_status` (401, 402)
with an error body; `state.key_calls` counts its calls.

Two ways to run it, both bound to 127.0.0.1 only:
    python tests/stub_llm.py --port 8099 [--delay 0.2]
    with StubLLM(delay=0.0) as stub: ...   # uvicorn in a daemon thread, on a free port

It is a bare ASGI app on one event loop (no per-request threads, no framework), so one process
answers hundreds of concurrent, delayed requests at little CPU cost. Standard library + uvicorn
only, so it runs as a script from anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import random
import re
import socket
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Reply = tuple[int, dict[str, str], bytes]

HOST = "127.0.0.1"
_DIRECTIVE = re.compile(r"\[\[(\w+)(?::([^\]]*))?\]\]")
_IDS = itertools.count(1)
DEFAULT_KEY_INFO: dict[str, Any] = {
    "label": "stub-key", "usage": 1.25, "limit": 10.0, "limit_remaining": 8.75, "is_free_tier": False,
    "rate_limit": {"requests": 60, "interval": "10s"},
}


# Error bodies as each server sends them, from its documentation and its issue tracker (only the
# model names, organisation ids and keys are made up): `[[body:NAME]]` answers one. The expected
# class of each is in tests/worker/test_provider_shapes.py, and in the README's table.
PROVIDER_BODIES: dict[str, tuple[int, dict[str, Any]]] = {
    # OpenAI: platform.openai.com/docs/guides/error-codes (type, code and param on every error).
    "openai/model_not_found": (404, {"error": {
        "message": "The model `gpt-9-turbo` does not exist or you do not have access to it.",
        "type": "invalid_request_error", "param": None, "code": "model_not_found"}}),
    "openai/invalid_api_key": (401, {"error": {
        "message": "Incorrect API key provided: sk-abc12***********************wxyz. You can find your API key at "
                   "https://platform.openai.com/account/api-keys.",
        "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}),
    "openai/insufficient_quota": (429, {"error": {
        "message": "You exceeded your current quota, please check your plan and billing details. For more "
                   "information on this error, read the docs: "
                   "https://platform.openai.com/docs/guides/error-codes/api-errors.",
        "type": "insufficient_quota", "param": None, "code": "insufficient_quota"}}),
    "openai/context_length_exceeded": (400, {"error": {
        "message": "This model's maximum context length is 8192 tokens. However, your messages resulted in 8227 "
                   "tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}),
    "openai/rate_limit_exceeded": (429, {"error": {
        "message": "Rate limit reached for gpt-4o-mini in organization org-abc123 on requests per min (RPM): "
                   "Limit 3, Used 3, Requested 1. Please try again in 20s. Visit "
                   "https://platform.openai.com/account/rate-limits to learn more.",
        "type": "requests", "param": None, "code": "rate_limit_exceeded"}}),
    # OpenRouter: openrouter.ai/docs/api-reference/errors ({error: {code, message, metadata?}}).
    "openrouter/invalid_model": (400, {"error": {"message": "meta-llama/llama-9 is not a valid model ID", "code": 400},
                                       "user_id": "user_2abc"}),
    "openrouter/no_credits": (402, {"error": {
        "message": "Insufficient credits. Add more using https://openrouter.ai/settings/credits", "code": 402}}),
    "openrouter/no_auth": (401, {"error": {"message": "No auth credentials found", "code": 401}}),
    "openrouter/rate_limited": (429, {"error": {"message": "Rate limit exceeded: free-models-per-min. ",
                                                "code": 429, "metadata": {"headers": {
                                                    "X-RateLimit-Limit": "20", "X-RateLimit-Remaining": "0"}}}}),
    # vLLM's OpenAI-compatible server: before 0.8 the error object is the body itself.
    "vllm/model_not_found": (404, {"object": "error", "message": "The model `llama-9` does not exist.",
                                   "type": "NotFoundError", "param": None, "code": 404}),
    "vllm/model_not_found_wrapped": (404, {"error": {"message": "The model `llama-9` does not exist.",
                                                     "type": "NotFoundError", "param": None, "code": 404}}),
    "vllm/context_length": (400, {"object": "error", "message":
                                  "This model's maximum context length is 2048 tokens. However, you requested 2600 "
                                  "tokens (2088 in the messages, 512 in the completion). Please reduce the length "
                                  "of the messages or completion.",
                                  "type": "BadRequestError", "param": None, "code": 400}),
    # Ollama: its /v1 (OpenAI compatibility) wraps the error; its own API sends a bare string.
    "ollama/model_not_found": (404, {"error": {"message": 'model "llama9" not found, try pulling it first',
                                               "type": "api_error", "param": None, "code": None}}),
    "ollama/native_model_not_found": (404, {"error": "model 'llama9' not found"}),
    # LiteLLM's proxy: `code` is a string, `type` and `param` may be the string "None", and the
    # message is sometimes one more object.
    "litellm/invalid_model": (400, {"error": {
        "message": "/chat/completions: Invalid model name passed in model=llama-9. Call `/v1/models` to view "
                   "available models for your key.",
        "type": "None", "param": "None", "code": "400"}}),
    "litellm/invalid_model_nested": (400, {"error": {"message": {
        "error": "/chat/completions: Invalid model name passed in model=llama-9. Call `/v1/models` to view "
                 "available models for your key."}, "type": "None", "param": "None", "code": "400"}}),
    "litellm/no_connected_db": (400, {"error": {"message": "No connected db.", "type": "no_db_connection",
                                                "param": "None", "code": "400"}}),
    "litellm/auth_error": (401, {"error": {"message": "Authentication Error, No connected db.", "type": "auth_error",
                                           "param": "None", "code": 401}}),
    "litellm/authentication_error": (401, {"error": {
        "message": "litellm.AuthenticationError: AuthenticationError: OpenAIException - Incorrect API key "
                   "provided: sk-abc12***wxyz.",
        "type": None, "param": None, "code": "401"}}),
    "litellm/rate_limit": (429, {"error": {
        "message": "litellm.RateLimitError: RateLimitError: OpenAIException - Rate limit reached for requests",
        "type": "throttling_error", "param": None, "code": "429"}}),
}  # fmt: skip


@dataclass(frozen=True)
class Fault:
    """A server-wide fault: `status` for `share` of the calls until `until` (time.time(), None = for good)."""

    status: int
    share: float = 1.0
    retry_after: float | None = None
    until: float | None = None


class StubState:
    """Recorded calls, per-content counters and the current fault, shared by the event loop and
    the test thread."""

    def __init__(self, delay: float = 0.0, max_delay: float | None = None, seed: int = 1) -> None:
        self.delay = delay
        self.max_delay = max_delay
        self.fault: Fault | None = None
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._calls: list[dict[str, Any]] = []
        self._seen: dict[str, int] = {}
        self.key_info: dict[str, Any] = dict(DEFAULT_KEY_INFO)
        self.key_status = 200
        self.key_calls = 0
        self.context_chars = 0  # > 0: longer prompts answer openai/context_length_exceeded

    def count(self, content: str) -> int:
        """How many calls with exactly this content have arrived, this one included."""
        with self._lock:
            self._seen[content] = self._seen.get(content, 0) + 1
            return self._seen[content]

    def set_fault(
        self, status: int, share: float = 1.0, retry_after: float | None = None, seconds: float | None = None
    ) -> None:
        until = time.time() + seconds if seconds is not None else None
        self.fault = Fault(status, share, retry_after, until)

    def fault_reply(self) -> Reply | None:
        """The fault's answer for this call, or None when the call is answered normally."""
        fault = self.fault
        if fault is None or (fault.until is not None and time.time() >= fault.until):
            return None
        with self._lock:
            if self._rng.random() >= fault.share:
                return None
        found = {} if fault.retry_after is None else {"retry_after": f"{fault.retry_after:g}"}
        return _error_reply(fault.status, f"stub fault {fault.status}", found)

    def call_delay(self, extra: float) -> float:
        if self.max_delay is None:
            return self.delay + extra
        with self._lock:
            return self._rng.uniform(self.delay, self.max_delay) + extra

    def record(self, call: dict[str, Any]) -> None:
        with self._lock:
            self._calls.append(call)

    def calls(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(c) for c in self._calls]

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._seen.clear()
        self.fault = None
        self.key_info, self.key_status, self.key_calls = dict(DEFAULT_KEY_INFO), 200, 0
        self.context_chars = 0


# --- deciding the answer (pure) --------------------------------------------------------------
def directives(content: str) -> dict[str, str]:
    """The `[[name:value]]` directives in `content` ("" for a directive without a value)."""
    return {m.group(1): m.group(2) or "" for m in _DIRECTIVE.finditer(content)}


def _json_reply(status: int, payload: Any, headers: dict[str, str] | None = None) -> Reply:
    return status, {"content-type": "application/json", **(headers or {})}, json.dumps(payload).encode()


def _error_reply(status: int, message: str, found: dict[str, str]) -> Reply:
    headers = {"retry-after": found["retry_after"]} if "retry_after" in found else {}
    error: dict[str, Any] = {"message": message, "code": status}
    if "raw" in found:
        error["metadata"] = {"raw": found["raw"], "provider_name": "StubUpstream"}
    return _json_reply(status, {"error": error}, headers)


def model_status(found: dict[str, str], model: str) -> int | str | None:
    """The status (or PROVIDER_BODIES name) `[[models:A=S,B=T]]` scripts for `model`, if any."""
    for entry in found.get("models", "").split(","):
        name, _, status = entry.partition("=")
        if name.strip() == model and status.strip().isdigit():
            return int(status)
        if name.strip() == model and status.strip() in PROVIDER_BODIES:
            return status.strip()
    return None


def body_reply(name: str) -> Reply:
    """One of PROVIDER_BODIES, with its status."""
    status, payload = PROVIDER_BODIES[name]
    return _json_reply(status, payload)


def _scripted(found: dict[str, str], model: str) -> Reply | None:
    """The answer `[[models:…]]` or `[[body:…]]` scripts, if any."""
    scripted = model_status(found, model)
    if isinstance(scripted, str):
        return body_reply(scripted)
    if scripted is not None:
        return _error_reply(scripted, f"stub model {model} answers {scripted}", found)
    if found.get("body") in PROVIDER_BODIES:
        return body_reply(found["body"])
    return None


def decide(found: dict[str, str], nth: int, model: str, content: str) -> Reply:
    """The answer to the `nth` call (1-based) carrying these directives."""
    scripted = _scripted(found, model)
    if scripted is not None:
        return scripted
    if "moderated" in found:
        error = {"message": "input flagged", "code": 403, "metadata": {"reasons": ["violence"], "flagged_input": "…"}}
        return _json_reply(403, {"error": error})
    if "status" in found:
        return _error_reply(int(found["status"]), f"stub status {found['status']}", found)
    if "400" in found:
        digest = hashlib.sha256(content.encode()).hexdigest()[:8]
        return _error_reply(400, f"stub rejected this input ({digest})", found)
    if "error200" in found:
        return _json_reply(200, {"error": {"code": 502, "message": "upstream"}})
    if "nochoices" in found:
        return _json_reply(200, {"id": "x"})
    if "badjson" in found:
        return 200, {"content-type": "text/plain"}, b"not json"
    if "fail" in found and nth <= int(found["fail"] or 1):
        return _error_reply(500, f"stub failure {nth} of {found['fail']}", found)
    if "429" in found and nth == 1:
        return _json_reply(429, {"error": {"message": "rate limited", "code": 429}}, {"retry-after": found["429"]})
    return _json_reply(200, _completion(found, model, content))


def _completion(found: dict[str, str], model: str, content: str) -> dict[str, Any]:
    """An OpenAI-shaped chat.completion; token counts are word counts, good enough for tests."""
    answer = found.get("answer") or (f"summary:{found['tag']}" if "tag" in found else "stub summary")
    prompt_tokens, completion_tokens = len(content.split()), len(answer.split())
    return {
        "id": f"chatcmpl-stub-{next(_IDS)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def last_user_content(request: Any) -> str:
    """The text of the last user message ("" if the request has none)."""
    messages = request.get("messages") if isinstance(request, dict) else None
    users = [m for m in messages or [] if isinstance(m, dict) and m.get("role") == "user"]
    content = users[-1].get("content", "") if users else ""
    if isinstance(content, list):  # OpenAI's content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content)


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers (lower-case names), without Authorization: tests read the others."""
    found = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope.get("headers", [])}
    found.pop("authorization", None)
    return found


def bearer_token(scope: Scope) -> str:
    """The token of an `Authorization: Bearer` header, or "" when there is none."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return ""


# --- the ASGI app ----------------------------------------------------------------------------
class StubApp:
    """ASGI callable: the chat completions API plus the `/_calls` and `/_reset` controls."""

    def __init__(self, state: StubState) -> None:
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"].rstrip("/")
        if method == "POST" and path.endswith("/chat/completions"):
            reply, trickle = await self._chat(scope, await _read_body(receive))
            if trickle:
                await _send_trickling(send, reply, trickle)
                return
        elif method == "GET" and path.endswith("/key"):
            reply = self._key(scope)
        elif method == "GET" and path == "/_calls":
            reply = _json_reply(200, self.state.calls())
        elif method == "POST" and path == "/_reset":
            self.state.reset()
            reply = _json_reply(200, {"ok": True})
        elif path == "/_fault" and method in ("POST", "DELETE"):
            reply = self._set_fault(await _read_body(receive) if method == "POST" else b"")
        else:
            reply = _json_reply(404, {"error": {"message": f"no route {method} {path}", "code": 404}})
        await _send(send, reply)

    def _key(self, scope: Scope) -> Reply:
        """OpenRouter's `GET /api/v1/key`: the key's credits and limits, or its refusal."""
        self.state.key_calls += 1
        if not bearer_token(scope):
            return _json_reply(401, {"error": {"message": "Missing Authentication header", "code": 401}})
        if self.state.key_status != 200:
            status = self.state.key_status
            return _json_reply(status, {"error": {"message": f"stub key answers {status}", "code": status}})
        return _json_reply(200, {"data": self.state.key_info})

    def _set_fault(self, body: bytes) -> Reply:
        """POST: set the fault from a JSON body; DELETE (empty body): end it."""
        if not body:
            self.state.fault = None
            return _json_reply(200, {"fault": None})
        try:
            spec = json.loads(body)
            self.state.set_fault(
                int(spec["status"]), float(spec.get("share", 1.0)), spec.get("retry_after"), spec.get("seconds")
            )
        except (ValueError, KeyError, TypeError) as e:
            return _json_reply(400, {"error": {"message": f"bad fault: {e}", "code": 400}})
        return _json_reply(200, {"fault": spec})

    async def _chat(self, scope: Scope, body: bytes) -> tuple[Reply, float]:
        """Decide the answer at arrival (so a hanging call is already recorded), then delay it.
        Also returns for how long the body should trickle (0: send it at once)."""
        try:
            request = json.loads(body)
        except ValueError:
            return _json_reply(400, {"error": {"message": "request body is not JSON", "code": 400}}), 0.0
        content = last_user_content(request)
        found = directives(content)
        model = str(request.get("model", "")) if isinstance(request, dict) else ""
        token = bearer_token(scope)
        nth = self.state.count(content)
        if not token:
            reply = _json_reply(401, {"error": {"message": "Missing Authentication header", "code": 401}})
        elif 0 < self.state.context_chars < len(content):
            reply = body_reply("openai/context_length_exceeded")
        else:
            reply = self.state.fault_reply() or decide(found, nth, model, content)
        retry_after = reply[1].get("retry-after")
        self.state.record(
            {"content": content, "status": reply[0], "at": time.time(), "model": model, "token": token,
             "retry_after": float(retry_after) if retry_after else None, "headers": _headers(scope)}
        )
        delay = self.state.call_delay(float(found.get("delay") or 0))
        if delay > 0:
            await asyncio.sleep(delay)
        trickle = float(found.get("trickle") or 0) if nth == 1 and reply[0] == 200 else 0.0
        return reply, trickle


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send(send: Send, reply: Reply) -> None:
    status, headers, body = reply
    raw_headers = [(k.encode(), v.encode()) for k, v in headers.items()]
    raw_headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


async def _send_trickling(send: Send, reply: Reply, seconds: float) -> None:
    """Headers at once, then a space every 0.2 s for `seconds` (valid leading JSON whitespace),
    then the body: each read gets a byte quickly, so only a deadline on the whole answer ends it."""
    status, headers, body = reply
    raw_headers = [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await send({"type": "http.response.body", "body": b" ", "more_body": True})
        await asyncio.sleep(0.2)
    await send({"type": "http.response.body", "body": body})


def _config(app: StubApp, port: int, own_logging: bool = True) -> uvicorn.Config:
    """Quiet (warnings only, no access log) and without lifespan events, which the app ignores.

    In-process (`own_logging=False`) it leaves the host's logging configuration alone.
    """
    extra: dict[str, Any] = {} if own_logging else {"log_config": None}
    return uvicorn.Config(
        app, host=HOST, port=port, log_level="warning", access_log=False, lifespan="off", backlog=4096, **extra
    )


# --- in-process use --------------------------------------------------------------------------
class StubLLM:
    """The stub served by uvicorn in a daemon thread on a free loopback port.

    `url` is the base URL to use as OPENROUTER_BASE_URL. Usable as a context manager.
    """

    def __init__(self, delay: float = 0.0, max_delay: float | None = None) -> None:
        self.state = StubState(delay, max_delay)
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def start(self, timeout: float = 10.0) -> StubLLM:
        """Serve in a background thread; returns once the port accepts connections."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, 0))  # bound here, so the port is ours before uvicorn starts (no race)
        self.port = sock.getsockname()[1]
        self._server = uvicorn.Server(_config(StubApp(self.state), self.port, own_logging=False))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"stub LLM did not start on port {self.port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop at once: calls still sleeping in a delay are dropped, not waited for."""
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._server.force_exit = True
        self._thread.join(10)
        self._server = self._thread = None

    def calls(self) -> list[dict[str, Any]]:
        """Every call so far: {content, status, at (time.time()), model, token}, in arrival order."""
        return self.state.calls()

    def reset(self) -> None:
        """Forget the calls and the per-content counters."""
        self.state.reset()

    def __enter__(self) -> StubLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """Script form: serve on 127.0.0.1:PORT until interrupted."""
    parser = argparse.ArgumentParser(description="Loopback OpenAI-compatible LLM stand-in for tests.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds added to every answer")
    parser.add_argument("--max-delay", type=float, default=None, help="draw each delay from [delay, max-delay]")
    args = parser.parse_args(argv)
    uvicorn.Server(_config(StubApp(StubState(args.delay, args.max_delay)), args.port)).run()


if __name__ == "__main__":
    main()
