"""`chat`: what the settings refuse of a request (CHAT_ALLOWED_MODELS, CHAT_MAX_TOKENS), the request
passed on as given, a named model asked alone (no fallback), and the result with its usage.
Through the runner, against the stand-in."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from core.settings import Settings
from core.states import State
from tasktypes.base import Refusal
from tasktypes.chat import Chat, ChatCreate
from tests.stub_llm import StubLLM
from tests.tasktypes.conftest import MAIN_MODEL, attempt, bodies, submit
from worker.runner import Runner

BACKUP = "backup/model"
CHAT = Chat()


def chat_body(*texts: str, **fields: Any) -> dict[str, Any]:
    """A system message, then user messages (with an assistant's reply between two of them)."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": "Be brief."}]
    for n, text in enumerate(texts):
        messages += [{"role": "assistant", "content": f"reply {n}"}] if n else []
        messages.append({"role": "user", "content": text})
    return {"messages": messages, **fields}


# --- refusals and the stored content (pure) ----------------------------------------------------
@pytest.mark.parametrize(
    ("setting", "fields", "refused"),
    [
        ({}, {"model": MAIN_MODEL}, []),
        ({}, {"model": BACKUP}, []),
        ({}, {"model": "someone/expensive"}, ["model"]),
        ({"chat_allowed_models": "someone/expensive, other/one"}, {"model": "someone/expensive"}, []),
        ({"chat_allowed_models": "other/one"}, {"model": MAIN_MODEL}, ["model"]),
        ({}, {"max_tokens": 4096}, []),
        ({}, {"max_tokens": 4097}, ["max_tokens"]),
        ({"chat_max_tokens": 100}, {"model": "x/y", "max_tokens": 101}, ["model", "max_tokens"]),
    ],
    ids=["main", "fallback", "other", "allowed-list", "main-not-in-list", "at-cap", "over-cap", "both"],
)
def test_refusals_name_the_field(setting: dict[str, Any], fields: dict[str, Any], refused: list[str]) -> None:
    """By default a chat may name the configured model or a fallback; CHAT_ALLOWED_MODELS replaces
    that list."""
    settings = Settings(openrouter_model=MAIN_MODEL, openrouter_fallback_models=BACKUP, **setting)
    refusals = CHAT.refusals(ChatCreate.model_validate(chat_body("Hi?", **fields)), settings)
    assert [r.field for r in refusals] == refused
    assert all(isinstance(r, Refusal) and r.message for r in refusals)
    if "model" in refused:
        assert "CHAT_ALLOWED_MODELS" in refusals[0].message


def test_the_content_shown_is_the_last_user_message_and_the_size_counts_every_message() -> None:
    parts = [{"type": "text", "text": "Look at"}, {"type": "image_url", "image_url": {"url": "http://x/y.png"}},
             {"type": "text", "text": "this."}]  # fmt: skip
    body = ChatCreate.model_validate(chat_body("First question?", "Second question?"))
    assert CHAT.content_of(body) == "Second question?"
    assert CHAT.size_of(body) == sum(len(t) for t in ("Be brief.", "First question?", "reply 1", "Second question?"))
    with_parts = ChatCreate.model_validate({"messages": [{"role": "user", "content": parts}]})
    assert CHAT.content_of(with_parts) == "Look at this.", "the text parts, the image left out"
    only_system = ChatCreate.model_validate({"messages": [{"role": "system", "content": "Say hi."}]})
    assert CHAT.content_of(only_system) == "Say hi."


@pytest.mark.parametrize("extra", [{"stream": True}, {"tools": []}, {"n": 2}])
def test_fields_this_service_does_not_pass_on_are_refused(extra: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ChatCreate.model_validate(chat_body("Hi?", **extra))


# --- through the runner ----------------------------------------------------------------------
@pytest.fixture
def with_backup(settings: Settings) -> Runner:
    """A worker whose configured model has a fallback."""
    return Runner(settings.model_copy(update={"openrouter_fallback_models": BACKUP}))


def test_the_request_is_passed_on_as_given(with_backup: Runner, stub: StubLLM) -> None:
    body = chat_body("Name three primes. [[tag:p]]", "And two more?", model=BACKUP, temperature=0, max_tokens=64,
                     response_format={"type": "json_object"})  # fmt: skip
    body["messages"][1]["name"] = "ada"  # a field the chat-completions API takes passes through
    task_id = submit(with_backup.store, "chat", body)

    assert attempt(with_backup, task_id) == "completed"

    assert bodies(stub) == [{"model": BACKUP, "messages": body["messages"], "max_tokens": 64, "temperature": 0,
                             "response_format": {"type": "json_object"}}]  # fmt: skip


def test_without_options_the_configured_model_and_max_tokens_are_sent(runner: Runner, stub: StubLLM) -> None:
    body = chat_body("Hi?")
    assert attempt(runner, submit(runner.store, "chat", body)) == "completed"
    assert bodies(stub) == [{"model": MAIN_MODEL, "messages": body["messages"],
                             "max_tokens": runner.settings.openrouter_max_tokens}]  # fmt: skip


def test_the_result_is_the_answer_with_its_finish_reason_usage_and_model(runner: Runner, stub: StubLLM) -> None:
    task_id = submit(runner.store, "chat", chat_body("Count to three. [[answer:One, two, three.]] [[finish:length]]"))

    assert attempt(runner, task_id) == "completed"

    task = runner.store.get(task_id)
    prompt_tokens = len(stub.calls()[0]["content"].split())  # the stand-in counts words
    expected = {"prompt_tokens": prompt_tokens, "completion_tokens": 3, "total_tokens": prompt_tokens + 3}
    assert json.loads(task.result) == {"content": "One, two, three.", "finish_reason": "length", "usage": expected,
                                       "model": MAIN_MODEL}  # fmt: skip
    assert (task.prompt_tokens, task.completion_tokens, task.total_tokens) == tuple(expected.values())
    assert (task.provider, task.model) == ("openrouter", MAIN_MODEL)


def test_a_named_model_is_asked_alone_and_an_unnamed_one_falls_back(with_backup: Runner, stub: StubLLM) -> None:
    """A chat that names its model wants that model's answer: when it fails, the attempt fails
    (and is retried later) rather than another model answering."""
    named = submit(with_backup.store, "chat", chat_body(f"[[models:{BACKUP}=503]] named", model=BACKUP))
    assert attempt(with_backup, named) == "scheduled"
    assert [c["model"] for c in stub.calls()] == [BACKUP]
    assert with_backup.store.get(named).error_type == "transient"

    stub.reset()
    unnamed = submit(with_backup.store, "chat", chat_body(f"[[models:{MAIN_MODEL}=503]] unnamed"))
    assert attempt(with_backup, unnamed) == "completed"
    assert [c["model"] for c in stub.calls()] == [MAIN_MODEL, BACKUP]
    done = with_backup.store.get(unnamed)
    assert (done.state, done.model, json.loads(done.result)["model"]) == (State.COMPLETED, BACKUP, BACKUP)
