"""In-process :class:`~orchestrator.memory.base.MachineMemory` for the embedded mode and tests.

Unlike Arvo's ``SimpleMachineMemory`` (spec 6.2, 10.3, 10.4) it copies on read and on write (a
caller can never alias stored state), honours compare-and-set, gives locks an owner token and a
time to live, and fences writes by the lease. State is per instance, never on the class.

Records and outboxes are stored msgpack-encoded, exactly as the Redis memory stores them: that is
the copy (several times cheaper than ``copy.deepcopy``), and it refuses anything that is not
plain JSON-like data, so a record that works in process also works in Redis.
"""

from __future__ import annotations

import heapq
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

import msgpack

from orchestrator.errors import TransactionCause, TransactionViolation
from orchestrator.history import DEFAULT_HISTORY_LIMIT, IndexFields
from orchestrator.inspection import HistoryEntry, WorkflowSummary
from orchestrator.memory.base import DueTimer, Lease, ReadResult, require_record, require_subject
from orchestrator.timers import TimerChanges

#: Default lock time to live, seconds.
DEFAULT_LOCK_TTL = 30.0


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False)


class InMemoryMachineMemory:
    """Thread-safe in-memory machine memory.

    Args:
        lock_ttl: seconds after which an unreleased lock expires.
        clock: monotonic clock, injectable so tests can expire locks without sleeping.
        history_limit: history entries kept per workflow; the oldest are dropped.
    """

    def __init__(
        self,
        lock_ttl: float = DEFAULT_LOCK_TTL,
        clock: Callable[[], float] = time.monotonic,
        history_limit: int = DEFAULT_HISTORY_LIMIT,
    ) -> None:
        if history_limit < 1:
            raise ValueError(f"history_limit must be at least 1, got {history_limit}")
        self._lock_ttl = lock_ttl
        self.history_limit = history_limit
        self._clock = clock
        self._mutex = threading.Lock()
        self._records: dict[str, tuple[int, bytes]] = {}
        self._locks: dict[str, tuple[str, float]] = {}
        self._consumed: dict[str, set[str]] = {}
        self._outbox: dict[tuple[str, str], bytes] = {}
        #: Clock time after which a finished subject is forgotten.
        self._expires: dict[str, float] = {}
        #: The timer index: (subject, timer id) -> (due ms, packed event), and a heap by due time
        #: whose stale entries (cancelled or re-set timers) are skipped when popped.
        self._timers: dict[tuple[str, str], tuple[int, bytes]] = {}
        self._due: list[tuple[int, str, str]] = []
        #: History entries per subject (packed, as Redis stores them), capped at history_limit.
        self._history: dict[str, deque[bytes]] = {}
        #: The search index: one row per subject.
        self._index: dict[str, WorkflowSummary] = {}

    def lock(self, subject: str) -> Lease | None:
        """Take the lock unless a live lease holds it."""
        require_subject(subject, "lock")
        now = self._clock()
        with self._mutex:
            held = self._locks.get(subject)
            if held is not None and held[1] > now:
                return None
            token = uuid.uuid4().hex
            self._locks[subject] = (token, now + self._lock_ttl)
            return Lease(subject, token)

    def unlock(self, lease: Lease, settle: str | None = None, history: HistoryEntry | None = None) -> bool:
        """Release only a lock this lease still owns; settle ``settle``'s outbox regardless.

        ``history`` is appended only while the lease holds the lock (as the write is fenced).
        """
        packed = _pack(history.to_dict()) if history is not None else None
        with self._mutex:
            if settle is not None:
                self._outbox.pop((lease.subject, settle), None)
            held = self._locks.get(lease.subject)
            if held is None or held[0] != lease.token:
                return False
            if packed is not None:
                self._append_history(lease.subject, packed)
            del self._locks[lease.subject]
            return True

    def read(self, subject: str, event_id: str | None = None) -> ReadResult:
        """Return a deep copy of the record, its version and the consumed/pending state."""
        require_subject(subject, "read")
        with self._mutex:
            self._forget_if_expired(subject, self._clock())
            version, record = self._records.get(subject, (0, None))
            consumed = event_id is not None and event_id in self._consumed.get(subject, ())
            pending = self._outbox.get((subject, event_id)) if consumed and event_id else None
            return ReadResult(
                record=_unpack(record) if record is not None else None,
                version=version,
                consumed=consumed,
                pending=_unpack(pending) if pending is not None else None,
            )

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
        """Compare-and-set the record, fenced by ``lease``; consumption, outbox, timers, expiry,
        history entry and index row."""
        require_subject(subject, "write")
        require_record(record)
        blob = _pack(record)
        packed_outbox = _pack(outbox) if outbox else None
        packed_entry = _pack(history.to_dict()) if history is not None else None
        now = self._clock()
        with self._mutex:
            self._forget_if_expired(subject, now)
            if lease is not None:
                held = self._locks.get(subject)
                if held is None or held[0] != lease.token or held[1] <= now:
                    raise TransactionViolation(
                        TransactionCause.WRITE_CONFLICT,
                        f"Lock lost before write for subject={subject}: a newer holder may own it",
                    )
            current = self._records.get(subject, (0, None))[0]
            if current != prev_version:
                raise TransactionViolation(
                    TransactionCause.WRITE_CONFLICT,
                    f"Record version moved for subject={subject}: expected {prev_version}, found {current}",
                )
            new_version = current + 1
            self._records[subject] = (new_version, blob)
            if expire_after_s is not None:
                self._expires[subject] = now + expire_after_s
            else:
                self._expires.pop(subject, None)
            if timers:
                self._index_timers(subject, timers)
            if event_id is not None:
                self._consumed.setdefault(subject, set()).add(event_id)
                if packed_outbox is not None:
                    self._outbox[(subject, event_id)] = packed_outbox
            if packed_entry is not None:
                self._append_history(subject, packed_entry)
            if index is not None:
                stored = self._index.get(subject)
                self._index[subject] = index.summary(subject, stored.started_ms if stored else None)
            return new_version

    def _append_history(self, subject: str, packed: bytes) -> None:
        entries = self._history.get(subject)
        if entries is None:
            entries = self._history[subject] = deque(maxlen=self.history_limit)
        entries.append(packed)

    # -- inspection ------------------------------------------------------------------------------

    def history(self, subject: str, limit: int | None = None) -> list[HistoryEntry] | None:
        """The subject's history, oldest first (the newest ``limit``); None when no record is stored."""
        with self._mutex:
            self._forget_if_expired(subject, self._clock())
            if subject not in self._records:
                return None
            packed = list(self._history.get(subject, ()))
        if limit is not None:
            packed = packed[-limit:] if limit > 0 else []
        return [HistoryEntry.from_dict(_unpack(entry)) for entry in packed]

    def summary(self, subject: str) -> WorkflowSummary | None:
        """The subject's search index row, None when it has none (or it expired)."""
        with self._mutex:
            self._forget_if_expired(subject, self._clock())
            return self._index.get(subject)

    def summaries(self) -> list[WorkflowSummary]:
        """Every index row of workflows still stored (expired ones are forgotten first)."""
        with self._mutex:
            now = self._clock()
            for subject in [s for s, expires in self._expires.items() if expires <= now]:
                self._drop(subject)
            return list(self._index.values())

    def _index_timers(self, subject: str, changes: TimerChanges) -> None:
        for timer_id in changes.cancelled:
            self._timers.pop((subject, timer_id), None)
        for timer, event in changes.set:
            self._timers[(subject, timer.id)] = (timer.due_ms, _pack(event))
            heapq.heappush(self._due, (timer.due_ms, subject, timer.id))

    def claim_due_timers(self, now_ms: int, limit: int) -> list[DueTimer]:
        """Take the timers due at ``now_ms`` (earliest first) out of the index."""
        claimed: list[DueTimer] = []
        with self._mutex:
            while self._due and self._due[0][0] <= now_ms and len(claimed) < limit:
                due, subject, timer_id = heapq.heappop(self._due)
                entry = self._timers.get((subject, timer_id))
                if entry is None or entry[0] != due:
                    continue  # cancelled, or set again for another time
                del self._timers[(subject, timer_id)]
                claimed.append(DueTimer(subject, timer_id, _unpack(entry[1])))
        return claimed

    def next_timer_due_ms(self) -> int | None:
        """When the earliest pending timer is due (None if none)."""
        with self._mutex:
            while self._due:
                due, subject, timer_id = self._due[0]
                entry = self._timers.get((subject, timer_id))
                if entry is not None and entry[0] == due:
                    return due
                heapq.heappop(self._due)
            return None

    def _forget_if_expired(self, subject: str, now: float) -> None:
        """Drop a finished subject whose retention has passed (called with the mutex held)."""
        expires = self._expires.get(subject)
        if expires is not None and expires <= now:
            self._drop(subject)

    def _drop(self, subject: str) -> None:
        self._records.pop(subject, None)
        self._consumed.pop(subject, None)
        self._expires.pop(subject, None)
        self._history.pop(subject, None)
        self._index.pop(subject, None)
        for key in [k for k in self._outbox if k[0] == subject]:
            del self._outbox[key]

    def settle(self, subject: str, event_id: str) -> None:
        """Drop the outbox of a published step."""
        with self._mutex:
            self._outbox.pop((subject, event_id), None)

    def clear(self, subject: str | None = None) -> None:
        """Forget one subject (or everything): records, locks, consumed ids and outboxes."""
        with self._mutex:
            if subject is None:
                self._records.clear()
                self._locks.clear()
                self._consumed.clear()
                self._outbox.clear()
                self._expires.clear()
                self._timers.clear()
                self._due.clear()
                self._history.clear()
                self._index.clear()
                return
            self._locks.pop(subject, None)
            self._drop(subject)
