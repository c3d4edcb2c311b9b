"""What a step tells the memory besides the state: its history entry and the search index fields.

Both are decided here, in the core, from the step and the :class:`~orchestrator.record.WorkflowRecord`
it writes, and handed to the memory as plain values: the memory stores them atomically with the
state (Redis: in the same script) and never re-derives a domain rule (is the workflow failed,
done, waiting on a timer?) from the record it stores.

The module also owns the deterministic id of a **retry** event (see :func:`retry_event_id`), since
the orchestrator and every inspector must compute the same one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.errors import WorkflowNotFailed
from orchestrator.event import ArvoEvent
from orchestrator.inspection import EmittedRef, HistoryEntry, Outcome, WorkflowStatus, WorkflowSummary
from orchestrator.record import DONE_STATUS, WorkflowRecord

#: Namespace of retry event ids (uuid5 of the failed event id and the failed record's version).
RETRY_ID_NAMESPACE = uuid.UUID("0b7e4b7e-93a4-4a57-8f5e-5b1b0d7c2f16")

#: How many history entries a workflow keeps by default (the oldest are dropped).
DEFAULT_HISTORY_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class IndexFields:
    """One workflow's row in the search index, as the step that writes its state decides it.

    Attributes:
        status: what the workflow is doing (:data:`~orchestrator.inspection.STATUSES`).
        orchestrator: the orchestrator's name (``arvo.orc.<name>``).
        version: the machine (contract) version running it.
        started_ms: the step's time; a memory keeps the first value it stores for a workflow,
            which is when the workflow started (a later step cannot know it without a read).
        updated_ms: the step's time (the orchestrator's clock).
        parent_subject: the parent workflow's subject, None for a root workflow.
    """

    status: WorkflowStatus
    orchestrator: str
    version: str
    started_ms: int
    updated_ms: int
    parent_subject: str | None = None

    def summary(self, subject: str, started_ms: int | None = None) -> WorkflowSummary:
        """The listing row for ``subject``, with the stored start time when there is one."""
        return WorkflowSummary(
            subject=subject,
            orchestrator=self.orchestrator,
            version=self.version,
            status=self.status,
            started_ms=self.started_ms if started_ms is None else started_ms,
            updated_ms=self.updated_ms,
            parent_subject=self.parent_subject,
        )


def workflow_status(record: WorkflowRecord) -> WorkflowStatus:
    """The index status of a record: failed, cancelled, done, waiting (a timer pending), running."""
    if record.failed:
        return "failed"
    if record.cancelled:
        return "cancelled"
    if record.status == DONE_STATUS:
        return "done"
    return "waiting" if record.timers else "running"


def index_fields(record: WorkflowRecord, orchestrator: str, version: str, now_ms: int) -> IndexFields:
    """The index row a write of ``record`` stores (the machine's version once one ran)."""
    return IndexFields(
        status=workflow_status(record),
        orchestrator=orchestrator,
        version=record.machine.version if record.machine is not None else version,
        started_ms=now_ms,
        updated_ms=now_ms,
        parent_subject=record.parent_subject,
    )


def configuration_of(record: Mapping[str, Any] | WorkflowRecord | None) -> tuple[str, ...] | None:
    """The active state ids of a record (stored mapping or decoded), None before a good step."""
    if record is None:
        return None
    value = record.value if isinstance(record, WorkflowRecord) else record.get("value")
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    return tuple(str(state) for state in value)


def emitted_refs(produced: Iterable[Mapping[str, Any]]) -> tuple[EmittedRef, ...]:
    """The id and type of each emitted event (flat JSON, as the record keeps them)."""
    return tuple(EmittedRef(str(event["id"]), str(event["type"])) for event in produced)


@dataclass(slots=True)
class StepLog:
    """Times and the state before one step, from the lock on; builds the step's history entry.

    Attributes:
        event: the event the step consumes.
        clock: the orchestrator's clock (epoch seconds): the entry's end time.
        trace_id: the step span's W3C trace id, None when not traced.
        started: ``time.perf_counter()`` when the lock was asked for.
        before: the configuration the step started from (set once the record is read).
    """

    event: ArvoEvent
    clock: Callable[[], float]
    trace_id: str | None = None
    started: float = field(default_factory=time.perf_counter)
    before: tuple[str, ...] | None = None

    def now_ms(self) -> int:
        """The orchestrator's clock, epoch milliseconds."""
        return int(self.clock() * 1000)

    def entry(
        self,
        outcome: Outcome,
        *,
        after: tuple[str, ...] | None = None,
        emitted: tuple[EmittedRef, ...] = (),
        reason: str | None = None,
        error: BaseException | None = None,
        now_ms: int | None = None,
    ) -> HistoryEntry:
        """The history entry of the step, ending now."""
        event = self.event
        return HistoryEntry(
            at_ms=self.now_ms() if now_ms is None else now_ms,
            event_id=event.id,
            event_type=event.type,
            event_source=event.source,
            event_time=event.time,
            outcome=outcome,
            reason=reason,
            error_name=type(error).__name__ if error is not None else None,
            error_message=str(error) if error is not None else None,
            before=self.before,
            after=after,
            emitted=emitted,
            duration_ms=round((time.perf_counter() - self.started) * 1000, 3),
            trace_id=self.trace_id,
        )


def retry_event_id(failed_event_id: str, failed_version: int) -> str:
    """The id of the event that retries a failure: the same for every retry of that failure.

    Derived from the failed event's id and the version of the record that stored the failure,
    so asking twice for one retry sends one event (the second is a duplicate of the first,
    consumed once), while a retry that fails again stores a new version and so gets a new id.
    """
    return str(uuid.uuid5(RETRY_ID_NAMESPACE, f"{failed_event_id}|{failed_version}"))


def retry_event(record: WorkflowRecord, version: int) -> ArvoEvent:
    """The event that retries the failed ``record`` (stored at ``version``).

    The failed event again (``record.consumed``: same type, data, subject and routing) under
    :func:`retry_event_id`. Publishing it is the whole retry: the orchestrator recognises the
    id and applies the event to the last good state, clearing the failure in the step's own
    write (lease- and version-checked, atomic with the consumed id). That is exactly once: a
    retry sent twice is one event id, consumed once; a retry that fails again stores a new
    version, so the next retry is a new id. Clearing the failure in a separate write first
    would leave a workflow neither failed nor resumed if the sender died in between.

    Raises:
        WorkflowNotFailed: the record is not failed (running, done or cancelled).
    """
    if not record.failed or record.failed_event_id is None:
        state = "cancelled" if record.cancelled else record.status or "not started"
        raise WorkflowNotFailed(f"workflow '{record.subject}' is not failed ({state}): nothing to retry")
    failed = ArvoEvent.model_validate(record.consumed)
    return failed.model_copy(update={"id": retry_event_id(record.failed_event_id, version)})


def is_retry(event: ArvoEvent, record: WorkflowRecord | None, version: int) -> bool:
    """``event`` is the retry of ``record``'s failure (it may then be applied to the last good state)."""
    return (
        record is not None
        and record.failed
        and record.failed_event_id is not None
        and event.id == retry_event_id(record.failed_event_id, version)
    )
