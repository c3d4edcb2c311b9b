"""The publisher of the distributed benchmarks: keep K workflows in flight, count completions.

Completions are read from a Redis stream with blocking ``XREAD``: for our system the external
outbox stream of the benchmark client (``orch:outbox:com.bench.client``, where the runtime puts
every event addressed outside the deployment, see :mod:`tasks.streams`), for the raw baseline
:data:`bench.raw_celery.DONE_STREAM`. Both carry the workflow's id in the field ``subject``,
so the publisher never decodes an event. As soon as a workflow completes, the next one is
started: a closed loop, so the figure is throughput at a bounded backlog, not how fast a queue
can be filled.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from bench import common


@dataclass
class DriveResult:
    """One closed-loop run."""

    workflows: int
    started_at: float
    ended_at: float
    latencies_s: list[float] = field(repr=False)
    failures: int = 0

    @property
    def seconds(self) -> float:
        """First publish to last completion."""
        return self.ended_at - self.started_at

    @property
    def workflows_per_s(self) -> float:
        """Completed workflows per second of wall time."""
        return self.workflows / self.seconds if self.seconds > 0 else 0.0

    def latency_ms(self) -> dict[str, float]:
        """End-to-end workflow latency (publish of init to completion seen), p50/p99 in ms."""
        return latency_ms(self.latencies_s)


def latency_ms(latencies_s: list[float]) -> dict[str, float]:
    """p50/p99 in ms of latencies given in seconds."""
    return {
        "p50": round(common.percentile(latencies_s, 0.5) * 1000, 2),
        "p99": round(common.percentile(latencies_s, 0.99) * 1000, 2),
    }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def last_id(client: redis.Redis, stream: str) -> str:
    """Id of the newest entry of ``stream`` ("0-0" when empty): completions are read after it."""
    newest: Any = client.xrevrange(stream, count=1)
    return _text(newest[0][0]) if newest else "0-0"


def drive(
    client: Any,
    stream: str | Sequence[str],
    start: Callable[[int], str],
    total: int,
    inflight: int,
    *,
    is_failure: Callable[[dict[bytes, bytes]], bool] = lambda _fields: False,
    timeout_s: float = 120.0,
) -> DriveResult:
    """Run ``total`` workflows, at most ``inflight`` at a time.

    Args:
        client: a client of the Redis (or cluster) holding ``stream``.
        stream: where completions appear (field ``subject``); several streams (one per shard
            of a sharded state) are read in turn, without blocking.
        start: publishes workflow number ``i`` and returns its id (the ``subject`` field).
        total: workflows to run.
        inflight: workflows kept in flight.
        is_failure: whether a completion entry reports a failed workflow.
        timeout_s: give up when nothing completes for this long.

    Raises:
        TimeoutError: no completion arrived within ``timeout_s``.
    """
    streams = [stream] if isinstance(stream, str) else list(stream)
    after = {name: last_id(client, name) for name in streams}
    pending: dict[str, float] = {}
    latencies: list[float] = []
    failures = 0
    started = 0
    began = time.time()
    while started < min(inflight, total):
        now = time.time()
        pending[start(started)] = now
        started += 1
    done = 0
    quiet_since = time.monotonic()
    while done < total:
        reply = _read(client, after)
        if not reply:
            if time.monotonic() - quiet_since > timeout_s:
                raise TimeoutError(f"{total - done} of {total} workflows did not complete ({len(pending)} in flight)")
            continue
        quiet_since = time.monotonic()
        for name, entries in reply:
            for entry_id, fields in entries:
                after[_text(name)] = _text(entry_id)
                sent = pending.pop(_text(fields[b"subject"]), None)
                if sent is None:
                    continue  # an older run's completion
                latencies.append(time.time() - sent)
                failures += is_failure(fields)
                done += 1
                if started < total:
                    now = time.time()
                    pending[start(started)] = now
                    started += 1
    return DriveResult(total, began, time.time(), latencies, failures)


def _read(client: Any, after: dict[str, str]) -> list[Any]:
    """New entries of every stream after its last id: one blocking ``XREAD`` for one stream; for
    several (in several cluster slots) one pipeline of non-blocking reads, then a short nap."""
    if len(after) == 1:
        return list(client.xread(after, block=1000, count=1000) or [])
    pipe = client.pipeline(transaction=False)
    for name, last in after.items():
        pipe.xread({name: last}, count=1000)
    found = [item for answer in pipe.execute() for item in answer or []]
    if not found:
        time.sleep(0.002)
    return found
