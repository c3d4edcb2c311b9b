"""The Lua scripts the runtime runs in Redis, one file each, registered once per client.

Each ``.lua`` file documents its keys (spelled in :mod:`tasks.store.keys`) and arguments in its
header. :func:`load` reads a script's source; redis-py's ``register_script`` then sends it once
(``EVALSHA``, reloading it after a Redis restart), never as raw ``EVAL`` on every call.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path


@cache
def load(name: str) -> str:
    """The source of ``<name>.lua`` beside this module (package data in every install mode)."""
    return (Path(__file__).parent / f"{name}.lua").read_text(encoding="utf-8")
