"""`extract`: the request it sends (the schema in the prompt and, per EXTRACT_RESPONSE_FORMAT, in
`response_format`), an invalid answer shown its error and asked again within the attempt, and
FAILED `invalid_output` when no answer is valid. Through the runner, against the stand-in."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from core.settings import Settings
from core.states import State
from tasktypes import extract
from tasktypes.base import fill, prompt
from tasktypes.extract import ERROR_CHARS, invalid
from tests.stub_llm import StubLLM
from tests.tasktypes.conftest import MAIN_MODEL, attempt, bodies, submit
from worker.runner import Runner

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "tags": {"type": "array"}},
    "required": ["name"],
}
VALIDATOR = Draft202012Validator(SCHEMA)
ADA = {"name": "Ada", "age": 36, "tags": ["math"]}


# --- invalid() (pure) ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "answer",
    [
        '{"name": "Ada", "age": 36, "tags": ["math"]}',
        '```json\n{"name": "Ada", "age": 36, "tags": ["math"]}\n```',
        '```\n{"name": "Ada", "age": 36, "tags": ["math"]}\n```',
        '  ```JSON {"name": "Ada", "age": 36, "tags": ["math"]} ```  \n',
    ],
    ids=["plain", "json-fence", "bare-fence", "upper-case-fence-on-one-line"],
)
def test_a_valid_object_is_taken_with_or_without_a_code_fence(answer: str) -> None:
    assert invalid(answer, VALIDATOR) == (ADA, "")


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ('Here it is:\n```json\n{"name": "Ada"}\n```', "not JSON (Expecting value: line 1 column 1 (char 0))"),
        ("```json\n{\"name\": \"Ada\"\n```", "not JSON (Expecting ',' delimiter"),
        ('{"name": "Ada", "age": NaN}', "not JSON (NaN is not JSON)"),
        ('{"name": "Ada", "age": Infinity}', "not JSON (Infinity is not JSON)"),
        ('[{"name": "Ada"}]', "a JSON array, not an object"),
        ('"Ada"', "a JSON string, not an object"),
        ("null", "a JSON null, not an object"),
        ('{"age": 36}', "at (root): 'name' is a required property"),
        ('{"name": "Ada", "age": "36"}', "at age: '36' is not of type 'integer'"),
    ],
    ids=["prose-around-the-fence", "broken", "nan", "infinity", "array", "string", "null", "missing", "wrong-type"],
)
def test_an_invalid_answer_says_why(answer: str, why: str) -> None:
    data, said = invalid(answer, VALIDATOR)
    assert data is None and said.startswith(why)


def test_a_long_validation_error_is_cut_to_error_chars() -> None:
    many = {"type": "object", "properties": {"a": {"enum": [f"v{i:04}" for i in range(500)]}}}
    validator = Draft202012Validator(many)
    _, why = invalid('{"a": "nope"}', validator)
    assert why.startswith("at a: 'nope' is not one of") and len(why) == ERROR_CHARS


# --- through the runner ----------------------------------------------------------------------
def extract_body(content: str) -> dict[str, Any]:
    return {"content": content, "schema": SCHEMA}


def first_prompt(content: str) -> str:
    return fill(prompt("extract"), schema=json.dumps(SCHEMA, ensure_ascii=False, indent=1), content=content)


@pytest.mark.parametrize(
    ("setting", "response_format"),
    [
        ("json_schema", {"type": "json_schema", "json_schema": {"name": "extraction", "schema": SCHEMA}}),
        ("json_object", {"type": "json_object"}),
        ("prompt", None),
    ],
)
def test_the_request_carries_the_schema_as_extract_response_format_says(
    settings: Settings, stub: StubLLM, setting: str, response_format: dict[str, Any] | None
) -> None:
    runner = Runner(settings.model_copy(update={"extract_response_format": setting}))
    content = f"Ada Lovelace, 36, a mathematician. [[answer:{json.dumps(ADA)}]]"
    task_id = submit(runner.store, "extract", extract_body(content))

    assert attempt(runner, task_id) == "completed"

    assert json.loads(runner.store.get(task_id).result) == ADA
    messages = [{"role": "system", "content": extract.SYSTEM}, {"role": "user", "content": first_prompt(content)}]
    sent = {"model": MAIN_MODEL, "max_tokens": settings.openrouter_max_tokens, "messages": messages}
    if response_format is not None:
        sent["response_format"] = response_format
    assert bodies(stub) == [sent], "the schema is in the prompt whatever the setting; no temperature"


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("not json at all", "not JSON (Expecting value"),
        ('{"age": 36}', "at (root): 'name' is a required property"),
        ('{"name": "Ada", "age": NaN}', "not JSON (NaN is not JSON)"),
    ],
    ids=["not-json", "not-valid-against-the-schema", "nan"],
)
def test_an_invalid_answer_is_shown_its_error_and_asked_again(
    runner: Runner, stub: StubLLM, bad: str, why: str
) -> None:
    content = f"Ada, 36. [[answers:{bad}||{json.dumps(ADA)}]]"
    task_id = submit(runner.store, "extract", extract_body(content))

    assert attempt(runner, task_id) == "completed"

    task = runner.store.get(task_id)
    assert (task.state, task.retry_count, json.loads(task.result)) == (State.COMPLETED, 0, ADA)
    first, second = bodies(stub)
    assert second["messages"][:2] == first["messages"], "the same conversation, grown"
    assert second["messages"][2] == {"role": "assistant", "content": bad}
    again = second["messages"][3]
    assert again["role"] == "user" and again["content"].startswith(f"That answer is not valid: {why}")
    assert again["content"].endswith("Reply again with the corrected JSON object only.\n")
    assert second["response_format"] == first["response_format"]
    answers = (bad, json.dumps(ADA))
    words = sum(len(c["content"].split()) + len(a.split()) for c, a in zip(stub.calls(), answers, strict=True))
    assert task.total_tokens == words, "both answers' tokens are counted"


@pytest.mark.parametrize("tries", [1, 3])
def test_no_valid_answer_in_extract_attempts_fails_the_task_with_the_error(
    settings: Settings, stub: StubLLM, tries: int
) -> None:
    """Asking the same model again in a later attempt would not help: FAILED at once, no retry
    spent, with the last validation error."""
    runner = Runner(settings.model_copy(update={"extract_attempts": tries}))
    task_id = submit(runner.store, "extract", extract_body('Someone, 36. [[answer:{"age": 36}]]'))

    assert attempt(runner, task_id) == "failed"

    task = runner.store.get(task_id)
    assert (task.state, task.error_type, task.retry_count) == (State.FAILED, "invalid_output", 0)
    assert task.last_error == (f"no answer valid against the schema in {tries} tries: "
                               "at (root): 'name' is a required property")  # fmt: skip
    assert [len(b["messages"]) for b in bodies(stub)] == [2 + 2 * n for n in range(tries)]
