"""Scenario 6, soak: many workflows through 2 workers; Redis returns to its retention, RSS is flat.

Increment and fan-out workflows (4:1) are published with back-pressure (at most
:data:`IN_FLIGHT` unfinished) through 2 prefork workers. A reader follows the client's outbox
stream and, for each completion as it arrives, checks the output and counts the workflow's
transitions (record version and consumed-id set, read before they expire).

Proven: every workflow completes once (one completion id) with the correct output and exactly
the transitions its shape needs; after ``record_ttl_s`` (5 s here) every finished workflow's
record, consumed-id set and outbox are gone, so the key count is a small constant whatever the
number of workflows, and the outbox stream is capped near ``stream_maxlen``; the workers' RSS
(main + pool processes) after the run is within 10 % of their RSS at 10 % of the run
(for 20,000 workflows: after ~50,000 events per worker versus after ~5,000), and for 20,000
within 3 % of their RSS at half-way (the growth early on is bounded caches filling up).

``test_soak[2000]`` runs in about 40 s; ``test_soak[20000]`` (about 4-5 minutes on 2 cores) is
marked ``slow``: ``.ci/run`` runs it, ``-m "not slow"`` skips it.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import redis

from tasks.store import keys
from tasks.store.codec import unpack
from tests.helpers.chaos import (
    CLIENT,
    Cluster,
    Workflow,
    dead_letters,
    fanout_workflow,
    increment_workflow,
    publish,
    wait_until,
    worker_rss_kib,
)
from tests.helpers.redis_server import RedisServer

RECORD_TTL_S = 5
STREAM_MAXLEN = 1000
IN_FLIGHT = 400
SOAK_SETTINGS = {
    "record_ttl_s": RECORD_TTL_S,
    "stream_maxlen": STREAM_MAXLEN,
    "retry_backoff_max_s": 1.0,
    "visibility_timeout_s": 30,
}


@dataclass
class Tally:
    """What the reader saw, per workflow, without keeping the events."""

    expected: dict[str, tuple[dict[str, object], int]] = field(default_factory=dict)
    completion_ids: dict[str, set[str]] = field(default_factory=dict)
    wrong: list[str] = field(default_factory=list)
    miscounted: list[str] = field(default_factory=list)
    mutex: threading.Lock = field(default_factory=threading.Lock)

    @property
    def completed(self) -> int:
        return len(self.completion_ids)


class Reader(threading.Thread):
    """Follows the client's outbox stream; checks each completion and counts transitions at once."""

    def __init__(self, client: redis.Redis, tally: Tally) -> None:
        super().__init__(name="soak-reader", daemon=True)
        self._client = client
        self._tally = tally
        self._halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        after = "0-0"
        stream = keys.SINGLE.outbox_stream_of_shard(CLIENT, 0)
        try:
            while not self._halt.is_set():
                answer = self._client.xread({stream: after}, block=200, count=500)
                for _stream, entries in answer or ():
                    events = [unpack(fields[b"event"]) for _id, fields in entries]
                    after = entries[-1][0].decode()
                    self._check(events)
        except BaseException as error:  # reported by stop()
            self.error = error

    def _check(self, events: list[dict[str, object]]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for event in events:
            subject = str(event["subject"])
            pipe.hget(keys.SINGLE.record(subject), "version")
            pipe.scard(keys.SINGLE.consumed(subject))
        counts = pipe.execute()
        tally = self._tally
        with tally.mutex:
            for index, event in enumerate(events):
                subject = str(event["subject"])
                output, steps = tally.expected[subject]
                tally.completion_ids.setdefault(subject, set()).add(str(event["id"]))
                if event["data"] != output:
                    tally.wrong.append(f"{subject[:16]}: {event['data']} != {output}")
                version, consumed = counts[2 * index], counts[2 * index + 1]
                if (int(version or 0), consumed) != (steps, steps):
                    tally.miscounted.append(f"{subject[:16]}: version={version} consumed={consumed} != {steps}")

    def stop(self) -> None:
        self._halt.set()
        self.join(10)
        if self.error is not None:
            raise AssertionError("the completion reader failed") from self.error


def _workflow(rng: random.Random, index: int) -> Workflow:
    if index % 5 == 4:
        return fanout_workflow([rng.randint(-100, 100) for _ in range(3)])
    return increment_workflow("k" * rng.randint(1, 12), rng.randint(-50, 50))


def _orch_keys(client: redis.Redis) -> int:
    """Per-workflow keys (``orch:{<shard>}:wf:<subject>:...``; the shard's index, timer queue and
    streams are the deployment's, not the workflow's)."""
    return sum(1 for _ in client.scan_iter(match=f"{keys.PREFIX}:{{*}}:wf:*", count=1000))


@pytest.mark.parametrize("count", [2000, pytest.param(20_000, marks=pytest.mark.slow)])
@pytest.mark.timeout(900)
def test_soak(
    count: int, fault_redis: RedisServer, redis_client: redis.Redis, cluster_factory: Callable[..., Cluster]
) -> None:
    cluster = cluster_factory(fault_redis.url(), **SOAK_SETTINGS)
    workers = [cluster.start(loglevel="WARNING"), cluster.start(loglevel="WARNING")]
    app = cluster.app()
    tally = Tally()
    reader = Reader(fault_redis.client(), tally)
    reader.start()
    rng = random.Random(count)
    rss_early: list[int] = []
    rss_mid: list[int] = []
    started = time.monotonic()
    try:
        for index in range(count):
            while index - tally.completed >= IN_FLIGHT:
                time.sleep(0.005)
            if not rss_early and tally.completed >= count // 10:
                rss_early = [worker_rss_kib(worker) for worker in workers]
            if not rss_mid and tally.completed >= count // 2:
                rss_mid = [worker_rss_kib(worker) for worker in workers]
            workflow = _workflow(rng, index)
            with tally.mutex:
                tally.expected[workflow.subject] = (workflow.output, workflow.steps)
            publish(app, workflow.init)
        assert wait_until(lambda: tally.completed >= count, timeout=300), f"{count - tally.completed} never completed"
        elapsed = time.monotonic() - started
    finally:
        reader.stop()
    rss_late = [worker_rss_kib(worker) for worker in workers]
    running = _orch_keys(redis_client)
    # Retention: finished workflows' keys expire after record_ttl_s; streams are capped.
    assert wait_until(lambda: _orch_keys(redis_client) == 0, timeout=RECORD_TTL_S + 30), _orch_keys(redis_client)
    total_keys = redis_client.dbsize()
    stream_length = redis_client.xlen(keys.SINGLE.outbox_stream_of_shard(CLIENT, 0))
    duplicated = [subject for subject, ids in tally.completion_ids.items() if len(ids) > 1]
    lost = sorted(set(tally.expected) - set(tally.completion_ids)) + tally.wrong + tally.miscounted
    print(
        f"FAULTS soak-{count}: injected=none workflows={count} lost={len(lost)} duplicated={len(duplicated)}\n"
        f"  {elapsed:.0f}s ({count / elapsed:.0f} workflows/s); keys: {running} orch keys at the end, 0 after "
        f"{RECORD_TTL_S}s TTL, {total_keys} keys in all; outbox stream length {stream_length} "
        f"(maxlen ~{STREAM_MAXLEN}); worker RSS KiB at {count // 10} workflows {rss_early}, at {count // 2} "
        f"{rss_mid}, at {count} {rss_late}"
    )
    assert not lost, lost[:10]
    assert not duplicated, duplicated[:10]
    assert not dead_letters(redis_client)
    assert total_keys <= 40, sorted(key.decode() for key in redis_client.keys("*"))  # no per-workflow key left
    assert stream_length <= STREAM_MAXLEN + 200
    for early, mid, late in zip(rss_early, rss_mid, rss_late, strict=True):
        assert late <= early * 1.10, f"worker RSS grew from {early} to {late} KiB"
        if count >= 20_000:  # bounded caches (e.g. parsed subjects) are full by mid-run: a plateau
            assert late <= mid * 1.03, f"worker RSS still grows in the second half: {mid} -> {late} KiB"
