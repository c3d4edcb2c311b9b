"""The search index in Redis, read side: listing, counting and sweeping (keys in :mod:`tasks.store.keys`).

``write_record.lua`` maintains the index with every step; this module reads it. A listing scans
the most selective sorted set of the filter by update time (``ZREVRANGEBYSCORE ... LIMIT``),
newest first, and checks the other filters on the workflows' summary hashes, read with one
pipeline per batch: no ``ZUNION``/``ZINTER``, so no temporary keys and nothing that grows with
the whole index. A count with one set filter (or none) and at most an update range is one
``ZCARD``/``ZCOUNT``; any other count scans like a listing.

Finished workflows expire: :meth:`RedisIndex.sweep` removes them from the sets (capped per
call, run by every listing and count and by the timer poller), and a listing that meets a member
whose summary is gone or past its ``expires`` skips it and removes it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis

from orchestrator.inspection import STATUSES, Page, WorkflowFilter, WorkflowSummary
from orchestrator.search import check_limit, decode_cursor, encode_cursor, matches
from tasks.store import keys, scripts

#: Workflows one sweep call removes at most.
SWEEP_BATCH = 1000

#: Sweep calls one count makes at most (a count after a long pause may find many expired).
SWEEP_ROUNDS = 10

#: Most members read per round trip while scanning (summary hashes pipelined per batch); a
#: listing reads a page's worth first and grows its batches from there.
SCAN_BATCH = 500

_FIELDS = ("orchestrator", "version", "status", "started", "updated", "parent", "expires")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisIndex:
    """Reads and sweeps the workflow search index of one Redis.

    Args:
        client: a ``redis.Redis`` (binary or decoded responses).
    """

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._sweep = client.register_script(scripts.load("sweep_index"))

    # -- rows ---------------------------------------------------------------------------------------

    def rows(self, subjects: Sequence[str], now_ms: int | None = None) -> list[WorkflowSummary | None]:
        """The index rows of ``subjects`` (one round trip); None for a workflow gone or expired."""
        if not subjects:
            return []
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        pipe = self._client.pipeline(transaction=False)
        for subject in subjects:
            pipe.hmget(keys.summary(subject), _FIELDS)
        return [_row(subject, values, now_ms) for subject, values in zip(subjects, pipe.execute(), strict=True)]

    def row(self, subject: str) -> WorkflowSummary | None:
        """The index row of ``subject``, None when it has none."""
        return self.rows([subject])[0]

    # -- sweeping -----------------------------------------------------------------------------------

    def sweep(self, now_ms: int | None = None, limit: int = SWEEP_BATCH) -> int:
        """Remove up to ``limit`` workflows whose record expired from every index set; how many."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        return int(
            self._sweep(
                keys=[keys.INDEX_EXPIRING, keys.INDEX_ALL],
                args=[
                    now_ms,
                    limit,
                    keys.INDEX_STATUS_PREFIX,
                    keys.INDEX_ORCHESTRATOR_PREFIX,
                    keys.INDEX_PARENT_PREFIX,
                    keys.INDEX_MEMBER_SEPARATOR,
                ],
            )
        )

    def sweep_all(self, now_ms: int | None = None) -> int:
        """Sweep until nothing is due (at most :data:`SWEEP_ROUNDS` calls)."""
        total = 0
        for _ in range(SWEEP_ROUNDS):
            swept = self.sweep(now_ms)
            total += swept
            if swept < SWEEP_BATCH:
                break
        return total

    def _forget(self, key: str, subjects: list[str]) -> None:
        """Remove members met with no live summary from the set scanned and the global ones."""
        pipe = self._client.pipeline(transaction=False)
        for name in {key, keys.INDEX_ALL, *(keys.index_status(status) for status in STATUSES)}:
            pipe.zrem(name, *subjects)
        pipe.execute()

    # -- listing ------------------------------------------------------------------------------------

    def _sources(self, where: WorkflowFilter) -> dict[str, str]:
        """The sorted sets that hold every match of ``where``, by a one-letter tag."""
        found: dict[str, str] = {}
        if where.status is not None:
            found["s"] = keys.index_status(where.status)
        if where.orchestrator is not None:
            found["o"] = keys.index_orchestrator(where.orchestrator, where.version)
        if where.parent_subject is not None:
            found["p"] = keys.index_parent(where.parent_subject)
        return found or {"a": keys.INDEX_ALL}

    def _source(self, where: WorkflowFilter, tag: str) -> tuple[str, str]:
        """The set to scan: the cursor's, else the smallest candidate (one ZCARD round trip)."""
        sources = self._sources(where)
        if tag in sources:
            return tag, sources[tag]
        if len(sources) == 1:
            return next(iter(sources.items()))
        pipe = self._client.pipeline(transaction=False)
        for key in sources.values():
            pipe.zcard(key)
        sizes = pipe.execute()
        return min(zip(sources.items(), sizes, strict=True), key=lambda pair: int(pair[1]))[0]

    def list(self, where: WorkflowFilter, limit: int = 50, cursor: str | None = None) -> Page:
        """Workflows matching ``where``, newest update first, after ``cursor``."""
        check_limit(limit)
        self.sweep()
        score, offset, tag = decode_cursor(cursor) if cursor is not None else (None, 0, "")
        tag, key = self._source(where, tag)
        high: float = where.updated_before_ms if where.updated_before_ms is not None else float("inf")
        if score is not None:
            high = min(high, score)
        low: float = where.updated_after_ms if where.updated_after_ms is not None else float("-inf")
        items: list[WorkflowSummary] = []
        stale: list[tuple[str, int]] = []
        position, passed = (score, offset) if score is not None else (None, 0)
        more = True
        now_ms = int(time.time() * 1000)
        size = min(SCAN_BATCH, limit + 1)  # a page's worth first, then larger batches
        while more and len(items) < limit:
            start = passed if position is not None and position == high else 0
            batch: list[tuple[Any, float]] = self._client.zrevrangebyscore(  # type: ignore[assignment]
                key, _bound(high), _bound(low), start=start, num=size, withscores=True
            )
            members = [(_text(member), int(member_score)) for member, member_score in batch]
            more = len(members) == size
            size = min(SCAN_BATCH, size * 4)
            rows = self.rows([subject for subject, _ in members], now_ms)
            for index, ((subject, member_score), row) in enumerate(zip(members, rows, strict=True)):
                if member_score == position:
                    passed += 1
                else:
                    position, passed = member_score, 1
                if row is None:
                    stale.append((subject, member_score))
                elif matches(row, where):
                    items.append(row)
                    if len(items) == limit:
                        more = more or index < len(members) - 1
                        break
            if position is not None:
                high = position
        if stale:  # removed from the set scanned: the cursor's offset no longer counts them
            passed -= sum(1 for _, member_score in stale if member_score == position)
            self._forget(key, [subject for subject, _ in stale])
        next_cursor = encode_cursor(position, passed) + f":{tag}" if more and position is not None else None
        return Page(tuple(items), next_cursor)

    def count(self, where: WorkflowFilter) -> int:
        """How many workflows match ``where`` (one ZCARD or ZCOUNT when the filter allows)."""
        self.sweep_all()
        sources = self._sources(where)
        started = where.started_after_ms is not None or where.started_before_ms is not None
        if len(sources) == 1 and not started:
            key = next(iter(sources.values()))
            if where.updated_after_ms is None and where.updated_before_ms is None:
                return int(self._client.zcard(key))
            return int(
                self._client.zcount(
                    key,
                    _bound(where.updated_after_ms if where.updated_after_ms is not None else float("-inf")),
                    _bound(where.updated_before_ms if where.updated_before_ms is not None else float("inf")),
                )
            )
        total = 0
        cursor: str | None = None
        while True:
            page = self.list(where, limit=1000, cursor=cursor)
            total += len(page.items)
            if page.cursor is None:
                return total
            cursor = page.cursor


def _bound(value: float) -> str | int:
    if value == float("inf"):
        return "+inf"
    if value == float("-inf"):
        return "-inf"
    return int(value)


def _row(subject: str, values: list[Any], now_ms: int) -> WorkflowSummary | None:
    orchestrator, version, status, started, updated, parent, expires = (
        _text(value) if value is not None else None for value in values
    )
    if orchestrator is None or status is None or (expires is not None and int(expires) <= now_ms):
        return None
    return WorkflowSummary(
        subject=subject,
        orchestrator=orchestrator,
        version=version or "",
        status=status,  # type: ignore[arg-type]
        started_ms=int(started or 0),
        updated_ms=int(updated or 0),
        parent_subject=parent or None,
    )
