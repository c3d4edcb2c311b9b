"""Redis streams at the edges of a deployment: the dead-letter store and the external outbox.

* **Dead letters**: an event (or undecodable message) that can never succeed is appended to one
  stream with the reason, the error and the time, so nothing bad is ever dropped silently and an
  operator can inspect or replay it.
* **External outbox**: events addressed to a destination that has no handler in this
  deployment (the client that started a workflow, a domain such as human review) are appended to
  a stream per destination, where clients read them (:mod:`tasks.client`).

Stream names come from :mod:`tasks.store.keys`. Both are sharded like the state: a dead letter
goes to the stream of its event's (or message's) id's shard, an outbox event to the stream of
its subject's shard, so no single stream takes every write of a Redis Cluster. A dead letter's
id is ``<stream entry id>-<shard>``; reading merges the shards' streams by the time of each entry.

Both streams are capped (``MAXLEN ~``) so that a long-running deployment keeps a bounded history.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.event import ArvoEvent, decode_event
from tasks.store import keys
from tasks.store.codec import pack, unpack
from tasks.store.connections import StateRedis, key_space_for


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
    """Store of messages that cannot be processed, with why; read, replayed and purged by operators.

    Args:
        client: the state Redis (or cluster).
        maxlen: approximate cap of each shard's stream.
        key_space: the deployment's key layout; None: the default for ``client``.
    """

    def __init__(self, client: StateRedis, maxlen: int, key_space: keys.KeySpace | None = None) -> None:
        self._client = client
        self.keys = key_space if key_space is not None else key_space_for(client)
        self._maxlen = maxlen

    def add(self, *, reason: str, error: str, payload: Any, task_id: str | None = None) -> str:
        """Store ``payload`` (an event JSON, or the raw message) with the reason and error text.

        An event that failed again after a replay (:meth:`mark_replay`) carries its replay count.
        Returns the dead letter's id.
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
        spread_by = event_id if isinstance(event_id, str) and event_id else task_id
        shard = self.keys.shard_of(spread_by) if spread_by else random.randrange(self.keys.shards)
        entry_id = self._client.xadd(self.keys.dead_letter_stream(shard), fields, maxlen=self._maxlen, approximate=True)
        return f"{_text(entry_id)}-{shard}"

    def read(self, count: int = 1000) -> list[DeadLetter]:
        """The oldest ``count`` dead letters of every shard (merged by when they were added)."""
        pipe = self._client.pipeline(transaction=False)
        for stream in self.keys.dead_letter_streams():
            pipe.xrange(stream, count=count)
        letters = [
            (_stream_order(_text(entry_id)), _dead_letter(f"{_text(entry_id)}-{shard}", fields))
            for shard, entries in enumerate(pipe.execute())
            for entry_id, fields in entries or ()
        ]
        # By the time each letter was added, then by entry id: on a cluster the shards' entry
        # ids come from different servers' clocks, with a sequence number of their own.
        letters.sort(key=lambda pair: (pair[1].at, pair[0]))
        return [letter for _, letter in letters[:count]]

    def get(self, entry_id: str) -> DeadLetter | None:
        """The dead letter ``entry_id``, None when it is not (or no longer) stored."""
        found = self._parse(entry_id)
        if found is None:
            return None
        stream_id, shard = found
        entries: list[tuple[Any, Mapping[Any, Any]]] = (
            self._client.xrange(self.keys.dead_letter_stream(shard), stream_id, stream_id) or []  # type: ignore[assignment]
        )
        return _dead_letter(entry_id, entries[0][1]) if entries else None

    def mark_replay(self, event_id: str, replays: int) -> None:
        """Remember that ``event_id`` is replayed for the ``replays``-th time (for its next failure)."""
        self._client.set(keys.replays(event_id), replays, ex=REPLAY_MARK_S)

    def delete(self, entry_ids: list[str]) -> int:
        """Remove the given entries; how many were there."""
        by_shard: dict[int, list[str]] = {}
        for entry_id in entry_ids:
            found = self._parse(entry_id)
            if found is not None:
                by_shard.setdefault(found[1], []).append(found[0])
        if not by_shard:
            return 0
        pipe = self._client.pipeline(transaction=False)
        for shard, stream_ids in by_shard.items():
            pipe.xdel(self.keys.dead_letter_stream(shard), *stream_ids)
        return sum(int(deleted) for deleted in pipe.execute())

    def purge(self) -> int:
        """Remove every entry; how many there were (each shard's count and delete in one transaction)."""
        total = 0
        for stream in self.keys.dead_letter_streams():
            pipe = self._client.pipeline(transaction=True)
            pipe.xlen(stream)
            pipe.delete(stream)
            count, _ = pipe.execute()
            total += int(count)
        return total

    def _parse(self, entry_id: str) -> tuple[str, int] | None:
        """``(stream entry id, shard)`` of a dead letter id, None when it cannot be one."""
        if not isinstance(entry_id, str):
            return None
        stream_id, _, shard_text = entry_id.rpartition("-")
        if not _is_stream_id(stream_id) or not shard_text.isdigit() or int(shard_text) >= self.keys.shards:
            return None
        return stream_id, int(shard_text)


def _entry(event: ArvoEvent | Mapping[str, Any]) -> dict[str, bytes | str]:
    """The fields of an outbox stream entry: the packed event JSON, its subject and type."""
    payload = event.to_json() if isinstance(event, ArvoEvent) else dict(event)
    return {"event": pack(payload), "subject": str(payload.get("subject")), "type": str(payload.get("type"))}


def _is_stream_id(entry_id: str) -> bool:
    """``<ms>-<seq>``: anything else would be a Redis syntax error, not a missing entry."""
    ms, sep, seq = entry_id.partition("-") if isinstance(entry_id, str) else ("", "", "")
    return bool(sep) and ms.isdigit() and seq.isdigit()


def _stream_order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _dead_letter(letter_id: str, fields: Mapping[Any, Any]) -> DeadLetter:
    decoded = {_text(k): v for k, v in fields.items()}
    return DeadLetter(
        id=letter_id,
        reason=_text(decoded.get("reason", "")),
        error=_text(decoded.get("error", "")),
        payload=unpack(decoded["payload"]) if "payload" in decoded else None,
        at=float(_text(decoded.get("at", "0"))),
        task_id=_text(decoded.get("task_id", "")) or None,
        replays=int(_text(decoded.get("replays", "0")) or 0),
    )


class ExternalOutbox:
    """One stream per destination outside the deployment and shard; entries are msgpack events.

    Args:
        client: the state Redis (or cluster).
        maxlen: approximate cap of each stream.
        key_space: the deployment's key layout; None: the default for ``client``.
    """

    def __init__(self, client: StateRedis, maxlen: int, key_space: keys.KeySpace | None = None) -> None:
        self._client = client
        self._maxlen = maxlen
        self.keys = key_space if key_space is not None else key_space_for(client)

    def stream(self, destination: str, subject: str) -> str:
        """The stream of ``destination`` receiving the events about ``subject``."""
        return self.keys.outbox_stream(destination, subject)

    def add(self, destination: str, event: ArvoEvent | Mapping[str, Any], pipe: Any | None = None) -> None:
        """Append ``event`` (or its JSON) to the stream of ``destination`` and its subject (optionally on a pipeline)."""
        target = pipe if pipe is not None else self._client
        fields: dict[Any, Any] = _entry(event)
        target.xadd(self.stream(destination, str(fields["subject"])), fields, maxlen=self._maxlen, approximate=True)

    def xadd_command(self, destination: str, event: ArvoEvent | Mapping[str, Any]) -> list[bytes | str]:
        """The ``XADD`` that :meth:`add` sends, as a command to run elsewhere (a fused step's script).

        ``XADD <stream> MAXLEN ~ <maxlen> * <field> <value> ...``: what redis-py builds for
        ``xadd(..., maxlen=, approximate=True)``.
        """
        fields = _entry(event)
        command: list[bytes | str] = [
            "XADD", self.stream(destination, str(fields["subject"])), "MAXLEN", "~", str(self._maxlen), "*",
        ]
        for field, value in fields.items():
            command += [field, value]
        return command

    def last_id(self, destination: str, subject: str) -> str:
        """The id of the newest entry of ``subject``'s stream, to read only what arrives after it ("0-0" if empty)."""
        newest = self._client.xrevrange(self.stream(destination, subject), count=1)
        return _text(newest[0][0]) if newest else "0-0"

    def read_after(self, destination: str, subject: str, after: str, block_ms: int) -> list[tuple[str, ArvoEvent]]:
        """Entries of ``subject``'s stream (its shard's: other subjects' events too) after ``after``,
        waiting up to ``block_ms`` for the first one."""
        return self.read_shard_after(destination, self.keys.shard_of(subject), after, block_ms)

    def read_shard_after(self, destination: str, shard: int, after: str, block_ms: int) -> list[tuple[str, ArvoEvent]]:
        """Entries of shard ``shard``'s stream of ``destination`` after ``after``, waiting up to
        ``block_ms`` for the first one (a reader of every subject reads every shard)."""
        stream = self.keys.outbox_stream_of_shard(destination, shard)
        answer: list[Any] = self._client.xread({stream: after}, block=block_ms, count=100)  # type: ignore[assignment]
        found: list[tuple[str, ArvoEvent]] = []
        for _stream, entries in answer or ():
            for entry_id, fields in entries:
                raw = fields.get(b"event", fields.get("event"))
                found.append((_text(entry_id), decode_event(unpack(raw))))
        return found
