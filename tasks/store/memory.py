"""RedisMachineMemory: the :class:`~orchestrator.memory.base.MachineMemory` port on Redis.

One subject's state is four keys (see :mod:`tasks.store.keys`): a record hash (``version`` and a
msgpack ``blob``), a set of consumed event ids, a hash of unpublished outboxes, and the
python-redis-lock key. Costs per call, in network round trips:

* ``lock``: 1 (python-redis-lock's ``SET NX EX``; its ownership GET is skipped, see
  :mod:`tasks.store.lease`);
* ``read``: 1 (a non-transactional pipeline: HMGET record, SISMEMBER consumed, HGET outbox);
* ``lock_and_read``: 1 (the ``SET NX EX`` and the read's commands in one pipeline);
* ``write``: 1 (``EVALSHA`` of ``write_record.lua``: lock check, version check, writes, TTLs,
  the step's history entry and the workflow's search index row);
* ``unlock``: 1 (``release_lock.lua``: python-redis-lock's release, plus settling the step's
  outbox when the events were published under the lock, plus the history entry of a step that
  wrote no state); ``settle`` alone: 1 (HDEL).

So a whole orchestrator step (lock_and_read, write, unlock) costs 3 round trips besides the broker's.

Redis Cluster. The client may be a :class:`redis.cluster.RedisCluster`: every key a step
touches carries its shard's hash tag (:class:`~tasks.store.keys.KeySpace`), so the pipeline of
``lock_and_read`` goes to one node and each script runs on one slot; the costs are the same.
Timers are claimed shard by shard (:meth:`RedisMachineMemory.claim_due_timers`).

The fused step. When the runtime says the broker is this very Redis (:meth:`fuse_publication`),
``write`` asks the runtime for the Redis commands that would publish the step's outbox (kombu's
envelopes, captured from Celery's own publish path) and runs one composed script:
``write_record.lua``, then ``publish_and_release.lua`` (those commands, then python-redis-lock's
release). The step's state, its messages and its unlock are one atomic call, the outbox hash is
never written (nothing is left to settle), and the following ``unlock`` of that lease costs
nothing. A whole step is then 2 round trips, publication included. Never with ``wait_replicas``:
events must not become visible before the replicas hold their write.

Replication. With ``wait_replicas`` > 0 (``ORCH_REDIS_WAIT_REPLICAS``), ``write`` sends Redis's
``WAIT wait_replicas wait_timeout_ms`` in the same pipeline as the script (``WAIT`` cannot run
inside a script, and pipelined it costs no extra round trip, only the replicas' latency). When
fewer replicas acknowledged in time, the write is already applied on the master but the step
fails with a retryable ``WRITE_FAILURE`` *before* its events are published. Its retry finds the
event consumed with its outbox unsettled, and ``lock_and_read`` then waits for the replicas
again (a ``PEXPIRE`` of the lock just taken plus ``WAIT``, in one more round trip, only on
that path) before the stored events are re-published: no event is published from a write that
fewer than ``wait_replicas`` replicas hold. ``WAIT`` counts replicas that acknowledged; it is
no consensus (``docs/guarantees.md``, "With Redis Sentinel for state"). On a cluster the script
and ``WAIT`` are sent, pipelined, on one connection to the primary of the step's slot
(:func:`~tasks.store.connections.node_client`): the same single round trip.

Fencing: the write script compares the lock key's value with the lease token in the same
atomic call as the version check, so a worker whose lease expired is refused even when the
version it read is still current (another holder may be about to write).

Error mapping. Every :class:`redis.exceptions.RedisError` (connection refused or reset,
timeouts, a server still loading its data, ``OOM``/``READONLY`` replies; behind Sentinel also
``MasterNotFoundError`` while no master is elected and the ``ConnectionError`` redis-py raises
when a write reaches a demoted master, both ``ConnectionError`` subclasses) becomes a
:class:`~orchestrator.errors.TransactionViolation` whose cause names the step: ``LOCK_FAILURE``,
``READ_FAILURE`` or ``WRITE_FAILURE``. All three are ``retryable``: the event is retried later
with backoff, and nothing was half-applied because each step is one atomic command or a read.
A timeout during ``write`` is ambiguous (the script may have run); that is safe because the
retried event then finds itself consumed and republishes the stored outbox. Version or lease
mismatches are ``WRITE_CONFLICT`` (also retryable: the event is re-run on the newer state).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgpack
from redis.exceptions import NoScriptError

from orchestrator.errors import TransactionCause, TransactionViolation
from orchestrator.history import DEFAULT_HISTORY_LIMIT, IndexFields
from orchestrator.inspection import HistoryEntry
from orchestrator.memory.base import DueTimer, Lease, ReadResult, require_record, require_subject
from orchestrator.timers import TimerChanges
from tasks.store import keys, scripts
from tasks.store.codec import pack, unpack
from tasks.store.connections import STATE_ERRORS, StateRedis, key_space_for, node_client
from tasks.store.lease import SIGNAL_EXPIRE_MS, LeaseKeeper, LeaseLock, register_lock_scripts

if TYPE_CHECKING:
    from config.settings import Settings

logger = logging.getLogger(__name__)

#: Turns a step's outbox (event JSON mappings) into the Redis commands that publish it
#: (``[name, *arguments]`` each), or None when they cannot go in the step's write.
PublicationRenderer = Callable[[list[dict[str, Any]]], list[list[bytes | str]] | None]


def fused_write_source() -> str:
    """write_record.lua as a local function, then publish_and_release.lua when it wrote.

    Composed rather than edited into one file: write_record.lua stays the one write of a step
    (its KEYS and ARGV unchanged), and the fused tail reads only the last argument.
    """
    return (
        "local function write_record()\n"
        + scripts.load("write_record")
        + "\nend\n\nlocal written = write_record()\nif written[1] ~= 1 then\n    return written\nend\n\n"
        + scripts.load("publish_and_release")
    )


class RedisMachineMemory:
    """Machine memory in Redis, shared by every worker process of a deployment.

    Args:
        client: a ``redis.Redis`` or ``RedisCluster`` with ``decode_responses=False`` (records
            are binary msgpack).
        lock_expire_s: lifetime of a lock in whole seconds; a crashed holder frees it then.
        auto_renewal: extend held locks from a thread so long steps keep their lease.
        timer_reclaim_s: a claimed timer not released within this many seconds fires again.
        history_limit: history entries kept per workflow (the oldest are trimmed).
        timer_reclaim_s: a claimed timer not released within this is handed out again.
        wait_replicas: replicas that must acknowledge each write before it counts (``WAIT``);
            0 does not wait.
        wait_timeout_ms: how long ``WAIT`` waits for them.
        key_space: the deployment's key layout; None: the default for ``client`` (16 shards on a
            cluster, 1 otherwise; :func:`~tasks.store.connections.key_space_for`).
    """

    def __init__(
        self,
        client: StateRedis,
        *,
        lock_expire_s: int,
        auto_renewal: bool,
        timer_reclaim_s: float = 60.0,
        history_limit: int = DEFAULT_HISTORY_LIMIT,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
        key_space: keys.KeySpace | None = None,
    ) -> None:
        if client.get_connection_kwargs().get("decode_responses"):
            raise ValueError("RedisMachineMemory needs a client with decode_responses=False")
        if lock_expire_s < 1:
            raise ValueError("lock_expire_s must be at least 1 second")
        if history_limit < 1:
            raise ValueError("history_limit must be at least 1")
        if wait_replicas < 0 or wait_timeout_ms < 1:
            raise ValueError("wait_replicas must be at least 0 and wait_timeout_ms at least 1")
        self._wait_replicas = int(wait_replicas)
        self._wait_timeout_ms = int(wait_timeout_ms)
        self._client = client
        self.keys = key_space if key_space is not None else key_space_for(client)
        self._lock_expire_s = int(lock_expire_s)
        self.history_limit = int(history_limit)
        register_lock_scripts(client)
        self._write_script = client.register_script(scripts.load("write_record"))
        self._release_script = client.register_script(scripts.load("release_lock"))
        self._claim_script = client.register_script(scripts.load("claim_timers"))
        self._write_loaded = False  # SCRIPT LOAD done for queue_write
        self._timer_reclaim_ms = int(timer_reclaim_s * 1000)
        # Renews held leases (and keeps their lock objects) until ``unlock``.
        self._keeper = LeaseKeeper(self._lock_expire_s) if auto_renewal else None
        self._render: PublicationRenderer | None = None
        self._fused_script: Any = None
        # Per thread: the lease token and event id of the last fused write (a step runs on one
        # thread from its lock to its unlock; a thread pool runs several steps at once).
        self._fused = threading.local()

    @classmethod
    def from_settings(cls, settings: Settings, client: StateRedis) -> RedisMachineMemory:
        """Build from the deployment settings over ``client``."""
        return cls(
            client,
            lock_expire_s=settings.lock_expire_s,
            auto_renewal=settings.lock_auto_renewal,
            timer_reclaim_s=settings.timer_reclaim_s,
            history_limit=settings.history_limit,
            wait_replicas=settings.redis_wait_replicas,
            wait_timeout_ms=settings.redis_wait_timeout_ms,
            key_space=keys.KeySpace(settings.redis_shard_count),
        )

    def fuse_publication(self, render: PublicationRenderer) -> None:
        """Publish each step's outbox inside its write, and release its lock there too.

        Only for a memory whose client is the broker's Redis (one plain Redis, no replicas to
        wait for): the runtime decides (:func:`tasks.runtime.can_fuse`).
        """
        if self._wait_replicas:
            raise ValueError("a fused step would publish before WAIT confirms its write (redis_wait_replicas)")
        self._fused_script = self._client.register_script(fused_write_source())
        self._render = render

    def published_with_write(self, event_id: str) -> bool:
        """Whether this thread's last write published ``event_id``'s events (a fused step); once."""
        published: str | None = getattr(self._fused, "event_id", None)
        self._fused.event_id = None
        return published is not None and published == event_id

    def lock(self, subject: str) -> Lease | None:
        """Try once to take the subject's lock; None when another holder has it.

        Always pair with :meth:`unlock`: with auto-renewal the lease keeps being extended (and
        the lock object kept) until then, not merely until ``lock_expire_s``.
        """
        lock = self._new_lock(subject)
        try:
            acquired = lock.acquire(blocking=False)
        except STATE_ERRORS as exc:
            raise TransactionViolation(
                TransactionCause.LOCK_FAILURE, f"Cannot lock subject={subject}: {exc}"
            ) from exc
        return self._hold(subject, lock) if acquired else None

    def lock_and_read(self, subject: str, event_id: str | None = None) -> tuple[Lease, ReadResult] | None:
        """:meth:`lock` and :meth:`read` in one round trip (a non-transactional pipeline).

        The pipeline sends python-redis-lock's own non-blocking acquisition command first, then
        the read. Redis runs them in order, so when the ``SET NX`` succeeded the read that follows
        it sees what a read after :meth:`lock` would: any other writer is fenced out by the token
        from that moment on. When the lock is busy the read is thrown away.
        """
        lock = self._new_lock(subject)
        pipe = self._client.pipeline(transaction=False)
        lock.queue_acquire(pipe)
        self._queue_read(pipe, subject, event_id)
        try:
            acquired, *replies = pipe.execute()
        except STATE_ERRORS as exc:
            raise TransactionViolation(
                TransactionCause.LOCK_FAILURE, f"Cannot lock and read subject={subject}: {exc}"
            ) from exc
        if not acquired:
            return None
        lease = self._hold(subject, lock)
        try:
            read = self._read_result(subject, event_id, replies)
            if read.consumed and read.pending is not None and self._wait_replicas:
                self._wait_for_replicas_of_pending(subject, lock)
        except TransactionViolation:
            self.unlock(lease)
            raise
        return lease, read

    def _wait_for_replicas_of_pending(self, subject: str, lock: LeaseLock) -> None:
        """Before an unsettled outbox is re-published, make sure its write reached the replicas.

        ``WAIT`` counts the replicas that hold every write of *this connection*; a connection
        that wrote nothing gets an immediate, meaningless answer. So the lock just taken is
        re-armed (``PEXPIRE``, a write that changes nothing) in the same pipeline: once the
        replicas hold it, they hold the earlier write of the outbox too (one replication stream).
        """
        pipe = node_client(self._client, lock.key).pipeline(transaction=False)
        pipe.pexpire(lock.key, self._lock_expire_s * 1000)
        pipe.wait(self._wait_replicas, self._wait_timeout_ms)
        try:
            _, acked = pipe.execute()
        except STATE_ERRORS as exc:
            raise TransactionViolation(
                TransactionCause.READ_FAILURE, f"Cannot wait for the replicas of subject={subject}: {exc}"
            ) from exc
        if int(acked) < self._wait_replicas:
            raise _not_replicated(
                f"Not replicated: the stored outbox of subject={subject} reached {acked} of "
                f"{self._wait_replicas} replica(s) within {self._wait_timeout_ms} ms "
                "(ORCH_REDIS_WAIT_REPLICAS); its events are not re-published yet"
            )

    def _new_lock(self, subject: str) -> LeaseLock:
        require_subject(subject, "lock")
        # strict=False: the library's isinstance check knows only redis.Redis, not RedisCluster.
        return LeaseLock(self._client, self.keys.lock_name(subject), expire=self._lock_expire_s, strict=False)

    def _hold(self, subject: str, lock: LeaseLock) -> Lease:
        """Renew an acquired lock (with auto-renewal) until :meth:`unlock`; its lease."""
        if self._keeper is not None:
            self._keeper.add(lock)
        return Lease(subject, lock.id)

    def unlock(self, lease: Lease, settle: str | None = None, history: HistoryEntry | None = None) -> bool:
        """Release ``lease`` (settle ``settle``'s outbox, append ``history``) in one round trip; never raises.

        A lease taken by another instance (another process) is released by its token, the
        same atomic check-and-delete. The renewal thread is always stopped.
        """
        if self._keeper is not None:
            self._keeper.discard(lease.token)
        if not lease.subject:
            return False
        if getattr(self._fused, "released", None) == lease.token:  # the fused write released it
            self._fused.released = None
            return True
        subject = lease.subject
        script_keys = self.keys.release_lock_keys(subject)
        entry = pack(history.to_dict()) if history is not None else b""
        args: list[bytes | str | int] = [lease.token, SIGNAL_EXPIRE_MS, settle or "", entry, self.history_limit]
        try:
            code = self._release_script(keys=script_keys, args=args)
        except Exception:  # unlock must never raise; the lease expires on its own anyway
            logger.warning("Could not release the lock of subject=%s", lease.subject, exc_info=True)
            return False
        return bool(code == 0)

    def read(self, subject: str, event_id: str | None = None) -> ReadResult:
        """Read record, version, consumed flag and pending outbox in one round trip."""
        require_subject(subject, "read")
        pipe = self._client.pipeline(transaction=False)
        self._queue_read(pipe, subject, event_id)
        try:
            replies = pipe.execute()
        except STATE_ERRORS as exc:
            raise TransactionViolation(
                TransactionCause.READ_FAILURE, f"Cannot read subject={subject}: {exc}"
            ) from exc
        return self._read_result(subject, event_id, replies)

    def _queue_read(self, pipe: Any, subject: str, event_id: str | None) -> None:
        pipe.hmget(self.keys.record(subject), ["version", "blob"])
        if event_id is not None:
            pipe.sismember(self.keys.consumed(subject), event_id)
            pipe.hget(self.keys.outbox(subject), event_id)

    @staticmethod
    def _read_result(subject: str, event_id: str | None, replies: list[Any]) -> ReadResult:
        version_raw, blob = replies[0]
        consumed = bool(replies[1]) if event_id is not None else False
        pending_blob = replies[2] if consumed else None
        try:
            record = unpack(blob) if blob is not None else None
            pending = unpack(pending_blob) if pending_blob is not None else None
            version = int(version_raw) if version_raw is not None else 0
        except Exception as exc:
            raise TransactionViolation(
                TransactionCause.READ_FAILURE, f"Stored data of subject={subject} is unreadable: {exc}"
            ) from exc
        return ReadResult(record=record, version=version, consumed=consumed, pending=pending)

    def write(
        self,
        subject: str,
        record: dict[str, Any],
        *,
        prev_version: int,
        lease: Lease | None,
        event_id: str | None = None,
        outbox: list[dict[str, Any]] | None = None,
        expire_after_s: int | None = None,
        timers: TimerChanges | None = None,
        history: HistoryEntry | None = None,
        index: IndexFields | None = None,
    ) -> int:
        """Compare-and-set the record, fenced by ``lease``, with consumed id, outbox, timers, expiry.

        The history entry and the index row go in the same script (see write_record.lua).

        Raises:
            TransactionViolation: ``WRITE_CONFLICT`` when the lease lost the lock or the
                version moved; ``WRITE_FAILURE`` when Redis cannot be reached.
            TypeError: ``record`` or ``outbox`` holds values msgpack cannot encode.
        """
        require_subject(subject, "write")
        require_record(record)
        tail = None
        if self._render is not None and lease is not None and event_id is not None:
            commands = self._render(outbox or [])
            if commands is not None:
                tail = self._fused_tail(subject, lease, event_id, outbox, commands)
        script_keys, args = self._write_call(
            subject, record, prev_version, lease, event_id, None if tail is not None else outbox, expire_after_s,
            timers, history, index,
        )
        try:
            if tail is not None:
                code, value = self._fused_script(keys=script_keys, args=[*args, tail])
                acked = 0
            elif self._wait_replicas:
                code, value, acked = self._write_and_wait(script_keys, args)
            else:
                code, value = self._write_script(keys=script_keys, args=args)
                acked = 0
        except STATE_ERRORS as exc:
            raise TransactionViolation(
                TransactionCause.WRITE_FAILURE, f"Cannot write subject={subject}: {exc}"
            ) from exc
        if code > 0 and acked < self._wait_replicas:
            raise _not_replicated(
                f"Not replicated: the write of subject={subject} (version {value}) reached {acked} of "
                f"{self._wait_replicas} replica(s) within {self._wait_timeout_ms} ms (ORCH_REDIS_WAIT_REPLICAS); "
                "it is applied on the master, and its events are published only once the replicas have it"
            )
        if code == -1:
            raise TransactionViolation(
                TransactionCause.WRITE_CONFLICT,
                f"Lock lost before write for subject={subject}: the lease expired or a newer holder owns it",
            )
        if code == -2:
            raise TransactionViolation(
                TransactionCause.WRITE_CONFLICT,
                f"Record version moved for subject={subject}: expected {prev_version}, found {value}",
            )
        if code == -3:
            raise TransactionViolation(
                TransactionCause.WRITE_FAILURE,
                f"The write of subject={subject} (version {value}) could not publish its events in the same call "
                "(see the Redis log); they are kept in its outbox and published when the event is retried",
            )
        if tail is not None and lease is not None:
            self._fused.released = lease.token
            self._fused.event_id = event_id
            if self._keeper is not None:
                self._keeper.discard(lease.token)
        return int(value)

    def _fused_tail(
        self, subject: str, lease: Lease, event_id: str, outbox: list[dict[str, Any]] | None, commands: list[list[bytes | str]]
    ) -> bytes:
        """The last argument of the fused script (publish_and_release.lua documents it)."""
        tail = [
            commands,
            self.keys.lock_key(subject),
            self.keys.lock_signal(subject),
            SIGNAL_EXPIRE_MS,
            self.keys.outbox(subject),
            event_id,
            pack(outbox or []),
        ]
        # Without msgpack's bin type: Redis's Lua cmsgpack reads binary values only as strings.
        return msgpack.packb(tail, use_bin_type=False)  # type: ignore[no-any-return]

    def queue_write(
        self,
        pipe: Any,
        subject: str,
        record: dict[str, Any],
        *,
        prev_version: int,
        expire_after_s: int | None = None,
        history: HistoryEntry | None = None,
        index: IndexFields | None = None,
    ) -> None:
        """Queue an unfenced :meth:`write` on ``pipe`` (bulk loading: benchmarks, migrations).

        The same script as a step's write, so the loaded data is what steps would have written;
        its ``[code, version]`` reply comes back from ``pipe.execute()``. A plain ``EVALSHA``
        command, since a cluster pipeline refuses redis-py's script helpers: the script is
        loaded (on every primary of a cluster) before the first one is queued.
        """
        script_keys, args = self._write_call(
            subject, record, prev_version, None, None, None, expire_after_s, None, history, index
        )
        if not self._write_loaded:
            self._client.script_load(self._write_script.script)
            self._write_loaded = True
        pipe.execute_command("EVALSHA", self._write_script.sha, len(script_keys), *script_keys, *args)

    def _write_call(
        self,
        subject: str,
        record: dict[str, Any],
        prev_version: int,
        lease: Lease | None,
        event_id: str | None,
        outbox: list[dict[str, Any]] | None,
        expire_after_s: int | None,
        timers: TimerChanges | None,
        history: HistoryEntry | None,
        index: IndexFields | None,
    ) -> tuple[list[str], list[bytes | str | int]]:
        """KEYS and ARGV of write_record.lua (its header documents them)."""
        args: list[bytes | str | int] = [
            lease.token if lease is not None else "",
            int(prev_version),
            pack(record),
            event_id if event_id is not None else "",
            pack(outbox) if outbox and event_id is not None else b"",
            int(expire_after_s) if expire_after_s is not None else "",
            _pack_timers(timers) if timers else b"",
            keys.timer_member(subject, ""),
            pack(history.to_dict()) if history is not None else b"",
            self.history_limit,
            *_index_args(self.keys, subject, index),
        ]
        space, shard = self.keys, self.keys.shard_of(subject)
        every = space.index_all(shard)
        script_keys = [
            space.record(subject),
            space.consumed(subject),
            space.outbox(subject),
            space.lock_key(subject),
            space.timers(subject),
            space.timer_index(shard),
            space.history(subject),
            space.summary(subject),
            every,
            space.index_status(shard, index.status if index is not None else "running"),
            space.index_orchestrator(shard, index.orchestrator if index is not None else "-"),
            space.index_orchestrator(shard, index.orchestrator, index.version) if index is not None else every,
            space.index_expiring(shard),
            space.index_parent(shard, index.parent_subject) if index is not None and index.parent_subject else every,
            *space.index_statuses(shard),
        ]
        return script_keys, args

    def _write_and_wait(self, script_keys: list[str], args: list[bytes | str | int]) -> tuple[int, int, int]:
        """``EVALSHA write_record`` then ``WAIT``, in one pipeline: ``(code, value, replicas)``.

        A plain ``EVALSHA`` rather than the registered script's pipeline support, which would ask
        ``SCRIPT EXISTS`` first (a round trip per write). A server that lost its scripts (a
        restart, a newly promoted replica) answers ``NOSCRIPT`` without running anything; the
        script is then loaded and the pipeline sent once more.
        """
        node = node_client(self._client, script_keys[0])
        for attempt in (1, 2):
            pipe = node.pipeline(transaction=False)
            pipe.evalsha(self._write_script.sha, len(script_keys), *script_keys, *args)
            pipe.wait(self._wait_replicas, self._wait_timeout_ms)
            reply, acked = pipe.execute(raise_on_error=False)
            if isinstance(reply, NoScriptError) and attempt == 1:
                node.script_load(self._write_script.script)
                continue
            if isinstance(reply, Exception):
                raise reply
            if isinstance(acked, Exception):
                raise acked
            code, value = reply
            return int(code), int(value), int(acked)
        raise AssertionError("unreachable: the second attempt returns or raises")  # pragma: no cover

    def claim_due_timers(self, now_ms: int, limit: int) -> list[DueTimer]:
        """Claim up to ``limit`` due timers of any workflow, shard by shard (see claim_timers.lua).

        One pipelined read of every shard's due timers and stale claims (on a cluster, one
        request per node), then one script call per shard that has any. Call
        :meth:`release_timers` once their events are published; a claim not released within
        ``timer_reclaim_s`` is handed out again.
        """
        space = self.keys
        pipe = self._client.pipeline(transaction=False)
        for shard in space.all_shards:
            pipe.zrangebyscore(space.timer_index(shard), "-inf", now_ms, start=0, num=limit)
            pipe.zrangebyscore(space.timer_claims(shard), "-inf", now_ms - self._timer_reclaim_ms, start=0, num=limit)
        replies = pipe.execute()
        claimed: list[DueTimer] = []
        for shard in space.all_shards:
            due, stale = replies[2 * shard], replies[2 * shard + 1]
            candidates = list(dict.fromkeys(member.decode() for member in (*stale, *due)))[: limit - len(claimed)]
            if not candidates:
                continue
            hashes = [space.timers(member.partition(keys.TIMER_MEMBER_SEPARATOR)[0]) for member in candidates]
            reply = self._claim_script(
                keys=[space.timer_index(shard), space.timer_claims(shard), *hashes],
                args=[now_ms, self._timer_reclaim_ms, "", *candidates],
            )
            for member, event in zip(reply[::2], reply[1::2], strict=True):
                subject, _, timer_id = member.decode().partition(keys.TIMER_MEMBER_SEPARATOR)
                claimed.append(DueTimer(subject, timer_id, unpack(event)))
            if len(claimed) >= limit:
                break
        return claimed

    def release_timers(self, fired: list[DueTimer]) -> None:
        """Forget the claims of timers whose events were published (one pipeline)."""
        if not fired:
            return
        by_shard: dict[int, list[str]] = {}
        for timer in fired:
            by_shard.setdefault(self.keys.shard_of(timer.subject), []).append(keys.timer_member(timer.subject, timer.timer_id))
        pipe = self._client.pipeline(transaction=False)
        for shard, members in by_shard.items():
            pipe.zrem(self.keys.timer_claims(shard), *members)
        pipe.execute()

    def next_timer_due_ms(self) -> int | None:
        """When the earliest indexed timer of any shard is due, or None."""
        pipe = self._client.pipeline(transaction=False)
        for shard in self.keys.all_shards:
            pipe.zrange(self.keys.timer_index(shard), 0, 0, withscores=True)
        firsts = [int(first[0][1]) for first in pipe.execute() if first]
        return min(firsts) if firsts else None

    def settle(self, subject: str, event_id: str) -> None:
        """Forget the outbox of ``event_id`` once its events are published."""
        require_subject(subject, "settle")
        try:
            self._client.hdel(self.keys.outbox(subject), event_id)
        except STATE_ERRORS as exc:
            raise TransactionViolation(
                TransactionCause.WRITE_FAILURE, f"Cannot settle outbox of subject={subject}: {exc}"
            ) from exc


def _index_args(space: keys.KeySpace, subject: str, index: IndexFields | None) -> list[str | int]:
    """ARGV[11..20] of write_record.lua: the index row, or "" for no index change."""
    prefix = space.index_status_prefix(space.shard_of(subject))
    if index is None:
        return ["", "", "", "", 0, 0, "", prefix, subject, keys.INDEX_MEMBER_SEPARATOR]
    return [
        "1",
        index.status,
        index.orchestrator,
        index.version,
        index.started_ms,
        index.updated_ms,
        index.parent_subject or "",
        prefix,
        subject,
        keys.INDEX_MEMBER_SEPARATOR,
    ]


def _not_replicated(message: str) -> TransactionViolation:
    """The retryable violation of a write too few replicas acknowledged, logged as a warning:
    replicas that keep falling behind are an operator's problem, and the retry says nothing."""
    logger.warning("%s", message)
    return TransactionViolation(TransactionCause.WRITE_FAILURE, message)


def _pack_timers(changes: TimerChanges) -> bytes:
    """The timer changes as write_record.lua reads them: {cancelled ids, {{id, due, event}}}.

    Without msgpack's bin type: Redis's Lua cmsgpack reads the packed events only as strings.
    """
    changed = [list(changes.cancelled), [[timer.id, timer.due_ms, pack(event)] for timer, event in changes.set]]
    return msgpack.packb(changed, use_bin_type=False)  # type: ignore[no-any-return]
