"""The search index in Redis, read side: listing, counting and sweeping (keys in :mod:`tasks.store.keys`).

The index is sharded like the state (one set of each kind per shard, in the shard's hash slot).
A listing reads every shard's set in one pipeline per batch (on a Redis Cluster, one request
per node) and merges them by score, ties by subject, newest first: the order a single sorted set
gives, so the cursor (a score and how many members of that score were passed) means the same
with one shard or many. A count sums the shards' ``ZCARD``/``ZCOUNT``.

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
from collections.abc import Callable, Sequence
from typing import Any

from orchestrator.inspection import Page, WorkflowFilter, WorkflowSummary
from orchestrator.search import check_limit, decode_cursor, encode_cursor, matches
from tasks.store import keys, scripts
from tasks.store.connections import StateRedis, key_space_for

#: A sorted set of the index, given its shard.
ShardKey = Callable[[int], str]

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
    """Reads and sweeps the workflow search index of one deployment.

    Args:
        client: a ``redis.Redis`` or ``RedisCluster`` (binary or decoded responses).
        key_space: the deployment's key layout; None: the default for ``client``.
    """

    def __init__(self, client: StateRedis, key_space: keys.KeySpace | None = None) -> None:
        self._client = client
        self.keys = key_space if key_space is not None else key_space_for(client)
        self._sweep = client.register_script(scripts.load("sweep_index"))

    # -- rows ---------------------------------------------------------------------------------------

    def rows(self, subjects: Sequence[str], now_ms: int | None = None) -> list[WorkflowSummary | None]:
        """The index rows of ``subjects`` (one round trip); None for a workflow gone or expired."""
        if not subjects:
            return []
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        pipe = self._client.pipeline(transaction=False)
        for subject in subjects:
            pipe.hmget(self.keys.summary(subject), _FIELDS)
        return [_row(subject, values, now_ms) for subject, values in zip(subjects, pipe.execute(), strict=True)]

    def row(self, subject: str) -> WorkflowSummary | None:
        """The index row of ``subject``, None when it has none."""
        return self.rows([subject])[0]

    # -- sweeping -----------------------------------------------------------------------------------

    def sweep(self, now_ms: int | None = None, limit: int = SWEEP_BATCH) -> int:
        """Remove up to ``limit`` workflows per shard whose record expired from every index set; how many.

        One pipelined read of the due members of every shard, then one script call per shard
        with any, declaring the sets those members name (see sweep_index.lua).
        """
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        space = self.keys
        pipe = self._client.pipeline(transaction=False)
        for shard in space.all_shards:
            pipe.zrangebyscore(space.index_expiring(shard), "-inf", now_ms, start=0, num=limit)
        total = 0
        for shard, due in zip(space.all_shards, pipe.execute(), strict=True):
            if due:
                script_keys, args = self._sweep_call(shard, [_text(member) for member in due])
                total += int(self._sweep(keys=script_keys, args=[now_ms, *args]))
        return total

    def _sweep_call(self, shard: int, members: list[str]) -> tuple[list[str], list[str | int]]:
        """KEYS and ARGV[2..] of sweep_index.lua for ``members`` of ``shard``'s expiring set."""
        space = self.keys
        script_keys = [space.index_expiring(shard), space.index_all(shard)]
        position: dict[str, int] = {}
        args: list[str | int] = []
        for member in members:
            subject, status, orchestrator, version, parent, *_ = (*member.split(keys.INDEX_MEMBER_SEPARATOR), "", "", "", "")
            names = [
                space.index_status(shard, status),
                space.index_orchestrator(shard, orchestrator),
                space.index_orchestrator(shard, orchestrator, version),
            ]
            if parent:
                names.append(space.index_parent(shard, parent))
            for name in names:
                if name not in position:
                    script_keys.append(name)
                    position[name] = len(script_keys)
            args += [member, subject, len(names), *(position[name] for name in names)]
        return script_keys, args

    def sweep_all(self, now_ms: int | None = None) -> int:
        """Sweep until nothing is due (at most :data:`SWEEP_ROUNDS` calls)."""
        total = 0
        for _ in range(SWEEP_ROUNDS):
            swept = self.sweep(now_ms)
            total += swept
            if swept < SWEEP_BATCH:
                break
        return total

    def _forget(self, source: ShardKey, subjects: list[str]) -> None:
        """Remove members met with no live summary from the set scanned and the shard's global ones."""
        pipe = self._client.pipeline(transaction=False)
        for subject in subjects:
            shard = self.keys.shard_of(subject)
            for name in {source(shard), self.keys.index_all(shard), *self.keys.index_statuses(shard)}:
                pipe.zrem(name, subject)
        pipe.execute()

    # -- listing ------------------------------------------------------------------------------------

    def _sources(self, where: WorkflowFilter) -> dict[str, ShardKey]:
        """The sorted sets (one per shard) that hold every match of ``where``, by a one-letter tag."""
        space = self.keys
        found: dict[str, ShardKey] = {}
        if where.status is not None:
            status = where.status
            found["s"] = lambda shard: space.index_status(shard, status)
        if where.orchestrator is not None:
            name, version = where.orchestrator, where.version
            found["o"] = lambda shard: space.index_orchestrator(shard, name, version)
        if where.parent_subject is not None:
            parent = where.parent_subject
            found["p"] = lambda shard: space.index_parent(shard, parent)
        return found or {"a": space.index_all}

    def _source(self, where: WorkflowFilter, tag: str) -> tuple[str, ShardKey]:
        """The sets to scan: the cursor's, else the smallest candidate (one pipelined ZCARD round trip)."""
        sources = self._sources(where)
        if tag in sources:
            return tag, sources[tag]
        if len(sources) == 1:
            return next(iter(sources.items()))
        pipe = self._client.pipeline(transaction=False)
        for source in sources.values():
            for shard in self.keys.all_shards:
                pipe.zcard(source(shard))
        sizes = pipe.execute()
        shards = self.keys.shards
        totals = [sum(int(size) for size in sizes[i * shards : (i + 1) * shards]) for i in range(len(sources))]
        return min(zip(sources.items(), totals, strict=True), key=lambda pair: pair[1])[0]

    def _merged(self, source: ShardKey, high: float, low: float, count: int) -> tuple[list[tuple[str, int]], bool]:
        """The first ``count`` members of every shard's set between ``high`` and ``low``, merged
        newest first (ties: subject descending, as ``ZREVRANGEBYSCORE`` orders them), and whether
        more follow. The global first ``count`` are among each shard's first ``count``."""
        pipe = self._client.pipeline(transaction=False)
        for shard in self.keys.all_shards:
            pipe.zrevrangebyscore(source(shard), _bound(high), _bound(low), start=0, num=count, withscores=True)
        batches = pipe.execute()
        members = [(_text(member), int(score)) for batch in batches for member, score in batch]
        members.sort(key=lambda pair: (pair[1], pair[0].encode()), reverse=True)
        more = len(members) > count or any(len(batch) == count for batch in batches)
        return members[:count], more

    def list(self, where: WorkflowFilter, limit: int = 50, cursor: str | None = None) -> Page:
        """Workflows matching ``where``, newest update first, after ``cursor``."""
        check_limit(limit)
        self.sweep()
        score, offset, tag = decode_cursor(cursor) if cursor is not None else (None, 0, "")
        tag, source = self._source(where, tag)
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
            skip = passed if position is not None and position == high else 0
            merged, more = self._merged(source, high, low, skip + size)
            members = merged[skip:]
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
        if stale:  # removed from the sets scanned: the cursor's offset no longer counts them
            passed -= sum(1 for _, member_score in stale if member_score == position)
            self._forget(source, [subject for subject, _ in stale])
        next_cursor = encode_cursor(position, passed) + f":{tag}" if more and position is not None else None
        return Page(tuple(items), next_cursor)

    def count(self, where: WorkflowFilter) -> int:
        """How many workflows match ``where`` (the shards' ZCARD or ZCOUNT, summed, when the filter allows)."""
        self.sweep_all()
        sources = self._sources(where)
        started = where.started_after_ms is not None or where.started_before_ms is not None
        if len(sources) == 1 and not started:
            source = next(iter(sources.values()))
            pipe = self._client.pipeline(transaction=False)
            for shard in self.keys.all_shards:
                if where.updated_after_ms is None and where.updated_before_ms is None:
                    pipe.zcard(source(shard))
                else:
                    pipe.zcount(
                        source(shard),
                        _bound(where.updated_after_ms if where.updated_after_ms is not None else float("-inf")),
                        _bound(where.updated_before_ms if where.updated_before_ms is not None else float("inf")),
                    )
            return sum(int(size) for size in pipe.execute())
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
