"""The registry's rules, and the promise that the queue machinery never names a type: no module
of core/, consumer/, api/, worker/ or utils/ spells a type's name, and tasktypes/ imports nothing
but core/ (so the API and the worker can both import it)."""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import pytest
from pydantic import BaseModel

import tasktypes
from core.settings import Settings
from tasktypes.base import Answer, Content, Job, TaskType

ROOT = Path(__file__).resolve().parents[2]
MACHINERY = ("core", "consumer", "api", "worker", "utils")


class _Create(BaseModel):
    content: Content


def _type(name: str) -> TaskType:
    class Named(TaskType):
        description = "test"
        Create = _Create

        def run(self, job: Job) -> Answer:
            return Answer(job.input.content, "test")

    Named.name = name
    return Named()


@pytest.mark.parametrize("name", ["", "Upper", "with space", "1digit", "statistics", "requeue-orphaned", "x" * 41])
def test_a_name_that_cannot_be_a_route_segment_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="task type name"):
        tasktypes.register(_type(name))


def test_a_name_taken_by_another_type_is_refused() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        tasktypes.register(_type("summarize"))


def test_load_imports_the_built_ins_and_task_type_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    # The registry is per process: the toy type must not outlive this test (the API tests check
    # the exact routes of the built-in types).
    monkeypatch.setattr(tasktypes, "_types", dict(tasktypes._types))
    names = [t.name for t in tasktypes.load(Settings(task_type_modules=" tests.toy_types.reverse , "))]
    assert {"summarize", "translate", "extract", "chat", "reverse"} <= set(names)
    assert names == sorted(names)
    with pytest.raises(ModuleNotFoundError):
        tasktypes.load(Settings(task_type_modules="tests.toy_types.nonesuch"))


def test_every_built_in_type_round_trips_its_input() -> None:
    """What a submit stores (content + params) gives the worker the same input back."""
    samples = {
        "summarize": {"content": "Text."},
        "translate": {"content": "Texte.", "target_language": "English", "source_language": "French"},
        "extract": {"content": "Ada.", "schema": {"type": "object", "properties": {"n": {"type": "string"}}}},
        "chat": {"messages": [{"role": "user", "content": "Hi", "name": "ada"}], "temperature": 0.5},
    }
    for name, body in samples.items():
        task_type = tasktypes.get(name)
        assert task_type is not None
        model = task_type.Create.model_validate(body)
        again = task_type.input_of(task_type.content_of(model), task_type.params_of(model))
        assert again == model, name


def _strings(path: Path) -> list[str]:
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
    return [t.string.strip("\"'").lower() for t in tokens if t.type == tokenize.STRING]


def test_the_queue_machinery_never_names_a_type() -> None:
    names = {t.name for t in tasktypes.load(Settings())}
    offenders = []
    for top in MACHINERY:
        for path in (ROOT / top).rglob("*.py"):
            offenders += [f"{path.relative_to(ROOT)}: {s}" for s in _strings(path) if s in names]
        for path in (ROOT / top).rglob("*.lua"):
            text = path.read_text(encoding="utf-8")
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if f"'{n}'" in text]
    assert offenders == []


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


def test_task_types_import_only_core_and_core_imports_no_type() -> None:
    for path in (ROOT / "tasktypes").rglob("*.py"):
        assert not _imports(path) & {"api", "worker", "consumer", "utils", "httpx", "celery", "redis"}, path
    for path in (ROOT / "core").rglob("*.py"):
        assert "tasktypes" not in _imports(path), path
