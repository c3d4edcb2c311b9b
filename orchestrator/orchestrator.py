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

import dataclasses
import logging
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import ValidationError

from orchestrator.contract import ORCHESTRATOR_PREFIX, parse_dataschema
from orchestrator.emittable import EmittableBuilder, Step
from orchestrator.engine import ExecutionResult, MachineExecutionEngine
from orchestrator.errors import (
    ConfigViolation,
    ContractViolation,
    ExecutionViolation,
    TransactionCause,
    TransactionViolation,
    UnhandledSystemError,
    ViolationError,
    WorkflowCancelled,
)
from orchestrator.event import ArvoEvent
from orchestrator.history import StepLog, configuration_of, emitted_refs, index_fields, is_retry
from orchestrator.inspection import HistoryEntry, Outcome
from orchestrator.machine import ArvoMachine
from orchestrator.memory.base import Lease, LockAndReadMemory, MachineMemory, ReadResult
from orchestrator.record import CANCELLED_STATUS, MachineRef, RecordedError, WorkflowRecord
from orchestrator.registry import MachineRegistry
from orchestrator.subject import OrchestrationSubject, SubjectContent
from orchestrator.telemetry import execution_span
from orchestrator.timekeeping import ORDINARY, Delivery, advance, delivery_for
from orchestrator.timers import (
    CANCEL_EVENT_TYPE,
    CANCEL_MACHINE_EVENT,
    Timer,
    TimerChanges,
    cancel_event,
    timer_event,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a finished workflow's record, consumed ids and outbox are kept (7 days), unless
#: the orchestrator is given another retention.
DEFAULT_RETENTION_S = 7 * 24 * 3600


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
        retention_s: int = DEFAULT_RETENTION_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if retention_s < 1:
            raise ValueError(f"retention_s must be at least 1 second, got {retention_s}")
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
        #: Seconds a finished workflow's keys are kept (a deployment sets it from its settings).
        self.retention_s = retention_s
        #: Epoch seconds now: when timers set by a step are due (LocalBroker's virtual clock).
        self.clock = clock

    # -- public API ---------------------------------------------------------------------------

    def execute(self, event: ArvoEvent) -> list[ArvoEvent]:
        """Process ``event`` and hand its events to the caller (in-process use).

        The events count as published once returned, so the outbox is settled with the unlock.
        A redelivered event returns nothing new.
        """
        with self.step(event) as result:
            return [] if result.outcome is StepOutcome.DUPLICATE else result.events

    def process(self, event: ArvoEvent) -> StepResult:
        """Run one step and leave its outbox unsettled until :meth:`settle`.

        For callers that publish after the lock is released; a crash before ``settle`` then
        leaves the events in the outbox, and a redelivered event gets them back.
        """
        with self.step(event, settle=False) as result:
            return result

    def settle(self, event: ArvoEvent) -> None:
        """Mark the events produced for ``event`` as published (when not done by ``step``)."""
        self.memory.settle(event.subject, event.id)

    @contextmanager
    def step(self, event: ArvoEvent, *, settle: bool = True) -> Iterator[StepResult]:
        """Run one orchestration step for ``event``, holding the subject's lock until the block ends.

        The caller publishes ``result.events`` inside the ``with`` block (for a redelivered
        event: the step's events that were never settled), so they leave while no other step
        of the subject can run. Leaving the block normally releases the lock and, with
        ``settle``, marks the outbox published in the same call; leaving it with an exception
        releases the lock and keeps the outbox, so a redelivery publishes the events again.

        Raises:
            ExecutionViolation: the subject is not an orchestration subject, bad parentSubject$$.
            ConfigViolation: no machine for the subject's version, event not in any contract.
            ContractViolation: input or emitted data does not satisfy a contract.
            TransactionViolation: lock busy, memory unreachable, or a write conflict (retryable).
        """
        with execution_span(f"Orchestrator<{self.source}>", event, "orchestrator") as span:
            try:
                subject = self._parse_subject(event)
                if subject.orchestrator.name != self.source:
                    yield self._ignore("foreign-subject", event)
                    return
                log = StepLog(event, self.clock, span.trace_id)
                lease, read = self._lock_and_read(event)
            except ViolationError as error:
                span.record_error(error)
                raise
            log.before = configuration_of(read.record)
            step = Step(event=event, subject=subject, headers=span.headers, lease=lease, read=read, log=log)
            published = False
            try:
                try:
                    result = self._locked_step(step)
                except ViolationError as error:
                    span.record_error(error)
                    raise
                yield result
                published = settle and result.outcome is not StepOutcome.IGNORED
            finally:
                self._unlock(lease, event.id if published else None, step.unwritten)

    # -- pipeline -----------------------------------------------------------------------------

    def _ignore(self, reason: str, event: ArvoEvent) -> StepResult:
        self.ignored[reason] += 1
        logger.info("orchestrator %s ignored event %s (%s): %s", self.source, event.id, event.type, reason)
        return StepResult([], StepOutcome.IGNORED, reason)

    @staticmethod
    def _parse_subject(event: ArvoEvent) -> SubjectContent:
        try:
            return OrchestrationSubject.parse(event.subject)
        except ValueError:
            raise ExecutionViolation(
                f"Invalid event (id={event.id}) subject format. Expected an ArvoOrchestrationSubject but "
                f"received '{event.subject}'. The subject must follow the format specified by "
                "ArvoOrchestrationSubject schema"
            ) from None

    def _ignore_step(self, step: Step, reason: str) -> StepResult:
        """Ignore the event of a locked step, keeping an entry in the workflow's history."""
        step.unwritten = self._unwritten_entry(step, "ignored", reason)
        return self._ignore(reason, step.event)

    @staticmethod
    def _unwritten_entry(step: Step, outcome: Outcome, reason: str | None = None) -> HistoryEntry | None:
        """The history entry of a step that writes no state; None when there is no workflow."""
        if step.read.record is None or step.log is None:
            return None
        return step.log.entry(outcome, after=step.log.before, reason=reason)

    def _unlock(self, lease: Lease, settle: str | None, history: HistoryEntry | None = None) -> None:
        try:
            if history is None:
                self.memory.unlock(lease, settle)
            else:
                self.memory.unlock(lease, settle, history)
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
            step.unwritten = self._unwritten_entry(step, "duplicate")
            return StepResult(pending, StepOutcome.DUPLICATE)
        stored = WorkflowRecord.from_dict(read.record) if read.record is not None else None
        record = self._starting_record(step, stored)
        refused = self._refusal(event, record)
        if refused is not None:
            return self._ignore_step(step, refused)
        if record is None:
            step.parent_subject = self._init_parent_subject(event)
            step.init_event_id = stored.init_event_id if stored is not None else event.id
        else:
            step.parent_subject = record.parent_subject
            step.init_event_id = record.init_event_id
        step.machine = self.registry.resolve(
            step.subject.orchestrator.name, step.subject.orchestrator.version
        )
        delivery: Delivery | str
        if event.type == CANCEL_EVENT_TYPE and record is not None:
            if record.cancel is not None:
                return self._ignore_step(step, "already-cancelling")
            reason = self._cancel_reason(event)
            if not step.machine._arvo_handles_cancel:
                return self._cancel(step, record, reason)
            delivery = Delivery(name=CANCEL_MACHINE_EVENT, data={"reason": reason}, cancelling=reason)
        else:
            delivery = delivery_for(event, record)
        if isinstance(delivery, str):
            return self._ignore_step(step, delivery)
        data = delivery.data if delivery is not ORDINARY else self._validate_input(step.machine, event)
        cancel_reason = delivery.cancelling or (record.cancel["reason"] if record and record.cancel else None)
        try:
            state = record.state if record is not None else None
            result = self._engine.execute(step.machine, event, state, data, name=delivery.name)
            ends_cancelled = cancel_reason is not None and result.output is not None
            if ends_cancelled:  # a cancelled workflow reports its cancellation, not an output
                result = dataclasses.replace(result, output=None, status=CANCELLED_STATUS)
            emitted = self._emit.step_events(step, result)
        except ViolationError:
            raise
        except UnhandledSystemError as error:
            return self._unhandled_system_error(step, record, error)
        except Exception as error:
            return self._fail(step, record, error)
        if delivery.cancelling is not None and record is not None:
            emitted = self._child_cancels(step, record, delivery.cancelling) + emitted
        if ends_cancelled:
            assert cancel_reason is not None
            emitted += self._emit.system_errors(step, WorkflowCancelled(cancel_reason))
        stored, changes = self._record(step, record, result, emitted, delivery, cancel_reason)
        self._write(step, stored, changes)
        return StepResult(emitted, StepOutcome.APPLIED)

    @staticmethod
    def _starting_record(step: Step, stored: WorkflowRecord | None) -> WorkflowRecord | None:
        """The record the step starts from: the stored one, or for a retry its last good state.

        A retry (:func:`orchestrator.history.is_retry`) resumes the failed record without its
        failure (None when it failed at its init: the init is applied again). The failure write
        kept the last good state, timers, calls and children; only the error goes, and the
        retry step writes that back with the lease and version checks of any step.
        """
        if stored is None or not is_retry(step.event, stored, step.read.version):
            return stored
        step.retrying = True
        if stored.state is None:
            return None
        return dataclasses.replace(
            stored, execution_status="normal", error=None, failed_at=None, failed_event_id=None
        )

    def _refusal(self, event: ArvoEvent, record: WorkflowRecord | None) -> str | None:
        """Why the workflow cannot apply ``event`` at all (a reason to count), or None."""
        if record is None:
            return None if event.type == self.source else "no-workflow"
        if record.failed:
            return "workflow-failed"
        if record.cancelled:
            return "workflow-cancelled"
        if event.type == self.source:
            return "already-initialised"
        if record.finished:
            return "workflow-done"
        return None

    @staticmethod
    def _cancel_reason(event: ArvoEvent) -> str:
        reason = event.data.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise ContractViolation(
                f"Cancel event (id={event.id}): field 'reason' must be a non-empty string, got {reason!r}"
            )
        return reason

    def _cancel(self, step: Step, record: WorkflowRecord, reason: str) -> StepResult:
        """End the workflow now: drop its timers, cancel its children, report the cancellation."""
        event = step.event
        emitted = self._child_cancels(step, record, reason) + self._emit.system_errors(
            step, WorkflowCancelled(reason)
        )
        cancelled = dataclasses.replace(
            record,
            status=CANCELLED_STATUS,
            cancel={"reason": reason, "at": datetime.now(UTC).isoformat(timespec="milliseconds")},
            timers={},
            calls={},
            children={},
            consumed=event.to_json(),
            produced=[e.to_json() for e in emitted],
        )
        self._write(step, cancelled, TimerChanges(cancelled=tuple(record.timers)))
        return StepResult(emitted, StepOutcome.APPLIED)

    def _child_cancels(self, step: Step, record: WorkflowRecord, reason: str) -> list[ArvoEvent]:
        """One cancel event per running child workflow (they cancel their own children in turn)."""
        event = step.event
        return [
            cancel_event(
                subject=child["subject"],
                orchestrator=child["type"],
                reason=f"parent workflow cancelled: {reason}",
                source=self.source,
                parentid=event.id,
                accesscontrol=event.accesscontrol,
                traceparent=step.headers.traceparent,
                tracestate=step.headers.tracestate,
            )
            for child in record.children.values()
        ]

    def _init_parent_subject(self, event: ArvoEvent) -> str | None:
        parent = event.data.get("parentSubject$$")
        if parent is None:
            self._require_parent_subject(event)
        elif not (isinstance(parent, str) and OrchestrationSubject.is_valid(parent)):
            raise ExecutionViolation(
                f"Invalid parentSubject$$ on init event (id={event.id}): it must be null or an "
                f"ArvoOrchestrationSubject, received {parent!r}"
            )
        return parent

    def _require_parent_subject(self, event: ArvoEvent) -> None:
        """Refuse a root init whose completion would go to another orchestrator (no silent stall).

        Without ``parentSubject$$`` the completion and system errors carry this workflow's own
        subject. Sent to another orchestrator (the subject's ``meta.redirectto``, else its
        initiator), they name a workflow of ours, which it ignores as foreign: a parent that
        started this workflow as its child would wait forever for them.
        """
        reply_to = OrchestrationSubject.parse(event.subject).reply_to
        if reply_to.startswith(f"{ORCHESTRATOR_PREFIX}.") and reply_to != self.source:
            state = "null" if "parentSubject$$" in event.data else "missing"
            raise ExecutionViolation(
                f"parentSubject$$ is {state} on init event (id={event.id}) of {self.source}, whose "
                f"subject replies to the orchestrator '{reply_to}': the completion would carry this "
                "workflow's own subject, which that orchestrator ignores as foreign, so it would wait "
                "forever. An init whose reply goes to another orchestrator must set parentSubject$$ "
                "to that orchestrator's workflow subject (or redirect the reply elsewhere)"
            )

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

    def _record(
        self,
        step: Step,
        previous: WorkflowRecord | None,
        result: ExecutionResult,
        emitted: list[ArvoEvent],
        delivery: Delivery,
        cancel_reason: str | None,
    ) -> tuple[WorkflowRecord, TimerChanges]:
        machine = step.machine
        assert machine is not None
        ended = result.status != "active"
        time_state = advance(
            previous=previous,
            step=step,
            result=result,
            delivery=delivery,
            version=step.read.version + 1,
            now_ms=int(self.clock() * 1000),
            ended=ended,
        )
        changes = time_state.changes
        if step.retrying:
            changes = self._reindex_timers(step, time_state.timers, changes)
        cancel = previous.cancel if previous is not None else None
        if delivery.cancelling is not None:
            cancel = {"reason": cancel_reason, "at": datetime.now(UTC).isoformat(timespec="milliseconds")}
        record = WorkflowRecord(
            subject=step.event.subject,
            init_event_id=step.init_event_id,
            parent_subject=step.parent_subject,
            status=result.status,
            value=result.snapshot["configuration"],
            state=result.snapshot,
            consumed=step.event.to_json(),
            produced=[e.to_json() for e in emitted],
            machine=MachineRef(machine.source, machine.version, machine.__qualname__),
            timers=time_state.timers,
            calls=time_state.calls,
            expired_calls=time_state.expired_calls,
            children=time_state.children,
            cancel=cancel,
        )
        return record, changes

    def _reindex_timers(
        self, step: Step, timers: Mapping[str, Mapping[str, Any]], changes: TimerChanges
    ) -> TimerChanges:
        """A retried step also puts back the pending timers the failure took out of the index."""
        setting = {timer.id for timer, _ in changes.set}
        event = step.event
        restored = []
        for stored in timers.values():
            timer = Timer.from_dict(stored)
            if timer.id in setting:
                continue
            fires = timer_event(
                timer=timer,
                subject=event.subject,
                orchestrator=self.source,
                parentid=event.id,
                accesscontrol=event.accesscontrol,
                traceparent=step.headers.traceparent,
                tracestate=step.headers.tracestate,
            )
            restored.append((timer, fires.to_json()))
        return TimerChanges(changes.set + tuple(restored), changes.cancelled)

    def _write(
        self,
        step: Step,
        record: WorkflowRecord,
        timers: TimerChanges | None = None,
        *,
        outcome: Outcome = "applied",
        error: BaseException | None = None,
    ) -> None:
        """Write the step's record with its history entry and index row (one memory call)."""
        event, read = step.event, step.read
        stored = record.to_dict()
        assert step.log is not None
        now_ms = step.log.now_ms()
        entry = step.log.entry(
            outcome,
            after=configuration_of(record),
            emitted=emitted_refs(record.produced),
            error=error,
            now_ms=now_ms,
        )
        orchestrator = step.subject.orchestrator
        index = index_fields(record, orchestrator.name, orchestrator.version, now_ms)
        self._transaction(
            TransactionCause.WRITE_FAILURE,
            "writing state",
            event,
            lambda: self.memory.write(
                event.subject,
                stored,
                prev_version=read.version,
                lease=step.lease,
                event_id=event.id,
                outbox=record.produced or None,
                expire_after_s=self.retention_s if record.finished else None,
                timers=timers or None,
                history=entry,
                index=index,
            ),
        )

    def _unhandled_system_error(
        self, step: Step, previous: WorkflowRecord | None, error: UnhandledSystemError
    ) -> StepResult:
        """No transition for a system error: fail (no silent stall), or ignore if the machine opts out."""
        if step.machine is not None and step.machine.ignore_unhandled_system_errors:
            return self._ignore_step(step, "unhandled-system-error")
        return self._fail(step, previous, error)

    def _fail(self, step: Step, previous: WorkflowRecord | None, error: Exception) -> StepResult:
        """User code failed: keep the last good state, record the error, answer with errors."""
        events = self._emit.system_errors(step, error)
        last_good = previous or WorkflowRecord(
            subject=step.event.subject,
            init_event_id=step.init_event_id,
            parent_subject=step.parent_subject,
            status=None,
            value=None,
            state=None,
            consumed={},
            produced=[],
            machine=None,
        )
        record = dataclasses.replace(
            last_good,
            execution_status="failure",
            error=RecordedError(type(error).__name__, str(error), "".join(traceback.format_exception(error))),
            failed_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
            failed_event_id=step.event.id,
            consumed=step.event.to_json(),
            produced=[e.to_json() for e in events],
        )
        logger.warning("workflow %s failed on event %s: %r", step.event.subject, step.event.id, error)
        # A failed workflow applies no further event: its timers leave the index (the record keeps
        # them with the last good state), or they would fire only to be ignored.
        self._write(step, record, TimerChanges(cancelled=tuple(record.timers)), outcome="failed", error=error)
        return StepResult(events, StepOutcome.FAILED)


def create_orchestrator(
    *,
    machines: Iterable[type[ArvoMachine]],
    memory: MachineMemory,
    executionunits: float = 0,
    default_domains: Mapping[str, tuple[str | None, ...]] | None = None,
    retention_s: int = DEFAULT_RETENTION_S,
    clock: Callable[[], float] = time.time,
) -> ArvoOrchestrator:
    """Build an orchestrator over machines of one contract (distinct versions)."""
    return ArvoOrchestrator(
        machines, memory, executionunits, default_domains, retention_s=retention_s, clock=clock
    )
