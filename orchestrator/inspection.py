"""What an operator sees of workflows: descriptions, histories, search, dead letters.

This module is the contract between the stores and the tools that show them: the in-process
memory (:class:`orchestrator.local_inspector.LocalInspector`) and Redis
(``tasks.store.inspect.RedisInspector``) implement :class:`WorkflowInspector`; the command line
and the dashboard only ever call it, so both work against either store.

Times are epoch milliseconds (integers) everywhere here: they index well (Redis sorted-set
scores), compare without parsing, and every tool formats them for its reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args, runtime_checkable

from orchestrator.errors import InvalidFilter

#: What a workflow is doing, as the search index files it.
#:
#: * ``running``: started, not finished, no timer pending (waiting on a service or an event);
#: * ``waiting``: not finished and at least one timer pending (a delay, a deadline);
#: * ``failed``: user code failed, or an unhandled system error (the record keeps the last good state);
#: * ``done``: a top-level final state was entered;
#: * ``cancelled``: a cancellation was applied.
WorkflowStatus = Literal["running", "waiting", "failed", "done", "cancelled"]

#: Every status, in the order tools list them.
STATUSES: tuple[WorkflowStatus, ...] = get_args(WorkflowStatus)

#: What a step did with its event (:class:`orchestrator.orchestrator.StepOutcome` values).
Outcome = Literal["applied", "duplicate", "ignored", "failed"]

#: Largest page a list call returns.
MAX_PAGE = 1000


@dataclass(frozen=True, slots=True)
class EmittedRef:
    """An event a step emitted, by id and type."""

    id: str
    type: str


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One step of one workflow, appended atomically with the state the step wrote.

    Attributes:
        at_ms: when the step ended.
        event_id, event_type, event_source, event_time: the event consumed (``event_time`` is
            the event's own ISO-8601 ``time``).
        outcome: applied, duplicate, ignored or failed.
        reason: why an event was ignored (``foreign-subject``, ``late-timer``...), else None.
        error_name, error_message: the failure, when ``outcome`` is ``failed``.
        before, after: the machine's active state ids before and after the step (None before
            the first good step).
        emitted: the events the step emitted.
        duration_ms: how long the step ran, lock to write.
        trace_id: the W3C trace id of the step's span, or None when not traced.
    """

    at_ms: int
    event_id: str
    event_type: str
    event_source: str
    event_time: str
    outcome: Outcome
    reason: str | None = None
    error_name: str | None = None
    error_message: str | None = None
    before: tuple[str, ...] | None = None
    after: tuple[str, ...] | None = None
    emitted: tuple[EmittedRef, ...] = ()
    duration_ms: float = 0.0
    trace_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The stored mapping (JSON types only, short keys: an entry is stored per step)."""
        return {
            "at": self.at_ms,
            "id": self.event_id,
            "type": self.event_type,
            "source": self.event_source,
            "time": self.event_time,
            "outcome": self.outcome,
            "reason": self.reason,
            "error": [self.error_name, self.error_message] if self.error_name is not None else None,
            "before": list(self.before) if self.before is not None else None,
            "after": list(self.after) if self.after is not None else None,
            "emitted": [[ref.id, ref.type] for ref in self.emitted],
            "ms": self.duration_ms,
            "trace": self.trace_id,
        }

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> HistoryEntry:
        """Read a stored mapping back (the inverse of :meth:`to_dict`)."""
        error = stored.get("error")
        before = stored.get("before")
        after = stored.get("after")
        return cls(
            at_ms=int(stored["at"]),
            event_id=stored["id"],
            event_type=stored["type"],
            event_source=stored["source"],
            event_time=stored["time"],
            outcome=stored["outcome"],
            reason=stored.get("reason"),
            error_name=error[0] if error else None,
            error_message=error[1] if error else None,
            before=tuple(before) if before is not None else None,
            after=tuple(after) if after is not None else None,
            emitted=tuple(EmittedRef(ref[0], ref[1]) for ref in stored.get("emitted") or ()),
            duration_ms=float(stored.get("ms") or 0.0),
            trace_id=stored.get("trace"),
        )


@dataclass(frozen=True, slots=True)
class WorkflowSummary:
    """One row of a workflow listing: what the search index knows of a workflow."""

    subject: str
    orchestrator: str
    version: str
    status: WorkflowStatus
    started_ms: int
    updated_ms: int
    parent_subject: str | None = None


@dataclass(frozen=True, slots=True)
class PendingCall:
    """A service call awaiting its reply with a deadline."""

    event_id: str
    timer_id: str
    due_ms: int | None


@dataclass(frozen=True, slots=True)
class PendingTimer:
    """A timer of the workflow that has not fired yet."""

    timer_id: str
    event_type: str
    due_ms: int


@dataclass(frozen=True, slots=True)
class ChildWorkflow:
    """A running child workflow started by this one."""

    init_event_id: str
    subject: str
    type: str


@dataclass(frozen=True, slots=True)
class FailureInfo:
    """Why a workflow failed: the error with its stack, when, and the event whose step failed."""

    name: str
    message: str
    stack: str
    at: str | None
    event_id: str | None


@dataclass(frozen=True, slots=True)
class WorkflowDescription:
    """Everything known of one workflow: its summary, state, context and what it waits for."""

    summary: WorkflowSummary
    configuration: tuple[str, ...]
    context: dict[str, Any]
    pending_calls: tuple[PendingCall, ...] = ()
    timers: tuple[PendingTimer, ...] = ()
    children: tuple[ChildWorkflow, ...] = ()
    failure: FailureInfo | None = None
    cancel_reason: str | None = None
    machine_class: str | None = None
    init_event_id: str | None = None


@dataclass(frozen=True, slots=True)
class WorkflowFilter:
    """Which workflows to list or count; every field given must match.

    Raises:
        InvalidFilter: naming the field and the rule, when a value is malformed.
    """

    status: WorkflowStatus | None = None
    orchestrator: str | None = None
    version: str | None = None
    parent_subject: str | None = None
    started_after_ms: int | None = None
    started_before_ms: int | None = None
    updated_after_ms: int | None = None
    updated_before_ms: int | None = None

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in STATUSES:
            raise InvalidFilter("status", f"must be one of {', '.join(STATUSES)}, got {self.status!r}")
        if self.version is not None and self.orchestrator is None:
            raise InvalidFilter("version", "needs orchestrator (a version belongs to one orchestrator)")
        for name in ("orchestrator", "version", "parent_subject"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise InvalidFilter(name, f"must be a non-empty string, got {value!r}")
        for low, high in (
            ("started_after_ms", "started_before_ms"),
            ("updated_after_ms", "updated_before_ms"),
        ):
            for name in (low, high):
                value = getattr(self, name)
                if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                    raise InvalidFilter(name, f"must be a non-negative integer (epoch ms), got {value!r}")
            if (
                getattr(self, low) is not None
                and getattr(self, high) is not None
                and getattr(self, low) > getattr(self, high)
            ):
                raise InvalidFilter(low, f"must not be later than {high}")


@dataclass(frozen=True, slots=True)
class Page:
    """A page of a listing, newest update first; pass ``cursor`` back for the next page."""

    items: tuple[WorkflowSummary, ...]
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class DeadLetterEntry:
    """A dead-lettered message: why, when, and the message itself (an event's JSON, or raw)."""

    id: str
    reason: str
    error: str
    payload: Any
    at_ms: int
    task_id: str | None = None
    event_type: str | None = None
    subject: str | None = None
    replays: int = 0


@dataclass(frozen=True, slots=True)
class Replayed:
    """What a dead-letter replay sent: the event id, and the entry it came from (now removed)."""

    entry_id: str
    event_id: str
    destination: str


@runtime_checkable
class WorkflowInspector(Protocol):
    """Read and steer workflows of one store; the command line and the dashboard use only this."""

    def describe(self, subject: str) -> WorkflowDescription:
        """The workflow stored under ``subject``. Raises ``WorkflowNotFound``."""
        ...

    def history(self, subject: str, limit: int | None = None) -> list[HistoryEntry]:
        """Its steps, oldest first (the newest ``limit`` when given). Raises ``WorkflowNotFound``."""
        ...

    def list_workflows(self, where: WorkflowFilter, limit: int = 50, cursor: str | None = None) -> Page:
        """Workflows matching ``where``, most recently updated first. Raises ``InvalidFilter``."""
        ...

    def count(self, where: WorkflowFilter) -> int:
        """How many workflows match ``where``."""
        ...

    def dead_letters(self, limit: int = 100) -> list[DeadLetterEntry]:
        """The oldest ``limit`` dead letters."""
        ...

    def dead_letter(self, entry_id: str) -> DeadLetterEntry:
        """One dead letter. Raises ``DeadLetterNotFound``."""
        ...

    def replay_dead_letter(self, entry_id: str) -> Replayed:
        """Send the entry's event again and remove the entry (a new failure stores a new one).

        Raises ``DeadLetterNotFound``; ``DecodeError`` when the entry holds no valid event.
        """
        ...

    def purge_dead_letters(self, entry_ids: list[str] | None = None) -> int:
        """Remove the given entries (all when None); how many were removed."""
        ...

    def retry(self, subject: str) -> str:
        """Resume a failed workflow from its last good state by applying its failed event again.

        Returns the id of the event sent. Raises ``WorkflowNotFound``, ``WorkflowNotFailed``.
        """
        ...

    def cancel(self, subject: str, reason: str) -> None:
        """Cancel a running workflow. Raises ``WorkflowNotFound``, ``WorkflowFinished``."""
        ...


__all__ = [
    "MAX_PAGE",
    "STATUSES",
    "ChildWorkflow",
    "DeadLetterEntry",
    "EmittedRef",
    "FailureInfo",
    "HistoryEntry",
    "Outcome",
    "Page",
    "PendingCall",
    "PendingTimer",
    "Replayed",
    "WorkflowDescription",
    "WorkflowFilter",
    "WorkflowInspector",
    "WorkflowStatus",
    "WorkflowSummary",
]
