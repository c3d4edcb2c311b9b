"""A stored workflow record as an operator reads it: :class:`~orchestrator.inspection.WorkflowDescription`.

Every store describes a workflow from the same two things, its decoded
:class:`~orchestrator.record.WorkflowRecord` and its search index row, so the description is
built here once and the in-process and Redis inspectors cannot disagree.
"""

from __future__ import annotations

from typing import Any

from orchestrator.history import configuration_of, index_fields
from orchestrator.inspection import (
    ChildWorkflow,
    FailureInfo,
    PendingCall,
    PendingTimer,
    WorkflowDescription,
    WorkflowSummary,
)
from orchestrator.record import WorkflowRecord
from orchestrator.subject import OrchestrationSubject


def summary_of(record: WorkflowRecord, updated_ms: int = 0) -> WorkflowSummary:
    """An index row rebuilt from the record, for a record stored without one (before indexing)."""
    orchestrator = OrchestrationSubject.parse(record.subject).orchestrator
    return index_fields(record, orchestrator.name, orchestrator.version, updated_ms).summary(record.subject)


def describe(record: WorkflowRecord, summary: WorkflowSummary | None) -> WorkflowDescription:
    """What an operator sees of ``record``: state, context, what it waits for, why it failed."""
    timers = record.timers
    state: dict[str, Any] = record.state or {}
    error = record.error
    return WorkflowDescription(
        summary=summary if summary is not None else summary_of(record),
        configuration=configuration_of(record) or (),
        context=dict(state.get("context") or {}),
        pending_calls=tuple(
            PendingCall(call_id, timer_id, _due(timers.get(timer_id))) for call_id, timer_id in record.calls.items()
        ),
        timers=tuple(
            PendingTimer(timer_id, str(timer["event"]), int(timer["due"]))
            for timer_id, timer in sorted(timers.items(), key=lambda item: (int(item[1]["due"]), item[0]))
        ),
        children=tuple(
            ChildWorkflow(init_id, child["subject"], child["type"]) for init_id, child in record.children.items()
        ),
        failure=(
            FailureInfo(error.name, error.message, error.stack, record.failed_at, record.failed_event_id)
            if error is not None
            else None
        ),
        cancel_reason=record.cancel.get("reason") if record.cancel else None,
        machine_class=record.machine.qualname if record.machine is not None else None,
        init_event_id=record.init_event_id,
    )


def _due(timer: dict[str, Any] | None) -> int | None:
    return int(timer["due"]) if timer is not None else None
