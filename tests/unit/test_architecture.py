"""The import arrows of the project, checked for every module: core ← runtime ← entry points.

* ``orchestrator`` (the core) imports only itself: no Celery, no Redis, no kombu, no lock
  library, and none of ``tasks``, ``config``, ``examples``, ``cli``, ``bench``;
* ``config`` is a leaf: it imports none of the project's other packages;
* ``examples`` (user code) imports only the core;
* ``tasks`` (the runtime) imports the core and ``config``, never an entry point (``cli``,
  ``bench``) or the examples;
* ``cli`` and ``bench`` sit on top and may import anything (but the tests).

Imports are read from the source (every ``import``, top level or inside a function), so a lazy
import cannot hide an arrow pointing the wrong way. The runtime's own structure is pinned too:
no module swaps its class, and no module keeps a dict keyed by ``id(...)``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PACKAGES = ("orchestrator", "config", "tasks", "examples", "cli", "bench")

#: Which project packages each package may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "orchestrator": set(),
    "config": set(),
    "examples": {"orchestrator"},
    "tasks": {"orchestrator", "config"},
    "cli": {"orchestrator", "config", "tasks", "examples"},
    "bench": {"orchestrator", "config", "tasks", "examples", "cli"},
}

#: Third-party packages the core must never import.
CORE_FORBIDDEN = {"celery", "kombu", "redis", "redis_lock", "flower"}


def _modules() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def _imported(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports (absolute imports only)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.relative_to(ROOT)}: relative import; use absolute imports"
            names.add((node.module or "").split(".")[0])
    return names


def test_every_package_has_modules() -> None:
    found = {path.relative_to(ROOT).parts[0] for path in _modules()}
    assert found == set(PACKAGES)


@pytest.mark.parametrize("path", _modules(), ids=lambda path: str(path.relative_to(ROOT)))
def test_imports_point_one_way(path: Path) -> None:
    package = path.relative_to(ROOT).parts[0]
    imported = _imported(path)
    wrong = sorted((imported & (set(PACKAGES) | {"tests"})) - ALLOWED[package] - {package})
    assert not wrong, f"{path.relative_to(ROOT)} ({package}) must not import {wrong}"
    if package == "orchestrator":
        third_party = sorted(imported & CORE_FORBIDDEN)
        assert not third_party, f"{path.relative_to(ROOT)}: the core must not import {third_party}"


@pytest.mark.parametrize("path", _modules(), ids=lambda path: str(path.relative_to(ROOT)))
def test_no_module_class_swap_and_no_per_object_global_tables(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                assert not (isinstance(target, ast.Attribute) and target.attr == "__class__"), (
                    f"{path.relative_to(ROOT)}:{node.lineno} replaces a class"
                )
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Call | ast.Tuple):
            calls = [node.slice] if isinstance(node.slice, ast.Call) else node.slice.elts
            for call in calls:
                is_id = isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "id"
                assert not is_id, f"{path.relative_to(ROOT)}:{node.lineno} keys a table by id(...)"


def test_importing_the_core_loads_no_celery_or_redis() -> None:
    code = (
        "import sys, orchestrator, orchestrator.broker, orchestrator.orchestrator;"
        "print(sorted(m for m in ('celery', 'kombu', 'redis', 'redis_lock') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_importing_the_runtime_reads_no_settings_and_connects_nowhere() -> None:
    # An invalid ORCH_* variable would make Settings() raise: importing must not read them.
    code = "import tasks, tasks.store.keys, tasks.runtime; print(type(tasks.app).__name__, tasks.app.main)"
    env = {"PATH": "/usr/bin:/bin", "ORCH_BROKER_URL": "not-a-url", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["Celery", "arvo-orchestrator"]
