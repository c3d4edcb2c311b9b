"""The README's complete example is executed, so the documentation cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_the_readme_has_its_examples() -> None:
    assert len(_blocks()) >= 2, "the README must contain the complete example and the time example"


@pytest.mark.parametrize("index", range(len(_blocks())))
def test_every_readme_example_runs(index: int) -> None:
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(_blocks()[index], str(README), "exec"), namespace)  # noqa: S102 - our own README
    assert namespace["done"] is not None
