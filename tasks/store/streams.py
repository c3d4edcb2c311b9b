"""Redis streams at the edges of a deployment: the dead-letter store and the external outbox.

* **Dead letters**: an event (or undecodable message) that can never succeed is appended to one
  stream with the reason, the error and the time, so nothing bad is ever dropped silently and an
  operator can inspect or replay it.
* **External outbox**: events addressed to a destination that has no handler in this
  deployment (the client that started a workflow, a domain such as human review) are appended to
  a stream per destination, where clients read them (:mod:`tasks.client`).

Stream names come from :mod:`tasks.store.keys`.

Both streams are capped (``MAXLEN ~``) so that a long-running deployment keeps a bounded history.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from orchestrator.event import ArvoEvent, decode_event
from tasks.store import keys
from tasks.store.codec import pack, unpack


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-lettered message, as read back from the stream."""

    id: str
    reason: str
    error: str
    payload: Any
    at: float
    task_id: str | None
    replays: int = 0


#: Seconds a replay's count waits for the replayed event to fail again (then it is forgotten).
REPLAY_MARK_S = 86400


class DeadLetterStore:
    """Store of messages that cannot be processed, with why; read, replayed and purged by operators."""

    def __init__(self, client: redis.Redis, maxlen: int, stream: str = keys.DEAD_LETTER_STREAM) -> None:
        self._client = client
        self.stream = stream
        self._maxlen = maxlen

    def add(self, *, reason: str, error: str, payload: Any, task_id: str | None = None) -> str:
        """Store ``payload`` (an event JSON, or the raw message) with the reason and error text.

        An event that failed again after a replay (:meth:`mark_replay`) carries its replay count.
        """
        fields: dict[Any, Any] = {
            "reason": reason,
            "error": error[:4000],
            "payload": pack(payload),
            "at": repr(time.time()),
            "task_id": task_id or "",
        }
        event_id = payload.get("id") if isinstance(payload, dict) else None
        if isinstance(event_id, str) and event_id:
            replays = self._client.getdel(keys.replays(event_id))
            if replays is not None:
                fields["replays"] = replays
        entry_id = self._client.xadd(self.stream, fields, maxlen=self._maxlen, approximate=True)
        return _text(entry_id)

    def read(self, count: int = 1000) -> list[DeadLetter]:
        """The oldest ``count`` dead letters."""
        entries: list[tuple[Any, Mapping[Any, Any]]] = self._client.xrange(self.stream, count=count) or []  # type: ignore[assignment]
        return [_dead_letter(entry_id, fields) for entry_id, fields in entries]

    def get(self, entry_id: str) -> DeadLetter | None:
        """The dead letter ``entry_id``, None when it is not (or no longer) stored."""
        if not _is_stream_id(entry_id):
            return None
        entries: list[tuple[Any, Mapping[Any, Any]]] = self._client.xrange(self.stream, entry_id, entry_id) or []  # type: ignore[assignment]
        return _dead_letter(*entries[0]) if entries else None

    def mark_replay(self, event_id: str, replays: int) -> None:
        """Remember that ``event_id`` is replayed for the ``replays``-th time (for its next failure)."""
        self._client.set(keys.replays(event_id), replays, ex=REPLAY_MARK_S)

    def delete(self, entry_ids: list[str]) -> int:
        """Remove the given entries; how many were there."""
        valid = [entry_id for entry_id in entry_ids if _is_stream_id(entry_id)]
        return int(self._client.xdel(self.stream, *valid)) if valid else 0

    def purge(self) -> int:
        """Remove every entry; how many there were."""
        pipe = self._client.pipeline(transaction=True)
        pipe.xlen(self.stream)
        pipe.delete(self.stream)
        count, _ = pipe.execute()
        return int(count)


def _entry(event: ArvoEvent | Mapping[str, Any]) -> dict[str, bytes | str]:
    """The fields of an outbox stream entry: the packed event JSON, its subject and type."""
    payload = event.to_json() if isinstance(event, ArvoEvent) else dict(event)
    return {"event": pack(payload), "subject": str(payload.get("subject")), "type": str(payload.get("type"))}


def _is_stream_id(entry_id: str) -> bool:
    """``<ms>-<seq>``: anything else would be a Redis syntax error, not a missing entry."""
    ms, sep, seq = entry_id.partition("-") if isinstance(entry_id, str) else ("", "", "")
    return bool(sep) and ms.isdigit() and seq.isdigit()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _dead_letter(entry_id: Any, fields: Mapping[Any, Any]) -> DeadLetter:
    decoded = {_text(k): v for k, v in fields.items()}
    return DeadLetter(
        id=_text(entry_id),
        reason=_text(decoded.get("reason", "")),
        error=_text(decoded.get("error", "")),
        payload=unpack(decoded["payload"]) if "payload" in decoded else None,
        at=float(_text(decoded.get("at", "0"))),
        task_id=_text(decoded.get("task_id", "")) or None,
        replays=int(_text(decoded.get("replays", "0")) or 0),
    )


class ExternalOutbox:
    """One stream per destination outside the deployment; entries are msgpack events."""

    def __init__(self, client: redis.Redis, maxlen: int) -> None:
        self._client = client
        self._maxlen = maxlen

    @staticmethod
    def stream(destination: str) -> str:
        """The stream of ``destination``."""
        return keys.outbox_stream(destination)

    def add(self, destination: str, event: ArvoEvent | Mapping[str, Any], pipe: Any | None = None) -> None:
        """Append ``event`` (or its JSON) to the stream of ``destination`` (optionally on a pipeline)."""
        target = pipe if pipe is not None else self._client
        fields: dict[Any, Any] = _entry(event)
        target.xadd(self.stream(destination), fields, maxlen=self._maxlen, approximate=True)

    def xadd_command(self, destination: str, event: ArvoEvent | Mapping[str, Any]) -> list[bytes | str]:
        """The ``XADD`` that :meth:`add` sends, as a command to run elsewhere (a fused step's script).

        ``XADD <stream> MAXLEN ~ <maxlen> * <field> <value> ...``: what redis-py builds for
        ``xadd(..., maxlen=, approximate=True)``.
        """
        command: list[bytes | str] = ["XADD", self.stream(destination), "MAXLEN", "~", str(self._maxlen), "*"]
        for field, value in _entry(event).items():
            command += [field, value]
        return command

    def last_id(self, destination: str) -> str:
        """The id of the newest entry, to read only what arrives after it ("0-0" if empty)."""
        newest = self._client.xrevrange(self.stream(destination), count=1)
        return _text(newest[0][0]) if newest else "0-0"

    def read_after(self, destination: str, after: str, block_ms: int) -> list[tuple[str, ArvoEvent]]:
        """Entries after ``after``, waiting up to ``block_ms`` for the first one."""
        answer: list[Any] = self._client.xread({self.stream(destination): after}, block=block_ms, count=100)  # type: ignore[assignment]
        found: list[tuple[str, ArvoEvent]] = []
        for _stream, entries in answer or ():
            for entry_id, fields in entries:
                raw = fields.get(b"event", fields.get("event"))
                found.append((_text(entry_id), decode_event(unpack(raw))))
        return found
