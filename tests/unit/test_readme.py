"""The README's complete example is executed, so the documentation cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_user_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    assert blocks, "the README must contain a python example"
    example = max(blocks, key=len)
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(example, str(README), "exec"), namespace)  # noqa: S102 - our own README
    assert namespace["done"] is not None
