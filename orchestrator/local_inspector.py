"""LocalInspector: the :class:`~orchestrator.inspection.WorkflowInspector` of the in-process mode.

It reads the memories of a :class:`~orchestrator.broker.LocalBroker`'s orchestrators (their
records, history and search index rows) and steers workflows through the broker: a retry or a
cancel is an event published on it, exactly as the Redis inspector sends one through Celery, and
the broker's :attr:`~orchestrator.broker.LocalBroker.errors` are its dead letters.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from orchestrator.broker import FailedDelivery, LocalBroker
from orchestrator.description import describe
from orchestrator.errors import ViolationError, WorkflowNotFound
from orchestrator.history import retry_event
from orchestrator.inspection import (
    DeadLetterEntry,
    HistoryEntry,
    Page,
    Replayed,
    WorkflowDescription,
    WorkflowFilter,
    WorkflowSummary,
)
from orchestrator.memory.base import MachineMemory, ReadResult
from orchestrator.orchestrator import ArvoOrchestrator
from orchestrator.record import WorkflowRecord
from orchestrator.search import check_limit, matches, newest_first, page
from orchestrator.subject import OrchestrationSubject


@runtime_checkable
class InspectableMemory(MachineMemory, Protocol):
    """A memory that can show its workflows' histories and index rows (the in-memory one does)."""

    def history(self, subject: str, limit: int | None = None) -> list[HistoryEntry] | None:
        """The subject's history, oldest first; None when no record is stored."""
        ...

    def summary(self, subject: str) -> WorkflowSummary | None:
        """The subject's index row, if any."""
        ...

    def summaries(self) -> list[WorkflowSummary]:
        """Every index row of a stored workflow."""
        ...


class LocalInspector:
    """Inspect and steer the workflows of one in-process broker.

    Args:
        broker: the broker whose orchestrators (and their memories) hold the workflows.
    """

    def __init__(self, broker: LocalBroker) -> None:
        self.broker = broker

    # -- reading ---------------------------------------------------------------------------------

    def _orchestrator(self, subject: str) -> ArvoOrchestrator:
        try:
            name = OrchestrationSubject.parse(subject).orchestrator.name
        except ValueError:
            raise WorkflowNotFound(f"'{subject}' is not an orchestration subject") from None
        for orchestrator in self.broker.orchestrators:
            if orchestrator.source == name:
                return orchestrator
        raise WorkflowNotFound(f"no workflow with subject '{subject}': no orchestrator {name} on this broker")

    def _read(self, subject: str) -> tuple[ArvoOrchestrator, WorkflowRecord, ReadResult]:
        orchestrator = self._orchestrator(subject)
        read = orchestrator.memory.read(subject)
        if read.record is None:
            raise WorkflowNotFound(f"no workflow with subject '{subject}' (never started, or expired)")
        return orchestrator, WorkflowRecord.from_dict(read.record), read

    def _memories(self) -> list[InspectableMemory]:
        found: list[InspectableMemory] = []
        for orchestrator in self.broker.orchestrators:
            memory = orchestrator.memory
            if isinstance(memory, InspectableMemory) and all(memory is not seen for seen in found):
                found.append(memory)
        return found

    def describe(self, subject: str) -> WorkflowDescription:
        """The workflow stored under ``subject``. Raises ``WorkflowNotFound``."""
        orchestrator, record, _ = self._read(subject)
        memory = orchestrator.memory
        summary = memory.summary(subject) if isinstance(memory, InspectableMemory) else None
        return describe(record, summary)

    def history(self, subject: str, limit: int | None = None) -> list[HistoryEntry]:
        """Its steps, oldest first (the newest ``limit``). Raises ``WorkflowNotFound``."""
        memory = self._orchestrator(subject).memory
        entries = memory.history(subject, limit) if isinstance(memory, InspectableMemory) else None
        if entries is None:
            raise WorkflowNotFound(f"no workflow with subject '{subject}' (never started, or expired)")
        return entries

    def _matching(self, where: WorkflowFilter) -> list[WorkflowSummary]:
        return newest_first(row for memory in self._memories() for row in memory.summaries() if matches(row, where))

    def list_workflows(self, where: WorkflowFilter, limit: int = 50, cursor: str | None = None) -> Page:
        """Workflows matching ``where``, most recently updated first. Raises ``InvalidFilter``."""
        check_limit(limit)
        return page(self._matching(where), limit, cursor)

    def count(self, where: WorkflowFilter) -> int:
        """How many workflows match ``where``."""
        return len(self._matching(where))

    # -- dead letters ------------------------------------------------------------------------------

    def dead_letters(self, limit: int = 100) -> list[DeadLetterEntry]:
        """The oldest ``limit`` dead letters (violations handlers raised on this broker)."""
        return [_entry(failed) for failed in self.broker.errors[:limit]]

    def dead_letter(self, entry_id: str) -> DeadLetterEntry:
        """One dead letter. Raises ``DeadLetterNotFound``."""
        return _entry(self.broker.dead_letter(entry_id))

    def replay_dead_letter(self, entry_id: str) -> Replayed:
        """Publish the entry's event again and remove the entry (a new failure stores a new one)."""
        failed = self.broker.replay_dead_letter(entry_id)
        return Replayed(entry_id=entry_id, event_id=failed.event.id, destination=failed.event.to or "")

    def purge_dead_letters(self, entry_ids: list[str] | None = None) -> int:
        """Remove the given entries (all when None); how many were removed."""
        return self.broker.purge_dead_letters(entry_ids)

    # -- steering ----------------------------------------------------------------------------------

    def retry(self, subject: str) -> str:
        """Publish the retry of a failed workflow (see :func:`orchestrator.history.retry_event`).

        Returns the retry event's id. Raises ``WorkflowNotFound``, ``WorkflowNotFailed``.
        """
        _, record, read = self._read(subject)
        event = retry_event(record, read.version)
        self.broker.publish(event)
        return event.id

    def cancel(self, subject: str, reason: str) -> None:
        """Cancel a running workflow. Raises ``WorkflowNotFound``, ``WorkflowFinished``."""
        self._orchestrator(subject)
        self.broker.cancel(subject, reason)


def _entry(failed: FailedDelivery) -> DeadLetterEntry:
    error = failed.error
    reason = f"violation:{error.violation_type}" if isinstance(error, ViolationError) else type(error).__name__
    event = failed.event
    return DeadLetterEntry(
        id=failed.id,
        reason=reason,
        error=f"{type(error).__name__}: {error}",
        payload=event.to_json(),
        at_ms=failed.at_ms,
        event_type=event.type,
        subject=event.subject,
        replays=failed.replays,
    )
