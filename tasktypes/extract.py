"""`extract`: a JSON object, valid against the task's JSON Schema, of the data a text holds.

The provider is asked for JSON through `response_format` (EXTRACT_RESPONSE_FORMAT: the schema
itself, JSON mode, or the prompt alone), and the schema is in the prompt in every case. An answer
that is not a JSON object valid against the schema is shown its error and asked again, up to
EXTRACT_ATTEMPTS answers; then the task ends FAILED with that error (`invalid_output`). Input
longer than one call can take is refused at submit (413): the data of a text cut in pieces could
not be merged into one faithful object. There is no offline extractor (422 provider_required)."""

from __future__ import annotations

import json
import re
from typing import Any

from jsonschema import Draft202012Validator, SchemaError
from jsonschema.exceptions import best_match
from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.errors import LLMInvalidOutput
from core.settings import Settings
from tasktypes import register
from tasktypes.base import (
    Answer,
    CompletionRequest,
    Content,
    Job,
    Refusal,
    TaskType,
    Usage,
    fill,
    no_lone_surrogates,
    prompt,
)

SYSTEM = "You extract structured data from text, faithfully. You answer with one JSON object only."
# A fenced answer (```json … ```) is common even when only JSON was asked for: its inside is taken.
_FENCE = re.compile(r"^\s*```(?:json)?\s*\n?(.*?)\n?\s*```\s*$", re.S | re.I)
ERROR_CHARS = 300  # of a validation error, kept in the retry prompt and in last_error
# JSON's own names for what an answer was instead of an object (the model reads them when asked again).
_JSON_NAMES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


class ExtractCreate(BaseModel):
    """Body of `POST /api/v1/tasks/extract/`."""

    model_config = ConfigDict(populate_by_name=True)

    content: Content
    json_schema: dict[str, Any] = Field(
        alias="schema",
        description="A JSON Schema (draft 2020-12) of an object: the result is a JSON object valid against it. "
        "At most EXTRACT_SCHEMA_MAX_CHARS characters of JSON.",
        examples=[{"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}],
    )

    @field_validator("json_schema")
    @classmethod
    def _an_object_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        no_lone_surrogates(schema)
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as e:
            raise ValueError(f"not a valid JSON Schema: {e.message}") from e
        if schema.get("type") != "object":
            raise ValueError('must describe a JSON object: {"type": "object", "properties": {...}}')
        return schema


def response_format(settings: Settings, schema: dict[str, Any]) -> dict[str, Any] | None:
    if settings.extract_response_format == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": "extraction", "schema": schema}}
    if settings.extract_response_format == "json_object":
        return {"type": "json_object"}
    return None


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def invalid(answer: str, validator: Draft202012Validator) -> tuple[Any, str]:
    """(the parsed answer, "") when it is a JSON object valid against the schema, else (None, why).
    NaN and Infinity are refused: Python's parser takes them and a number schema accepts them, but
    the stored result would not be JSON (and the API would show them as null)."""
    fenced = _FENCE.match(answer)
    try:
        data = json.loads(fenced.group(1) if fenced else answer, parse_constant=_not_json)
    except ValueError as e:
        return None, f"not JSON ({e})"
    if not isinstance(data, dict):
        return None, f"a JSON {_JSON_NAMES.get(type(data), 'value')}, not an object"
    error = best_match(validator.iter_errors(data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return None, f"at {where}: {error.message}"[:ERROR_CHARS]
    return data, ""


class Extract(TaskType):
    name = "extract"
    description = "A JSON object, valid against the JSON Schema you send, of the data the text holds."
    Create = ExtractCreate
    result_format = "json"
    long_input = "refuse"

    def refusals(self, body: BaseModel, settings: Settings) -> list[Refusal]:
        assert isinstance(body, ExtractCreate)
        size = len(json.dumps(body.json_schema, separators=(",", ":")))
        if size > settings.extract_schema_max_chars:
            limit = settings.extract_schema_max_chars
            return [Refusal("schema", f"the schema has {size} characters of JSON; EXTRACT_SCHEMA_MAX_CHARS is {limit}")]
        return []

    def run(self, job: Job) -> Answer:
        schema = job.input.json_schema
        validator = Draft202012Validator(schema)
        shown = json.dumps(schema, ensure_ascii=False, indent=1)
        user = fill(prompt("extract"), schema=shown, content=job.input.content)
        messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
        usage, why = Usage(), ""
        for n in range(job.settings.extract_attempts):
            if n:
                job.progress(0, f"answer {n} was not valid ({why}): asking again")
            done = job.complete(CompletionRequest(messages, response_format=response_format(job.settings, schema)))
            usage.add(done.usage)
            data, why = invalid(done.text, validator)
            if not why:
                return Answer(json.dumps(data, ensure_ascii=False), done.provider, done.model, usage.value())
            messages = [*messages, {"role": "assistant", "content": done.text},
                         {"role": "user", "content": fill(prompt("extract_again"), error=why)}]  # fmt: skip
        raise LLMInvalidOutput(f"no answer valid against the schema in {job.settings.extract_attempts} tries: {why}")


register(Extract())
