"""The one encoding of values the runtime stores in Redis: msgpack of JSON-typed data."""

from __future__ import annotations

from typing import Any

import msgpack


def pack(value: Any) -> bytes:
    """msgpack a JSON-typed value (records, outboxes, dead letters, outbox stream entries)."""
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def unpack(data: bytes) -> Any:
    """Inverse of :func:`pack`; every call returns fresh, unshared objects."""
    # strict_map_key=False: a record with a non-str key must not become unreadable.
    return msgpack.unpackb(data, raw=False, strict_map_key=False)
