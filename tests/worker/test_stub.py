"""The LLM stand-in itself: script form (a real subprocess), control routes, and concurrency."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.integration.stack import STARTUP_TIMEOUT
from tests.stub_llm import StubLLM, decide, directives

SCRIPT = Path(__file__).resolve().parents[1] / "stub_llm.py"
AUTH = {"Authorization": "Bearer any-key"}


def chat(content: str, model: str = "m") -> dict[str, object]:
    return {"model": model, "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": content}]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = STARTUP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "stub exited early"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"stub not listening on {port}")


@pytest.fixture
def script_stub() -> Iterator[str]:
    """`python tests/stub_llm.py --port P --delay 0.2` as a subprocess; yields its base URL."""
    port = free_port()
    cmd = [sys.executable, str(SCRIPT), "--port", str(port), "--delay", "0.2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until_listening(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert out == b""  # nothing noisy on stdout


def test_script_form(script_stub: str) -> None:
    with httpx.Client(base_url=script_stub, timeout=5) as client:
        started = time.monotonic()
        reply = client.post("/v1/chat/completions", json=chat("hello [[tag:T1]]", "some/model"), headers=AUTH)
        assert time.monotonic() - started >= 0.2  # the --delay applies
        assert reply.status_code == 200
        data = reply.json()
        assert data["object"] == "chat.completion" and data["model"] == "some/model"
        assert data["choices"][0]["message"] == {"role": "assistant", "content": "summary:T1"}
        assert data["usage"]["total_tokens"] == data["usage"]["prompt_tokens"] + data["usage"]["completion_tokens"]
        assert client.post("/v1/chat/completions", json=chat("x"), headers={}).status_code == 401

        calls = client.get("/_calls").json()
        assert [(c["content"], c["status"]) for c in calls] == [("hello [[tag:T1]]", 200), ("x", 401)]
        assert all(abs(c["at"] - time.time()) < 10 for c in calls)

        assert client.post("/_reset").status_code == 200
        assert client.get("/_calls").json() == []
        assert client.get("/nowhere").status_code == 404


def test_counters_reset_with_calls() -> None:
    with StubLLM() as stub, httpx.Client(base_url=stub.url, headers=AUTH) as client:
        assert client.post("/chat/completions", json=chat("[[fail:1]]")).status_code == 500
        assert client.post("/chat/completions", json=chat("[[fail:1]]")).status_code == 200
        stub.reset()
        assert stub.calls() == []
        assert client.post("/chat/completions", json=chat("[[fail:1]]")).status_code == 500


def test_delayed_call_is_recorded_on_arrival() -> None:
    with StubLLM() as stub, httpx.Client(base_url=stub.url, headers=AUTH, timeout=0.2) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.post("/chat/completions", json=chat("[[delay:30]]"))
        assert [c["status"] for c in stub.calls()] == [200]
    # stop() returned without waiting for the 30 s sleep


def test_fault_share_retry_after_and_end() -> None:
    with StubLLM() as stub, httpx.Client(base_url=stub.url, headers=AUTH) as client:
        stub.state.set_fault(429, share=0.5, retry_after=2)
        replies = [client.post("/chat/completions", json=chat(f"[[tag:{i}]]")) for i in range(200)]
        limited = [r for r in replies if r.status_code == 429]
        assert 60 < len(limited) < 140, "about half the calls"
        assert {r.headers["retry-after"] for r in limited} == {"2"}
        assert {r.status_code for r in replies} == {200, 429}
        assert {c["retry_after"] for c in stub.calls() if c["status"] == 429} == {2.0}

        stub.state.set_fault(500, seconds=0.3)
        assert client.post("/chat/completions", json=chat("x")).status_code == 500
        time.sleep(0.35)
        assert client.post("/chat/completions", json=chat("x")).status_code == 200, "the fault ended by itself"


def test_fault_control_route_and_delay_range(script_stub: str) -> None:
    with httpx.Client(base_url=script_stub, headers=AUTH, timeout=5) as client:
        assert client.post("/_fault", json={"status": 503}).status_code == 200
        assert client.post("/v1/chat/completions", json=chat("x")).status_code == 503
        assert client.delete("/_fault").status_code == 200
        assert client.post("/v1/chat/completions", json=chat("x")).status_code == 200
        assert client.post("/_fault", json={"share": 1}).status_code == 400, "status is required"
    with StubLLM(delay=0.05, max_delay=0.15) as stub, httpx.Client(base_url=stub.url, headers=AUTH) as client:
        took = []
        for _ in range(5):
            started = time.monotonic()
            client.post("/chat/completions", json=chat("x"))
            took.append(time.monotonic() - started)
        assert all(0.05 <= t < 0.5 for t in took)


async def raw_post(port: int, content: str) -> int:
    """One HTTP/1.1 POST on its own connection, in plain asyncio: measures the stub, not a client pool."""
    payload = json.dumps(chat(content)).encode()
    head = "POST /v1/chat/completions HTTP/1.1\r\nHost: stub\r\nAuthorization: Bearer k\r\n"
    head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode() + payload)
    answer = await reader.read()
    writer.close()
    return int(answer.split(b" ", 2)[1])


def test_300_concurrent_delayed_calls() -> None:
    async def burst(port: int) -> list[int]:
        return await asyncio.gather(*(raw_post(port, f"[[tag:{i}]]") for i in range(300)))

    with StubLLM(delay=0.5) as stub:
        started = time.monotonic()
        # A thread of its own: a test run before this one (Playwright's sync API) may have left an
        # event loop running in the main thread, where asyncio.run refuses to start.
        with ThreadPoolExecutor(1) as pool:
            statuses = pool.submit(asyncio.run, burst(stub.port)).result()
        elapsed = time.monotonic() - started
        assert statuses == [200] * 300 and len(stub.calls()) == 300
    assert elapsed < 3.0  # served concurrently (about 0.7 s): one after another would take 150 s


def test_directives_and_decide() -> None:
    assert directives("a [[tag:x y]] b [[400]] [[delay:1.5]]") == {"tag": "x y", "400": "", "delay": "1.5"}
    status, headers, _ = decide({"429": "9"}, 1, "m", "c")
    assert status == 429 and headers["retry-after"] == "9"
    assert decide({"429": "9"}, 2, "m", "c")[0] == 200
    assert decide({"status": "418"}, 5, "m", "c")[0] == 418
    assert decide({"badjson": ""}, 1, "m", "c")[2] == b"not json"


def test_openrouter_extras() -> None:
    """metadata.raw on errors, per-model statuses, moderation, and the key endpoint."""
    raw = decide(directives("[[status:502]][[raw:upstream said no]]"), 1, "m", "")
    assert json.loads(raw[2])["error"]["metadata"] == {"raw": "upstream said no", "provider_name": "StubUpstream"}
    scripted = directives("[[models:a/b=503, c=404]]")
    assert [decide(scripted, 1, m, "")[0] for m in ("a/b", "c", "other")] == [503, 404, 200]
    moderated = decide(directives("[[moderated]]"), 1, "m", "")
    assert moderated[0] == 403 and json.loads(moderated[2])["error"]["metadata"]["reasons"]
    with StubLLM() as stub, httpx.Client(base_url=stub.url, timeout=5) as client:
        assert client.get("/key").status_code == 401
        assert client.get("/key", headers=AUTH).json()["data"]["limit_remaining"] == 8.75
        stub.state.key_status = 402
        assert client.get("/key", headers=AUTH).status_code == 402
        assert stub.state.key_calls == 3
        client.post("/chat/completions", json=chat("x"), headers={**AUTH, "X-Title": "T"})
        assert stub.calls()[0]["headers"]["x-title"] == "T" and "authorization" not in stub.calls()[0]["headers"]
        stub.reset()
        assert (stub.state.key_status, stub.state.key_calls) == (200, 0)


def test_scripted_answers_and_the_recorded_request() -> None:
    """[[answer]] (JSON too), [[answers]] by call of the conversation, [[echo]] of the <text>
    tags, [[finish]]; each call's whole body is recorded, also by `GET /_calls`."""
    assert directives('[[answer:{"tags": ["a", "b"]}]] [[tag:x]]') == {"answer": '{"tags": ["a", "b"]}', "tag": "x"}
    assert directives("[[answer:[1, 2]]]") == {"answer": "[1, 2]"}, "a value may end in ]"
    with StubLLM() as stub, httpx.Client(base_url=stub.url, headers=AUTH) as client:

        def answer(body: dict[str, object]) -> tuple[str, str]:
            choice = client.post("/chat/completions", json=body).json()["choices"][0]
            return choice["message"]["content"], choice["finish_reason"]

        assert answer(chat('[[answer:{"a": [1]}]] [[finish:length]]')) == ('{"a": [1]}', "length")
        scripted = chat("[[answers:first||second]] q")
        assert [answer(scripted)[0] for _ in range(3)] == ["first", "second", "second"]
        assert answer(chat("Say it <text>no</text>.\n<text>\n  bonjour [[echo]]\n</text>"))[0] == "BONJOUR [[ECHO]]"
        body = {**chat("[[answer:x]]", "some/model"), "temperature": 0.5, "response_format": {"type": "json_object"}}
        client.post("/chat/completions", json=body)
        assert stub.calls()[-1]["request"] == body
        assert httpx.get(f"http://127.0.0.1:{stub.port}/_calls").json()[-1]["request"] == body


def test_a_growing_conversation_keeps_its_first_messages_directives_and_count() -> None:
    """Extract's retry: the task's text (and its directives) stay in the first user message while
    an assistant and a user message are added; its calls count as one conversation."""
    first = {"role": "user", "content": "[[answers:not json||{}]] [[fail:1]] extract this"}
    with StubLLM() as stub, httpx.Client(base_url=stub.url, headers=AUTH) as client:
        messages = [{"role": "system", "content": "sys"}, first]
        assert client.post("/chat/completions", json={"model": "m", "messages": messages}).status_code == 500
        reply = client.post("/chat/completions", json={"model": "m", "messages": messages}).json()
        assert reply["choices"][0]["message"]["content"] == "{}", "the second call of the conversation"
        messages += [{"role": "assistant", "content": "{}"}, {"role": "user", "content": "again [[tag:later]]"}]
        reply = client.post("/chat/completions", json={"model": "m", "messages": messages}).json()
        assert reply["choices"][0]["message"]["content"] == "{}", "[[answers]] still applies; [[tag]] is added"
        assert [c["content"] for c in stub.calls()][-1] == "again [[tag:later]]", "content: the last user message"
