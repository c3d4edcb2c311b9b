"""The persisted workflow record: one typed, versioned structure, built and read only here.

A record is what a machine memory stores for one subject between two steps: the machine's
snapshot and status, where the workflow came from (init event, parent subject), the events of
the last step, and, once user code failed, the error. The memory stores it as a plain mapping
(:meth:`WorkflowRecord.to_dict`, msgpack in Redis) and never interprets it: whether a workflow
is finished, and so how long its keys live, is decided here (:attr:`WorkflowRecord.finished`)
and handed to the memory as an expiry.

The mapping uses Arvo's camelCase names (``executionStatus``, ``initEventId``,
``parentSubject``...) so a stored record reads like arvo-event-handler's. ``schemaVersion``
says which layout it is; :meth:`WorkflowRecord.from_dict` refuses a layout it does not know
instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from orchestrator.errors import TransactionCause, TransactionViolation

#: Version of the record layout written by this code (2 adds timers, calls, children, cancel).
SCHEMA_VERSION = 2

#: Layouts this code reads: version 1 records are read with no timers, calls or children.
READABLE_VERSIONS = frozenset({1, 2})

#: ``executionStatus`` values: ``normal`` while user code succeeds, ``failure`` once it failed.
ExecutionStatus = Literal["normal", "failure"]

#: Machine status of a workflow whose top-level final state was entered.
DONE_STATUS = "done"

#: Status of a workflow that was cancelled (it applies no further event).
CANCELLED_STATUS = "cancelled"


@dataclass(frozen=True, slots=True)
class MachineRef:
    """Which machine class (and contract version) produced a record."""

    name: str
    version: str
    qualname: str


@dataclass(frozen=True, slots=True)
class RecordedError:
    """The error that failed a workflow, as Arvo reports it (name, message, stack)."""

    name: str
    message: str
    stack: str


@dataclass(frozen=True, slots=True)
class WorkflowRecord:
    """One subject's stored state.

    Attributes:
        subject: the orchestration subject.
        init_event_id: id of the event that started the workflow (completion's ``parentid``).
        parent_subject: subject of the parent workflow, None for a root workflow.
        status: the machine's status (``active``, ``done``...), None before the first good step.
        value: the machine's active configuration (state ids), None before the first good step.
        state: the machine snapshot the engine resumes from, None before the first good step.
        consumed: the event the last step consumed (flat JSON).
        produced: the events the last step produced (flat JSON).
        machine: the machine that wrote the last good state, None before the first good step.
        execution_status: ``failure`` once user code failed (the state is then the last good one).
        error: the failure, when ``execution_status`` is ``failure``.
        failed_at: ISO-8601 UTC time of the failure.
        failed_event_id: id of the event whose step failed.
        timers: pending timers by id (:class:`orchestrator.timers.Timer` mappings).
        calls: service calls with a pending deadline: call event id -> deadline timer id.
        expired_calls: ids of calls whose deadline fired (a late reply is ignored).
        children: running child workflows: child init event id -> ``{"subject", "type"}``.
        cancel: ``{"reason", "at"}`` once a cancellation was applied.
    """

    subject: str
    init_event_id: str | None
    parent_subject: str | None
    status: str | None
    value: Any
    state: dict[str, Any] | None
    consumed: dict[str, Any]
    produced: list[dict[str, Any]]
    machine: MachineRef | None
    execution_status: ExecutionStatus = "normal"
    error: RecordedError | None = None
    failed_at: str | None = None
    failed_event_id: str | None = None
    timers: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: dict[str, str] = field(default_factory=dict)
    expired_calls: tuple[str, ...] = ()
    children: dict[str, dict[str, str]] = field(default_factory=dict)
    cancel: dict[str, Any] | None = None

    @property
    def failed(self) -> bool:
        """User code failed: the workflow applies no further event."""
        return self.execution_status == "failure"

    @property
    def cancelled(self) -> bool:
        """The workflow was cancelled and has ended."""
        return self.status == CANCELLED_STATUS

    @property
    def finished(self) -> bool:
        """Done, failed or cancelled: nothing will change the record again, so its keys may expire."""
        return self.failed or self.status in (DONE_STATUS, CANCELLED_STATUS)

    def to_dict(self) -> dict[str, Any]:
        """The stored mapping (JSON types only)."""
        stored: dict[str, Any] = {
            "schemaVersion": SCHEMA_VERSION,
            "executionStatus": self.execution_status,
            "initEventId": self.init_event_id,
            "subject": self.subject,
            "parentSubject": self.parent_subject,
            "status": self.status,
            "value": self.value,
            "state": self.state,
            "events": {"consumed": self.consumed, "produced": self.produced},
            "machine": (
                {"name": self.machine.name, "version": self.machine.version, "class": self.machine.qualname}
                if self.machine is not None
                else None
            ),
            "error": (
                {"name": self.error.name, "message": self.error.message, "stack": self.error.stack}
                if self.error is not None
                else None
            ),
        }
        if self.failed:
            stored["failedAt"] = self.failed_at
            stored["failedEventId"] = self.failed_event_id
        stored["timers"] = self.timers
        stored["calls"] = self.calls
        stored["expiredCalls"] = list(self.expired_calls)
        stored["children"] = self.children
        stored["cancel"] = self.cancel
        return stored

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> WorkflowRecord:
        """Read a stored mapping back.

        Raises:
            TransactionViolation: ``READ_FAILURE`` when the layout is unknown or a field is
                missing or of the wrong type (the stored data is unreadable, not the event bad).
        """
        version = stored.get("schemaVersion")
        if version not in READABLE_VERSIONS:
            raise TransactionViolation(
                TransactionCause.READ_FAILURE,
                f"Stored record of subject={stored.get('subject')!r} has schemaVersion={version!r}; "
                f"this code reads schemaVersion {sorted(READABLE_VERSIONS)} only",
            )
        try:
            events = stored["events"]
            machine = stored["machine"]
            error = stored["error"]
            return cls(
                subject=stored["subject"],
                init_event_id=stored["initEventId"],
                parent_subject=stored["parentSubject"],
                status=stored["status"],
                value=stored["value"],
                state=stored["state"],
                consumed=events["consumed"],
                produced=events["produced"],
                machine=MachineRef(machine["name"], machine["version"], machine["class"]) if machine else None,
                execution_status=stored["executionStatus"],
                error=RecordedError(error["name"], error["message"], error["stack"]) if error else None,
                failed_at=stored.get("failedAt"),
                failed_event_id=stored.get("failedEventId"),
                timers=dict(stored.get("timers") or {}),
                calls=dict(stored.get("calls") or {}),
                expired_calls=tuple(stored.get("expiredCalls") or ()),
                children=dict(stored.get("children") or {}),
                cancel=stored.get("cancel"),
            )
        except (KeyError, TypeError) as missing:
            raise TransactionViolation(
                TransactionCause.READ_FAILURE,
                f"Stored record of subject={stored.get('subject')!r} is malformed: field {missing} "
                "is missing or of the wrong type",
            ) from None
