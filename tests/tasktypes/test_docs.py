"""docs/TASK_TYPES.md shows the toy type's module whole: the code a reader copies is the code the
suite runs through the real stack (tests/integration/test_task_types.py)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_complete_example_is_the_module_the_suite_runs() -> None:
    doc = (ROOT / "docs" / "TASK_TYPES.md").read_text(encoding="utf-8")
    quoted = re.search(r"<!-- the module: tests/toy_types/reverse.py -->\n```python\n(.*?)```", doc, re.S)
    assert quoted is not None, "the example's code block is marked with the module it quotes"
    assert quoted.group(1) == (ROOT / "tests" / "toy_types" / "reverse.py").read_text(encoding="utf-8")
