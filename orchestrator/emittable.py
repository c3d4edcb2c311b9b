"""Building the events an orchestrator step emits (spec 5.4, 5.6, 5.7, 5.8).

Service calls, child orchestration inits (with their new subjects), the completion and system
error events all get Arvo's routing here: ``to``, ``redirectto`` back to the orchestrator,
``parentid``, inherited ``accesscontrol``, execution units, domains resolved and de-duplicated
(10.12), and ids derived from the consumed event (uuid5), so that a step recomputed after a crash
emits the very same events. System errors are routed like completions (fix of 10.13).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from orchestrator.contract import VersionedArvoContract, create_arvo_error
from orchestrator.domain import ArvoDomain, domain_tokens, resolve_domains
from orchestrator.engine import ExecutionResult
from orchestrator.errors import ContractViolation, ExecutionViolation
from orchestrator.event import ArvoEvent, assemble_event, create_arvo_event, derived_id
from orchestrator.history import StepLog
from orchestrator.inspection import HistoryEntry
from orchestrator.machine import ArvoMachine, EmittedEvent
from orchestrator.memory.base import Lease, ReadResult
from orchestrator.subject import OrchestrationSubject, SubjectContent
from orchestrator.telemetry import TraceHeaders

#: Namespace of the deterministic ids of emitted events.
EMIT_ID_NAMESPACE = uuid.UUID("0b4e5a3c-2f61-4d8e-b1a7-6c9d0e3f2a58")

DEFAULT_DOMAINS: Mapping[str, tuple[str | None, ...]] = {
    "services": (ArvoDomain.LOCAL,),
    "complete": (ArvoDomain.ORCHESTRATION_CONTEXT,),
    "system_error": (ArvoDomain.ORCHESTRATION_CONTEXT,),
}


@dataclass(slots=True)
class Step:
    """State gathered while an orchestrator processes one event."""

    event: ArvoEvent
    subject: SubjectContent
    headers: TraceHeaders
    lease: Lease
    read: ReadResult
    parent_subject: str | None = None
    init_event_id: str | None = None
    machine: type[ArvoMachine] | None = None
    emitted_index: int = 0
    produced: list[ArvoEvent] = field(default_factory=list)
    #: Calls emitted with a deadline: ``(event id, service contract, deadline seconds)``.
    deadlines: list[tuple[str, VersionedArvoContract, float]] = field(default_factory=list)
    #: Child workflows started: ``(init event id, child subject, child orchestrator type)``.
    children: list[tuple[str, str, str]] = field(default_factory=list)
    #: Times and the state before the step: builds its history entry.
    log: StepLog | None = None
    #: The history entry of a step that writes no state (duplicate, ignored), given to ``unlock``.
    unwritten: HistoryEntry | None = None
    #: The event retries the workflow's failure: it is applied to the last good state.
    retrying: bool = False


class EmittableBuilder:
    """Turns what a machine emitted (and its output) into ArvoEvents for one orchestrator.

    Args:
        source: the orchestrator's source (``arvo.orc.<name>``).
        executionunits: the orchestrator's default execution units.
        default_domains: overrides of :data:`DEFAULT_DOMAINS` (``services``, ``complete``,
            ``system_error``).
        fallback_contract: the contract used for system errors when no machine was resolved.
    """

    def __init__(
        self,
        source: str,
        executionunits: float,
        default_domains: Mapping[str, tuple[str | None, ...]] | None,
        fallback_contract: VersionedArvoContract,
    ) -> None:
        self.source = source
        self.executionunits = executionunits
        self._domains = {**DEFAULT_DOMAINS, **(default_domains or {})}
        self._latest_contract = fallback_contract

    def step_events(self, step: Step, result: ExecutionResult) -> list[ArvoEvent]:
        events: list[ArvoEvent] = []
        for item in result.emitted:
            events.extend(self._build(step, item, self._domains["services"]))
        if result.output is not None:
            events.extend(self._completion(step, result.output))
        return events

    def _completion(self, step: Step, output: dict[str, Any]) -> list[ArvoEvent]:
        contract = step.machine.contract if step.machine is not None else None
        assert contract is not None
        assert contract.complete_type is not None
        meta_id = output.pop("__id", None)
        meta_units = output.pop("__executionunits", None)
        meta_domain = domain_tokens(output.pop("__domain", None), "output '__domain'")
        schema = contract.emits[contract.complete_type]
        try:
            data = schema.model_validate(output).model_dump(mode="json", by_alias=True)
        except ValidationError as error:
            raise ContractViolation(
                "[Emittable Event Creation] Invalid event data: Schema validation failed.\n"
                f"Event type: {contract.complete_type}\nDetails: {error}"
            ) from None
        item = EmittedEvent(
            type=contract.complete_type,
            data=data,
            contract=contract,
            to=step.subject.reply_to,
            executionunits=meta_units,
            id=meta_id,
            domain=meta_domain or None,
        )
        return self._build(step, item, self._domains["complete"], completion=True)

    def _build(
        self,
        step: Step,
        item: EmittedEvent,
        default_domains: tuple[str | None, ...],
        completion: bool = False,
    ) -> list[ArvoEvent]:
        event = step.event
        index = step.emitted_index
        step.emitted_index += 1
        contract = item.contract
        self_contract = step.machine.contract if step.machine is not None else None
        domains = resolve_domains(
            item.domain or default_domains,
            parent_subject=step.parent_subject,
            current_subject=event.subject,
            self_contract_domain=self_contract.domain if self_contract else None,
            event_contract_domain=contract.domain if contract else None,
            triggering_event_domain=event.domain,
        )
        subject = event.subject
        parentid = event.id
        if completion:
            subject = step.parent_subject or event.subject
            parentid = step.init_event_id or event.id
        dataschema = contract.dataschema if contract is not None else item.dataschema
        built = []
        # Nothing user-supplied in the routing fields: assemble from validated parts (fast path).
        derived = (
            item.id is None
            and item.redirectto is None
            and item.accesscontrol is None
            and item.extensions is None
            and item.executionunits is None
            and (completion or item.to is None)
            and contract is not None
        )
        for domain in domains:
            if contract is not None and contract.is_orchestrator and not completion:
                subject = self._child_subject(item, contract, domain)
            event_id = item.id or derived_id(EMIT_ID_NAMESPACE, f"{event.id}|{index}|{domain or ''}")
            fields: dict[str, Any] = {
                "id": event_id,
                "source": self.source,
                "type": item.type,
                "subject": subject,
                "data": item.data,
                "dataschema": dataschema,
                "to": item.to or item.type,
                "accesscontrol": item.accesscontrol or event.accesscontrol,
                "redirectto": item.redirectto or self.source,
                "executionunits": self.executionunits if item.executionunits is None else item.executionunits,
                "parentid": parentid,
                "traceparent": step.headers.traceparent,
                "tracestate": step.headers.tracestate,
            }
            if derived and domain is None:
                built.append(assemble_event(**fields))
            else:
                built.append(create_arvo_event(**fields, domain=domain, extensions=item.extensions))
            if item.deadline_s is not None and contract is not None:
                step.deadlines.append((built[-1].id, contract, item.deadline_s))
            if contract is not None and contract.is_orchestrator and not completion:
                step.children.append((built[-1].id, built[-1].subject, item.type))
        return built

    def _child_subject(self, item: EmittedEvent, contract: VersionedArvoContract, domain: str | None) -> str:
        parent = item.data.get("parentSubject$$")
        meta = {"redirectto": item.redirectto or self.source}
        if parent is not None and not OrchestrationSubject.is_valid(parent):
            raise ExecutionViolation(
                f"[Emittable Event Creation] Invalid parentSubject$$ for the event(type='{item.type}', "
                f"uri='{contract.uri}'). It must be follow the ArvoOrchestrationSubject schema. The "
                "easiest way is to use the current orchestration subject by storing the subject via "
                "the context block in the machine definition."
            )
        try:
            if parent is not None:
                return OrchestrationSubject.from_parent(
                    orchestrator=contract.accepts.type,
                    version=contract.version,
                    subject=parent,
                    domain=domain,
                    meta=meta,
                )
            return OrchestrationSubject.new(
                orchestrator=contract.accepts.type,
                version=contract.version,
                initiator=self.source,
                domain=domain,
                meta=meta,
            )
        except ValueError as error:
            raise ExecutionViolation(
                f"[Emittable Event Creation] Orchestration subject creation failed: {error}"
            ) from None

    def system_errors(self, step: Step, error: BaseException) -> list[ArvoEvent]:
        event = step.event
        contract = (step.machine.contract if step.machine is not None else None) or self._latest_contract
        domains = resolve_domains(
            self._domains["system_error"],
            parent_subject=step.parent_subject,
            current_subject=event.subject,
            self_contract_domain=contract.domain,
            event_contract_domain=contract.domain,
            triggering_event_domain=event.domain,
        )
        return [
            create_arvo_event(
                id=derived_id(EMIT_ID_NAMESPACE, f"{event.id}|error|{domain or ''}"),
                source=self.source,
                type=contract.system_error.type,
                subject=step.parent_subject or event.subject,
                data=create_arvo_error(error),
                dataschema=contract.system_error.dataschema,
                to=step.subject.reply_to,
                accesscontrol=event.accesscontrol,
                executionunits=self.executionunits,
                parentid=step.init_event_id or event.id,
                domain=domain,
                traceparent=step.headers.traceparent,
                tracestate=step.headers.tracestate,
            )
            for domain in domains
        ]
