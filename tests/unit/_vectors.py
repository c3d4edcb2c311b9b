"""Load the recorded Arvo wire vectors (``tests/vectors/arvo-wire.json``).

The vectors were recorded from the TypeScript original (see ``tests/vectors/README.md``). A
missing file is an error, never a skip: these tests are the proof of wire compatibility.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

#: ``<repo>/tests/vectors/arvo-wire.json``; this file is ``<repo>/tests/unit/_vectors.py``.
VECTORS_PATH = Path(__file__).resolve().parents[1] / "vectors" / "arvo-wire.json"


@functools.cache
def _load() -> dict[str, Any]:
    if not VECTORS_PATH.is_file():
        raise FileNotFoundError(f"Arvo wire vectors not found at {VECTORS_PATH}; they are required")
    with VECTORS_PATH.open(encoding="utf-8") as handle:
        loaded: dict[str, Any] = json.load(handle)
    return loaded


def load_vectors() -> dict[str, Any]:
    """The parsed vectors file (cached; treat it as read-only)."""
    return _load()
