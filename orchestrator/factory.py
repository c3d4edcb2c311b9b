"""Event factories: build contract-checked ArvoEvents for one contract version (spec feature 15/16).

This module owns :class:`EventFactory` (Arvo ``createArvoEventFactory``: ``accepts``, ``emits``,
``system_error``) and :class:`OrchestratorEventFactory` (``createArvoOrchestratorEventFactory``:
``init`` and ``complete``). A factory validates the data against the contract, puts the
*parsed* copy on the event, stamps the contract's dataschema and, when the caller gives no
subject, creates an orchestration subject for the new event (spec 3.5).

Unlike Arvo, the factories open no OpenTelemetry span and read no active context: trace
context is whatever the caller passes as ``traceparent``/``tracestate`` (OTel lives only in
``telemetry.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict, Unpack

from pydantic import BaseModel, ValidationError

from orchestrator.contract import PARENT_SUBJECT_KEY, EventSpec, VersionedArvoContract, create_arvo_error
from orchestrator.errors import ContractViolation, DefinitionError
from orchestrator.event import ArvoEvent, EventId, create_arvo_event
from orchestrator.subject import OrchestrationSubject

__all__ = ["EventFactory", "EventOptions", "OrchestratorEventFactory"]

#: Event data as given by the caller: a JSON-like mapping or an instance of the schema model.
EventData = Mapping[str, Any] | BaseModel


class EventOptions(TypedDict, total=False):
    """Optional event attributes every factory method takes (spec 1.1 defaults apply).

    ``redirectto`` and ``domain`` also shape the subject the factory creates when none is given.
    """

    id: EventId | Mapping[str, Any] | str | None
    time: str | None
    to: str | None
    accesscontrol: str | None
    redirectto: str | None
    executionunits: float | None
    parentid: str | None
    domain: str | None
    traceparent: str | None
    tracestate: str | None
    extensions: Mapping[str, str | bool | int | float | None] | None


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in err['loc']) or '<data>'}: {err['msg']}"
        for err in exc.errors(include_url=False)
    )


def _validated(spec: EventSpec, data: EventData, what: str) -> dict[str, Any]:
    """The parsed copy of ``data``; a failure is a ContractViolation naming ``what`` was built."""
    try:
        return spec.validate(data)
    except ValidationError as exc:
        raise ContractViolation(
            f"{what} Event data validation failed: {_describe(exc)}",
            {"type": spec.type, "dataschema": spec.dataschema},
        ) from exc


def _redirect_meta(redirectto: str | None) -> dict[str, str] | None:
    return {"redirectto": redirectto} if redirectto else None


class EventFactory:
    """Builds the events of one contract version: its accepted event, its emits, its system error.

    Args:
        contract: the contract version, e.g. ``contract.version("1.0.0")``.
    """

    __slots__ = ("_emits", "contract")

    def __init__(self, contract: VersionedArvoContract) -> None:
        self.contract = contract
        # Only the declared emits: like Arvo, ``emits`` cannot build the system error event.
        self._emits = {spec.type: spec for spec in contract.emit_list}

    def _new_subject(self, orchestrator: str, source: str, redirectto: str | None, domain: str | None) -> str:
        """A root subject for an event built without one (Arvo: name = event type, initiator = source)."""
        return OrchestrationSubject.new(
            orchestrator=orchestrator,
            version=self.contract.version,
            initiator=source,
            domain=domain,
            meta=_redirect_meta(redirectto),
        )

    @staticmethod
    def _event(
        *,
        type: str,
        source: str,
        subject: str,
        data: dict[str, Any],
        dataschema: str | None,
        options: EventOptions,
    ) -> ArvoEvent:
        return create_arvo_event(
            source=source, type=type, subject=subject, data=data, dataschema=dataschema, **options
        )

    def accepts(
        self, *, source: str, data: EventData, subject: str | None = None, **options: Unpack[EventOptions]
    ) -> ArvoEvent:
        """An event of the contract's accepted type, e.g. a request to the service.

        Raises:
            ContractViolation: ``Accept Event data validation failed: ...``.
            InvalidSubject: no subject was given and ``source`` cannot be a subject initiator.
            pydantic.ValidationError: an event attribute breaks spec 1.1.
        """
        spec = self.contract.accepts
        parsed = _validated(spec, data, "Accept")
        if subject is None:
            subject = self._new_subject(spec.type, source, options.get("redirectto"), options.get("domain"))
        return self._event(
            type=spec.type,
            source=source,
            subject=subject,
            data=parsed,
            dataschema=spec.dataschema,
            options=options,
        )

    def emits(
        self,
        *,
        type: str,
        source: str,
        data: EventData,
        subject: str | None = None,
        **options: Unpack[EventOptions],
    ) -> ArvoEvent:
        """An event of one of the contract's emit types, e.g. a service's reply.

        Raises:
            ContractViolation: ``Emit Event data validation failed: ...``, including
                ``No contract available for <type>`` for a type the version does not emit.
        """
        spec = self._emits.get(type)
        if spec is None:
            raise ContractViolation(
                f"Emit Event data validation failed: No contract available for {type}",
                {"type": type, "dataschema": self.contract.dataschema},
            )
        parsed = _validated(spec, data, "Emit")
        if subject is None:
            subject = self._new_subject(type, source, options.get("redirectto"), options.get("domain"))
        return self._event(
            type=type,
            source=source,
            subject=subject,
            data=parsed,
            dataschema=self.contract.dataschema,
            options=options,
        )

    def system_error(
        self,
        *,
        source: str,
        error: BaseException,
        subject: str | None = None,
        **options: Unpack[EventOptions],
    ) -> ArvoEvent:
        """The ``sys.<type>.error`` event describing ``error``, with dataschema ``<uri>/0.0.0``."""
        spec = self.contract.system_error
        if subject is None:
            subject = self._new_subject(spec.type, source, options.get("redirectto"), options.get("domain"))
        return self._event(
            type=spec.type,
            source=source,
            subject=subject,
            data=dict(create_arvo_error(error)),
            dataschema=spec.dataschema,
            options=options,
        )


class OrchestratorEventFactory(EventFactory):
    """Builds the init and completion events of an orchestrator contract version.

    Raises:
        DefinitionError: ``contract`` does not come from ``create_orchestrator_contract``.
    """

    __slots__ = ()

    def __init__(self, contract: VersionedArvoContract) -> None:
        if not contract.is_orchestrator:
            raise DefinitionError("This factory can only be used for ArvoOrchestratorContract")
        super().__init__(contract)

    def init(
        self, *, source: str, data: EventData, subject: str | None = None, **options: Unpack[EventOptions]
    ) -> ArvoEvent:
        """The init event that starts an orchestration.

        ``data`` must carry ``parentSubject$$``: ``None`` for a root orchestration, which gets a
        new subject initiated by ``source``; a subject string for a child, which gets a subject
        derived from the parent (its initiator is the parent orchestrator, its domain is
        inherited unless ``domain`` is given) with ``meta.redirectto = redirectto`` or else the
        parent orchestrator's name, so the child's completion goes back to the parent.

        That last default deliberately differs from Arvo, which uses the parent's *initiator*
        and so sends the child's completion to the grandparent (spec 10.14). It now matches what
        an orchestrator does when it starts a child itself (spec 5.7).

        Raises:
            ContractViolation: ``Init Event data validation failed: ...``.
            InvalidSubject: ``parentSubject$$`` is not a valid subject.
        """
        spec = self.contract.accepts
        parsed = _validated(spec, data, "Init")
        if subject is None:
            redirectto, domain = options.get("redirectto"), options.get("domain")
            parent = parsed.get(PARENT_SUBJECT_KEY)
            if parent:
                parent_name = OrchestrationSubject.parse(parent).orchestrator.name
                subject = OrchestrationSubject.from_parent(
                    orchestrator=spec.type,
                    version=self.contract.version,
                    subject=parent,
                    domain=domain,
                    meta={"redirectto": redirectto or parent_name},
                )
            else:
                subject = self._new_subject(spec.type, source, redirectto, domain)
        return self._event(
            type=spec.type,
            source=source,
            subject=subject,
            data=parsed,
            dataschema=spec.dataschema,
            options=options,
        )

    def complete(
        self, *, source: str, data: EventData, subject: str | None = None, **options: Unpack[EventOptions]
    ) -> ArvoEvent:
        """The completion event (``arvo.orc.<name>.done``) of the orchestration.

        Without a subject a new one is created with name = the completion type and
        initiator = ``source`` (spec 9 #41); with one, the subject (and its domain) is kept
        while ``domain`` sets only the event's domain (spec 9 #43).

        Raises:
            ContractViolation: ``Emit Event data validation failed: ...``.
        """
        done = self.contract.complete_type
        if done is None:  # unreachable for contracts built by create_orchestrator_contract
            raise DefinitionError(f"{self.contract!r} has no completeEventType in its metadata")
        return self.emits(type=done, source=source, data=data, subject=subject, **options)
