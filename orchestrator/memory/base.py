"""The :class:`MachineMemory` port: versioned records, fenced leases, consumed ids, outbox.

Arvo's ``IMachineMemory`` (spec 6.1) has read / write(prev) / lock / unlock and leaves
compare-and-set optional. Here it is mandatory, because at-least-once delivery makes every
weakness of spec 10.1-10.4 and 10.7 a real lost or doubled update:

* ``read`` returns the record together with its **version** and whether the event being
  processed was **already consumed** by this subject (idempotency, 10.7);
* ``write`` is a compare-and-set on that version, **fenced** by the lease: a writer whose lock
  expired (and was taken by someone else) is refused, whatever the version says (10.3);
* ``write`` also records the consumed event id and the step's **outbox** (the events to
  publish), atomically with the state; ``settle`` clears the outbox once they are published, and
  a redelivered event whose outbox is still there gets it back from ``read`` to publish again;
* ``write`` appends the step's **history entry** and stores the workflow's **search index row**
  in the same atomic call, and ``unlock`` appends the entry of a step that wrote no state (a
  duplicate, an ignored event): history costs no extra call. The core builds both
  (:mod:`orchestrator.history`); the memory stores them without interpreting the record.

Implementations raise :class:`~orchestrator.errors.TransactionViolation` for conflicts
(``WRITE_CONFLICT``) and infrastructure failures are left to the caller to map.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from orchestrator.errors import InvalidRecord, InvalidSubject
from orchestrator.history import IndexFields
from orchestrator.inspection import HistoryEntry
from orchestrator.timers import TimerChanges


def require_subject(subject: str, operation: str) -> None:
    """Refuse an empty subject with Arvo's message (spec 9 #102), for every implementation."""
    if not subject:
        raise InvalidSubject(f"Machine ID is required for {operation} operation")


def require_record(record: dict[str, Any] | None) -> None:
    """Refuse to write no record, with Arvo's message, for every implementation."""
    if record is None:
        raise InvalidRecord("Data is required for write operation")


@dataclass(frozen=True, slots=True)
class Lease:
    """Proof of holding the per-subject lock; ``token`` is unique per acquisition."""

    subject: str
    token: str


@dataclass(frozen=True, slots=True)
class ReadResult:
    """What ``read`` found for a subject.

    Attributes:
        record: the stored record (a private copy), or None when nothing is stored.
        version: the record version; 0 when nothing is stored. Pass it back to ``write``.
        consumed: the event id given to ``read`` has already been applied to this subject.
        pending: when ``consumed``, the outbox of that event if it was never settled
            (events produced but maybe not published); otherwise None.
    """

    record: dict[str, Any] | None
    version: int
    consumed: bool = False
    pending: list[dict[str, Any]] | None = field(default=None)


@runtime_checkable
class MachineMemory(Protocol):
    """Storage and locking for orchestrator state, keyed by the event subject."""

    def lock(self, subject: str) -> Lease | None:
        """Try once to take the subject's lock; None when someone else holds it.

        Never waits: contention is answered by retrying the event later (spec 10.2).
        The lock must expire on its own so that a crashed holder cannot block a workflow.
        """
        ...

    def unlock(self, lease: Lease, settle: str | None = None, history: HistoryEntry | None = None) -> bool:
        """Release the lock if ``lease`` still owns it; False otherwise (never raises).

        With ``settle``, also forget that event's outbox, in the same call: the caller
        published the step's events while it held the lock. With ``history``, append that
        entry to the subject's history (capped, expiring with the record) if the lease still
        owned the lock: the entry of a step that wrote no state.
        """
        ...

    def read(self, subject: str, event_id: str | None = None) -> ReadResult:
        """Read the record, its version and (given ``event_id``) whether it was consumed."""
        ...

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
        """Store ``record`` if the stored version is still ``prev_version``; return the new one.

        Also marks ``event_id`` consumed and stores ``outbox`` under it, atomically with the
        record, and applies ``timers`` to the timer index (timers set are indexed by due time
        with their events, cancelled ones dropped). With ``expire_after_s`` the subject's
        record, consumed ids and outbox are forgotten that many seconds later (the caller
        decided the workflow is finished); without it they are kept until a later write says
        otherwise. ``history`` is appended to the subject's history (the oldest entries beyond
        the memory's cap dropped) and ``index`` replaces the subject's search index row (its
        ``started_ms`` kept from the first write), both atomically with the record and expiring
        with it. Raises ``TransactionViolation(WRITE_CONFLICT)`` when the version moved or
        when ``lease`` no longer holds the lock.
        """
        ...

    def settle(self, subject: str, event_id: str) -> None:
        """Forget the outbox of ``event_id``: its events have been published."""
        ...


@runtime_checkable
class LockAndReadMemory(MachineMemory, Protocol):
    """A memory that can take the lock and read in one call, cheaper than the two.

    The orchestrator starts every step with lock then read; when its memory is one of these
    (Redis: one round trip instead of two) it calls :meth:`lock_and_read` instead.
    """

    def lock_and_read(self, subject: str, event_id: str | None = None) -> tuple[Lease, ReadResult] | None:
        """:meth:`lock`, then (only if the lock was taken) :meth:`read`, as one operation.

        Returns None when another holder has the lock. Raises ``TransactionViolation``:
        ``LOCK_FAILURE`` when the store cannot be reached (whether the lock was taken is then
        unknown: it expires on its own), ``READ_FAILURE`` when the stored data is unreadable
        (the lock is released first).
        """
        ...


@dataclass(frozen=True, slots=True)
class DueTimer:
    """A timer claimed for firing: its subject, its id and the event to publish."""

    subject: str
    timer_id: str
    event: dict[str, Any]


@runtime_checkable
class TimerIndex(Protocol):
    """The timers of every workflow of a memory, by due time, claimed by whoever fires them."""

    def claim_due_timers(self, now_ms: int, limit: int) -> list[DueTimer]:
        """Take up to ``limit`` timers due at ``now_ms`` out of the index, earliest first.

        A claimed timer is not handed out again (unless its firing is abandoned: see the
        implementation); firing it twice is harmless anyway, its event id being fixed.
        """
        ...

    def next_timer_due_ms(self) -> int | None:
        """When the earliest pending timer is due, or None when none is pending."""
        ...
