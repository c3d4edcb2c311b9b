"""ArvoOrchestrator: the pipeline of the founding document, one event at a time (spec section 5).

``process(event)`` validates the subject, ignores events owned by other orchestrators, takes the
subject's lock, reads the record, skips events this subject already consumed, starts or resumes
the machine, builds and validates the emitted events (completion, service calls, child
orchestrations), writes the new record with compare-and-set, and always releases the lock.

Fixes of spec section 10 made here: the lock is always taken (10.1) and contention is a retryable
``TransactionViolation`` (10.2); writes are compare-and-set fenced by the lease (10.3, 10.4);
completion is emitted when the machine *enters* its final state (10.6); consumed event ids make
redelivery a no-op (10.7); a failure keeps the last good state and the error as
name/message/stack, and a failed failure write is retried, not just logged (10.5); an invalid
``parentSubject$$`` on an init event is refused (10.15); system errors follow the completion's
routing (10.13); domains are de-duplicated after resolution (10.12); silent drops are counted
(10.21).
"""

from __future__ import annotations

import logging
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import ValidationError

from orchestrator.contract import parse_dataschema
from orchestrator.emittable import EmittableBuilder, Step
from orchestrator.engine import ExecutionResult, MachineExecutionEngine
from orchestrator.errors import (
    ConfigViolation,
    ContractViolation,
    ExecutionViolation,
    TransactionCause,
    TransactionViolation,
    ViolationError,
)
from orchestrator.event import ArvoEvent
from orchestrator.machine import ArvoMachine
from orchestrator.memory.base import Lease, LockAndReadMemory, MachineMemory, ReadResult
from orchestrator.registry import MachineRegistry
from orchestrator.subject import OrchestrationSubject
from orchestrator.telemetry import TraceHeaders, execution_span

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Version of the persisted record layout.
RECORD_SCHEMA_VERSION = 1


class StepOutcome(StrEnum):
    """What ``process`` did with an event."""

    APPLIED = "applied"  #: the machine ran and its new state was written
    FAILED = "failed"  #: user code failed; system error events and a failure record
    DUPLICATE = "duplicate"  #: this subject already consumed the event id
    IGNORED = "ignored"  #: not for this orchestrator, stray, or the workflow is over


@dataclass(frozen=True, slots=True)
class StepResult:
    """The result of ``process``.

    Attributes:
        events: events to publish. For a duplicate: the step's outbox if it was never settled.
        outcome: see :class:`StepOutcome`.
        reason: why an event was ignored.
    """

    events: list[ArvoEvent]
    outcome: StepOutcome
    reason: str | None = None


class ArvoOrchestrator:
    """Runs statechart machines that share one orchestrator contract, one version each."""

    def __init__(
        self,
        machines: Iterable[type[ArvoMachine]],
        memory: MachineMemory,
        executionunits: float = 0,
        default_domains: Mapping[str, tuple[str | None, ...]] | None = None,
        engine: MachineExecutionEngine | None = None,
    ) -> None:
        self.registry = MachineRegistry(machines)
        self.memory = memory
        #: The same memory when it can lock and read in one call (Redis: one round trip less).
        self._fused = memory if isinstance(memory, LockAndReadMemory) else None
        self.executionunits = executionunits
        self.source = self.registry.source
        self._engine = engine or MachineExecutionEngine()
        latest_contract = self.registry.latest.contract
        assert latest_contract is not None
        self.system_error_type = latest_contract.system_error.type
        self._emit = EmittableBuilder(self.source, executionunits, default_domains, latest_contract)
        #: Counts of ignored events by reason (Arvo drops them with only a log line).
        self.ignored: Counter[str] = Counter()

    # -- public API ---------------------------------------------------------------------------

    def execute(self, event: ArvoEvent) -> list[ArvoEvent]:
        """Process ``event`` and hand its events to the caller (in-process use).

        The events count as published once returned, so the outbox is settled with the unlock.
        A redelivered event returns nothing new.
        """
        result = self.process(event, publish=_handed_over)
        return [] if result.outcome is StepOutcome.DUPLICATE else result.events

    def settle(self, event: ArvoEvent) -> None:
        """Mark the events produced for ``event`` as published (when not done by ``process``)."""
        self.memory.settle(event.subject, event.id)

    def process(
        self, event: ArvoEvent, publish: Callable[[list[ArvoEvent]], object] | None = None
    ) -> StepResult:
        """Run one orchestration step for ``event``.

        Args:
            event: the event to apply.
            publish: called with the step's events (new ones, or for a redelivered event the
                ones never settled) while the subject's lock is still held; when it returns,
                the outbox is settled in the same call that releases the lock. Without it the
                outbox stays until :meth:`settle`, so a crash can never lose the events.

        Raises:
            ExecutionViolation: the subject is not an orchestration subject, bad parentSubject$$.
            ConfigViolation: no machine for the subject's version, event not in any contract.
            ContractViolation: input or emitted data does not satisfy a contract.
            TransactionViolation: lock busy, memory unreachable, or a write conflict (retryable).
            Exception: whatever ``publish`` raised (the outbox is then left unsettled).
        """
        with execution_span(f"Orchestrator<{self.source}>", event, "orchestrator") as span:
            try:
                return self._process(event, span.headers, publish)
            except ViolationError as error:
                span.record_error(error)
                raise

    # -- pipeline -----------------------------------------------------------------------------

    def _ignore(self, reason: str, event: ArvoEvent) -> StepResult:
        self.ignored[reason] += 1
        logger.info("orchestrator %s ignored event %s (%s): %s", self.source, event.id, event.type, reason)
        return StepResult([], StepOutcome.IGNORED, reason)

    def _process(
        self,
        event: ArvoEvent,
        headers: TraceHeaders,
        publish: Callable[[list[ArvoEvent]], object] | None,
    ) -> StepResult:
        try:
            subject = OrchestrationSubject.parse(event.subject)
        except ValueError:
            raise ExecutionViolation(
                f"Invalid event (id={event.id}) subject format. Expected an ArvoOrchestrationSubject but "
                f"received '{event.subject}'. The subject must follow the format specified by "
                "ArvoOrchestrationSubject schema"
            ) from None
        if subject.orchestrator.name != self.source:
            return self._ignore("foreign-subject", event)
        lease, read = self._lock_and_read(event)
        step = Step(event=event, subject=subject, headers=headers, lease=lease, read=read)
        settle: str | None = None
        try:
            result = self._locked_step(step)
            if publish is not None and result.outcome is not StepOutcome.IGNORED:
                if result.events:
                    publish(result.events)
                settle = event.id
            return result
        finally:
            self._unlock(lease, settle)

    def _unlock(self, lease: Lease, settle: str | None) -> None:
        try:
            self.memory.unlock(lease, settle)
        except Exception:  # unlock is best effort; the lease expires on its own
            logger.warning("unlock failed for subject %s", lease.subject, exc_info=True)

    def _transaction(self, cause: TransactionCause, doing: str, event: ArvoEvent, call: Callable[[], T]) -> T:
        """Run a memory call; any failure but a TransactionViolation becomes one (spec 7.3)."""
        try:
            return call()
        except TransactionViolation:
            raise
        except Exception as error:
            raise TransactionViolation(
                cause, f"Error {doing} for event (subject={event.subject}): {error}", {"event_id": event.id}
            ) from error

    def _lock_and_read(self, event: ArvoEvent) -> tuple[Lease, ReadResult]:
        """Take the subject's lock, then read its state (in one call when the memory can)."""
        fused, memory = self._fused, self.memory
        if fused is not None:
            taken = self._transaction(
                TransactionCause.LOCK_FAILURE,
                "acquiring lock",
                event,
                lambda: fused.lock_and_read(event.subject, event.id),
            )
            if taken is None:
                raise self._lock_denied(event)
            return taken
        lease = self._transaction(
            TransactionCause.LOCK_FAILURE, "acquiring lock", event, lambda: memory.lock(event.subject)
        )
        if lease is None:
            raise self._lock_denied(event)
        try:
            read = self._transaction(
                TransactionCause.READ_FAILURE,
                "reading state",
                event,
                lambda: memory.read(event.subject, event.id),
            )
        except TransactionViolation:
            self._unlock(lease, None)
            raise
        return lease, read

    @staticmethod
    def _lock_denied(event: ArvoEvent) -> TransactionViolation:
        return TransactionViolation(
            TransactionCause.LOCK_UNACQUIRED,
            "Lock acquisition denied - Unable to obtain exclusive access to event processing",
            {"event_id": event.id, "subject": event.subject},
        )

    def _locked_step(self, step: Step) -> StepResult:
        event, read = step.event, step.read
        if read.consumed:
            pending = [ArvoEvent.model_validate(item) for item in read.pending or ()]
            return StepResult(pending, StepOutcome.DUPLICATE)
        record = read.record
        if record is not None and record.get("executionStatus") == "failure":
            return self._ignore("workflow-failed", event)
        if record is None and event.type != self.source:
            return self._ignore("no-workflow", event)
        if record is not None and event.type == self.source:
            return self._ignore("already-initialised", event)
        if record is not None and record.get("status") == "done":
            return self._ignore("workflow-done", event)
        if record is None:
            step.parent_subject = self._init_parent_subject(event)
            step.init_event_id = event.id
        else:
            step.parent_subject = record.get("parentSubject")
            step.init_event_id = record.get("initEventId")
        step.machine = self.registry.resolve(
            step.subject.orchestrator.name, step.subject.orchestrator.version
        )
        data = self._validate_input(step.machine, event)
        try:
            result = self._engine.execute(
                step.machine, event, record["state"] if record is not None else None, data
            )
            emitted = self._emit.step_events(step, result)
        except ViolationError:
            raise
        except Exception as error:
            return self._fail(step, error)
        record = self._record(step, result, emitted)
        self._write(step, record, emitted)
        return StepResult(emitted, StepOutcome.APPLIED)

    def _init_parent_subject(self, event: ArvoEvent) -> str | None:
        parent = event.data.get("parentSubject$$")
        if parent is not None and not (isinstance(parent, str) and OrchestrationSubject.is_valid(parent)):
            raise ExecutionViolation(
                f"Invalid parentSubject$$ on init event (id={event.id}): it must be null or an "
                f"ArvoOrchestrationSubject, received {parent!r}"
            )
        return parent

    def _validate_input(self, machine: type[ArvoMachine], event: ArvoEvent) -> dict[str, Any]:
        parsed = parse_dataschema(event.dataschema)
        if parsed is None:
            raise ContractViolation(
                "Input validation failed - Event data does not meet contract requirements: Event "
                f"dataschema resolution failed: '{event.dataschema}' is not '<contract uri>/<x.y.z>'"
            )
        route = machine.route(event.type)
        if route is None:
            raise ConfigViolation(
                "Contract validation failed - Event does not match any registered contract schemas "
                "in the machine"
            )
        uri, version = parsed
        contract = route.contract
        if uri != contract.uri:
            raise ContractViolation(
                "Input validation failed - Event data does not meet contract requirements: Contract URI "
                f"mismatch: Expected '{contract.uri}' but got '{uri}'"
            )
        if version != "0.0.0" and version != contract.version:
            raise ContractViolation(
                "Input validation failed - Event data does not meet contract requirements: Contract "
                f"version mismatch: Expected '{contract.version}' but got '{version}'"
            )
        try:
            return route.schema.model_validate(event.data).model_dump(mode="json", by_alias=True)
        except ValidationError as error:
            raise ContractViolation(
                f"Input validation failed - Event data does not meet contract requirements: {error}"
            ) from None

    # -- persistence ----------------------------------------------------------------------------

    def _record(self, step: Step, result: ExecutionResult, emitted: list[ArvoEvent]) -> dict[str, Any]:
        machine = step.machine
        assert machine is not None
        return {
            "schemaVersion": RECORD_SCHEMA_VERSION,
            "executionStatus": "normal",
            "initEventId": step.init_event_id,
            "subject": step.event.subject,
            "parentSubject": step.parent_subject,
            "status": result.status,
            "value": result.snapshot["configuration"],
            "state": result.snapshot,
            "events": {"consumed": step.event.to_json(), "produced": [e.to_json() for e in emitted]},
            "machine": {"name": machine.source, "version": machine.version, "class": machine.__qualname__},
            "error": None,
        }

    def _write(self, step: Step, record: dict[str, Any], emitted: list[ArvoEvent]) -> None:
        event, read = step.event, step.read
        self._transaction(
            TransactionCause.WRITE_FAILURE,
            "writing state",
            event,
            lambda: self.memory.write(
                event.subject,
                record,
                prev_version=read.version,
                lease=step.lease,
                event_id=event.id,
                outbox=record["events"]["produced"] if emitted else None,
            ),
        )

    def _fail(self, step: Step, error: Exception) -> StepResult:
        """User code failed: keep the last good state, record the error, answer with errors."""
        events = self._emit.system_errors(step, error)
        previous = step.read.record or {
            "schemaVersion": RECORD_SCHEMA_VERSION,
            "initEventId": step.init_event_id,
            "subject": step.event.subject,
            "parentSubject": step.parent_subject,
            "status": None,
            "value": None,
            "state": None,
        }
        record = {
            **previous,
            "executionStatus": "failure",
            "error": {
                "name": type(error).__name__,
                "message": str(error),
                "stack": "".join(traceback.format_exception(error)),
            },
            "failedAt": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "failedEventId": step.event.id,
            "events": {"consumed": step.event.to_json(), "produced": [e.to_json() for e in events]},
        }
        logger.warning("workflow %s failed on event %s: %r", step.event.subject, step.event.id, error)
        self._write(step, record, events)
        return StepResult(events, StepOutcome.FAILED)


def _handed_over(events: list[ArvoEvent]) -> None:
    """``publish`` of in-process callers: returning the events is publishing them."""


def create_orchestrator(
    *,
    machines: Iterable[type[ArvoMachine]],
    memory: MachineMemory,
    executionunits: float = 0,
    default_domains: Mapping[str, tuple[str | None, ...]] | None = None,
) -> ArvoOrchestrator:
    """Build an orchestrator over machines of one contract (distinct versions)."""
    return ArvoOrchestrator(machines, memory, executionunits, default_domains)
