"""Workflow state behind Redis Sentinel: the memory over a ``redis+sentinel://`` client, and WAIT.

A real master, replica and 3 Sentinels (:mod:`tests.helpers.sentinel`). Proven here:

* :class:`RedisMachineMemory` over the client of ``tasks.store.connections.redis_client`` (the
  one builder) locks, writes and reads on the master the Sentinels name;
* with ``redis_wait_replicas=1`` the write is on the replica when ``write`` returns, and costs
  the same single round trip (``WAIT`` is pipelined after ``EVALSHA``);
* with the replica stopped, the same write fails with a retryable ``WRITE_FAILURE`` naming the
  replicas; the write is applied on the master, and the retry (the event is found consumed with
  its outbox unsettled) refuses to hand the outbox out until the replica has it again;
* after a SIGKILL of the master and Sentinel's promotion of the replica, the same client writes
  to the new master: calls during the failover fail with retryable violations only;
* an acknowledged write that had not reached the replica is lost by the failover (replication
  is asynchronous), while WAIT 1 refuses the same write before anything is published.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from config.settings import Settings
from orchestrator.errors import TransactionCause, TransactionViolation
from tasks.store import keys
from tasks.store.codec import unpack
from tasks.store.connections import SentinelMasterRedis, redis_client
from tasks.store.memory import RedisMachineMemory
from tests.helpers.round_trips import sent_packets
from tests.helpers.sentinel import SentinelDeployment, start_sentinel_or_fail

pytestmark = pytest.mark.timeout(240)

OUTBOX = [{"id": "out-1", "type": "com.x", "to": "com.x"}]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelDeployment]:
    """A master, a replica and 3 Sentinels for this module."""
    started = start_sentinel_or_fail(tmp_path_factory.mktemp("sentinel"), "The Sentinel state tests")
    yield started
    print(started.log_tails())
    started.stop()


def _memory(url: str, **settings: Any) -> tuple[RedisMachineMemory, redis.Redis]:
    client = redis_client(Settings(redis_url=url, **settings))
    return RedisMachineMemory.from_settings(Settings(redis_url=url, **settings), client), client


def _subject(name: str) -> str:
    return f"sentinel-{name}-{time.monotonic_ns()}"


def test_the_memory_writes_and_reads_through_the_sentinel_named_master(deployment: SentinelDeployment) -> None:
    memory, client = _memory(deployment.url())
    try:
        assert isinstance(client, SentinelMasterRedis)
        subject = _subject("plain")
        locked = memory.lock_and_read(subject, "e1")
        assert locked is not None
        lease, read = locked
        assert (read.record, read.version, read.consumed) == (None, 0, False)
        assert memory.write(subject, {"step": 1}, prev_version=0, lease=lease, event_id="e1", outbox=OUTBOX) == 1
        memory.unlock(lease, settle="e1")
        again = memory.read(subject, "e1")
        assert (again.record, again.version, again.consumed, again.pending) == ({"step": 1}, 1, True, None)
        master = deployment.master.client()
        assert master.hget(keys.SINGLE.record(subject), "version") == b"1"  # the master the Sentinels name
        master.close()
    finally:
        client.close()


def test_wait_1_returns_once_the_replica_holds_the_write_in_one_round_trip(deployment: SentinelDeployment) -> None:
    memory, client = _memory(deployment.url(), redis_wait_replicas=1, redis_wait_timeout_ms=3000)
    subject = _subject("wait")
    try:
        memory.write(subject, {"step": 0}, prev_version=0, lease=None, event_id="warm-up")  # loads the script
        with sent_packets(client) as sent:
            assert memory.write(subject, {"step": 1}, prev_version=1, lease=None, event_id="e1", outbox=OUTBOX) == 2
        assert len(sent) == 1, sent  # EVALSHA and WAIT leave in one packet: one round trip
        replica = deployment.replica.client()
        try:  # WAIT returned 1: the replica has applied the write already, no polling needed
            version, blob = replica.hmget(keys.SINGLE.record(subject), ["version", "blob"])
            assert (version, unpack(blob)) == (b"2", {"step": 1})
        finally:
            replica.close()
    finally:
        client.close()


def test_a_master_without_the_write_script_gets_it_loaded_and_the_write_waited_for(
    deployment: SentinelDeployment,
) -> None:
    """A promoted replica has no scripts (Redis does not replicate its script cache): the
    pipelined ``EVALSHA`` answers ``NOSCRIPT``, runs nothing, and the write is sent again."""
    memory, client = _memory(deployment.url(), redis_wait_replicas=1, redis_wait_timeout_ms=3000)
    subject = _subject("noscript")
    try:
        memory.write(subject, {"step": 0}, prev_version=0, lease=None, event_id="e0")
        client.script_flush()
        with sent_packets(client) as sent:
            assert memory.write(subject, {"step": 1}, prev_version=1, lease=None, event_id="e1") == 2
        assert len(sent) == 3, sent  # EVALSHA + WAIT refused, SCRIPT LOAD, EVALSHA + WAIT again
        assert client.smembers(keys.SINGLE.consumed(subject)) == {b"e0", b"e1"}  # e1 applied once
    finally:
        client.close()


def test_wait_1_without_the_replica_fails_retryably_and_holds_the_outbox_back(deployment: SentinelDeployment) -> None:
    memory, client = _memory(deployment.url(), redis_wait_replicas=1, redis_wait_timeout_ms=300)
    unwaiting, plain = _memory(deployment.url())
    subject = _subject("noreplica")
    deployment.replica.stop()
    try:
        locked = memory.lock_and_read(subject, "e1")
        assert locked is not None
        lease, _ = locked
        with pytest.raises(TransactionViolation) as caught:
            memory.write(subject, {"step": 1}, prev_version=0, lease=lease, event_id="e1", outbox=OUTBOX)
        assert caught.value.retryable
        assert caught.value.cause is TransactionCause.WRITE_FAILURE
        assert "reached 0 of 1 replica(s) within 300 ms" in str(caught.value)
        assert "ORCH_REDIS_WAIT_REPLICAS" in str(caught.value)
        memory.unlock(lease)  # the runtime unlocks without settling: the outbox stays
        # The write is applied on the master (WAIT cannot undo it) ...
        assert plain.hget(keys.SINGLE.record(subject), "version") == b"1"
        # ... and the retry finds the event consumed with its outbox, but refuses to hand the
        # outbox out for publication while the replica does not have it.
        with pytest.raises(TransactionViolation, match="not re-published yet") as again:
            memory.lock_and_read(subject, "e1")
        assert again.value.retryable
        assert plain.get(keys.SINGLE.lock_key(subject)) is None  # the refused retry released its lock
        # Without WAIT nothing is checked: the same write succeeds with no replica.
        other = _subject("nowait")
        assert unwaiting.write(other, {"step": 1}, prev_version=0, lease=None, event_id="e1") == 1
    finally:
        deployment.replica.start()
        deployment.wait_replica_in_sync(deployment.master, deployment.replica)
    try:
        locked = memory.lock_and_read(subject, "e1")  # the replica caught up: the outbox is handed out
        assert locked is not None
        lease, read = locked
        assert read.consumed
        assert read.pending == OUTBOX
        memory.unlock(lease, settle="e1")
    finally:
        client.close()
        plain.close()


def test_the_client_follows_a_failover_and_fails_only_retryably_meanwhile(tmp_path: Path) -> None:
    deployment = start_sentinel_or_fail(tmp_path / "failover", "The failover test")
    memory, client = _memory(deployment.url(), redis_wait_replicas=1, redis_wait_timeout_ms=1000)
    try:
        subject = _subject("failover")
        assert memory.write(subject, {"step": 1}, prev_version=0, lease=None, event_id="e1") == 1
        deployment.master.kill()  # SIGKILL; the replica holds version 1 (WAIT said so)
        failures: list[TransactionViolation] = []
        deadline = time.monotonic() + 60
        unwaiting = RedisMachineMemory(client, lock_expire_s=30, auto_renewal=False)
        while True:  # no replica is left after the promotion, so write without WAIT here
            try:
                version = unwaiting.write(subject, {"step": 2}, prev_version=1, lease=None, event_id="e2")
                break
            except TransactionViolation as exc:
                failures.append(exc)
            assert time.monotonic() < deadline, f"no write succeeded after the failover: {failures[-3:]}"
            time.sleep(0.2)
        assert version == 2  # applied on the promoted replica, on top of the replicated version 1
        assert deployment.master_port() == deployment.replica.port
        promoted = deployment.replica.client()
        assert promoted.hget(keys.SINGLE.record(subject), "version") == b"2"
        promoted.close()
        assert failures, "the master was killed: some call must have failed before the promotion"
        assert all(failure.retryable for failure in failures), failures
        print(f"  writes refused during the failover: {len(failures)}; last: {failures[-1]}")
    finally:
        client.close()
        print(deployment.log_tails())
        deployment.stop()


def test_a_failover_loses_an_unreplicated_write_acknowledged_without_wait_and_wait_refuses_it(tmp_path: Path) -> None:
    """The window WAIT closes, forced open: the replica is frozen (SIGSTOP) and its link cut
    (``CLIENT KILL TYPE replica``; a frozen replica alone would still find the writes in its
    socket buffer when thawed) while two writes reach the master, one without WAIT (acknowledged) and one with WAIT 1 (refused, retryable);
    then the master is SIGKILLed, the replica thawed and promoted. Both writes are gone from the
    new master. The first was acknowledged, so its step would have published its events and
    acknowledged its input: that loss is what a user of a WAIT-less deployment can see. The
    second was never acknowledged: its events were not published and its input is retried."""
    deployment = start_sentinel_or_fail(tmp_path / "lost", "The lost-write test")
    unwaiting, client = _memory(deployment.url())
    waiting, waiting_client = _memory(deployment.url(), redis_wait_replicas=1, redis_wait_timeout_ms=300)
    acked, refused = _subject("acked"), _subject("refused")
    try:
        for subject in (acked, refused):
            assert waiting.write(subject, {"step": 1}, prev_version=0, lease=None, event_id="e1") == 1
        replica = deployment.replica.process
        assert replica is not None
        os.kill(replica.pid, signal.SIGSTOP)
        master = deployment.master.client()
        try:
            # Cut the replication link while the replica cannot reconnect: what the master
            # writes from now on reaches no replica (its backlog dies with it).
            assert master.client_kill_filter(_type="replica") == 1
            master.close()
            assert unwaiting.write(acked, {"step": 2}, prev_version=1, lease=None, event_id="e2", outbox=OUTBOX) == 2
            with pytest.raises(TransactionViolation, match="Not replicated") as caught:
                waiting.write(refused, {"step": 2}, prev_version=1, lease=None, event_id="e2", outbox=OUTBOX)
            assert caught.value.retryable
            deployment.master.kill()
        finally:
            os.kill(replica.pid, signal.SIGCONT)
        deployment.wait_failover(deployment.replica)
        for subject in (acked, refused):
            after = _retrying(lambda subject=subject: unwaiting.read(subject, "e2"))
            assert (after.version, after.record, after.consumed, after.pending) == (1, {"step": 1}, False, None)
    finally:
        client.close()
        waiting_client.close()
        print(deployment.log_tails())
        deployment.stop()


def _retrying(call: Any, timeout: float = 30.0) -> Any:
    """``call()`` until it stops raising retryable violations (the client re-finds the master)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except TransactionViolation:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
