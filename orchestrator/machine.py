"""ArvoMachine: a python-statemachine 3.x ``StateChart`` bound to its contracts.

A machine class declares the orchestrator contract version it implements (``contract``), the
service contract versions it may call (``services``), an optional pydantic ``context_model``,
states and transitions. Transitions are declared on Arvo event types::

    class Increment(ArvoMachine):
        contract = inc_contract.version("1.0.0")
        services = (value_read.version("1.0.0"),)
        reading = State(initial=True)
        done = State(final=True)
        got_value = reading.to(done, event="evt.value.read.success")

What this module adds to a plain StateChart, and why:

* **Exact event matching.** SCXML matches event descriptors by token prefix, so a transition on
  ``evt.value.read`` would also fire for ``evt.value.read.success``. Every descriptor that names
  a contract event type is made exact at class creation; a dotted descriptor that no contract of
  the machine emits is a definition error (it could never fire, usually a typo). Replacing a
  descriptor needs library internals, kept in :mod:`orchestrator._statemachine`.
* **Errors propagate** (``catch_errors_as_events = False``) so that the orchestrator turns them
  into system error events and a failure record, as Arvo does.
* **Typed context** built from the init event by :meth:`ArvoMachine.init_context`, persisted as
  JSON, and an :meth:`ArvoMachine.emit` validated against the service contracts at emit time.
* No locking heuristic (spec 10.1): the orchestrator always serialises writes per subject.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError
from statemachine import StateChart

from orchestrator._statemachine import StateChartMetaclass, make_exact
from orchestrator.contract import VersionedArvoContract
from orchestrator.domain import domain_tokens
from orchestrator.errors import ConfigViolation, ContractViolation, DefinitionError
from orchestrator.event import ArvoEvent

#: SCXML platform events keep their prefix semantics (``error.execution``, ``done.state.x``).
_PLATFORM_EVENT_PREFIXES = ("error.", "done.")


@dataclass(frozen=True, slots=True)
class ContractRoute:
    """How an incoming event type relates to the machine: its contract and schema."""

    contract: VersionedArvoContract
    schema: type[BaseModel]
    is_self: bool


@dataclass(slots=True)
class EmittedEvent:
    """An event a machine asked to emit during a step (validated, not yet an ArvoEvent)."""

    type: str
    data: dict[str, Any]
    contract: VersionedArvoContract | None
    to: str | None = None
    redirectto: str | None = None
    accesscontrol: str | None = None
    executionunits: float | None = None
    id: str | Mapping[str, str] | None = None
    domain: tuple[str | None, ...] | None = None
    dataschema: str | None = None
    extensions: Mapping[str, Any] | None = None


class ArvoMachineMeta(StateChartMetaclass):
    """Binds a concrete machine class to its contracts once its states are known."""

    def __init__(cls, name: str, bases: tuple[type], attrs: dict[str, Any]) -> None:
        super().__init__(name, bases, attrs)
        if attrs.get("contract") is not None or (cls.states and getattr(cls, "contract", None)):
            _bind_contracts(cls)


def _bind_contracts(cls: Any) -> None:
    self_contract: VersionedArvoContract = cls.contract
    if not isinstance(self_contract, VersionedArvoContract) or not self_contract.is_orchestrator:
        raise DefinitionError(
            f"{cls.__name__}.contract must be a version of an orchestrator contract "
            "(create_orchestrator_contract(...).version('x.y.z'))"
        )
    services: tuple[VersionedArvoContract, ...] = tuple(cls.services)
    seen: dict[str, str] = {}
    for service in services:
        key = f"{service.uri}/{service.version}"
        if service.uri == self_contract.uri:
            raise ConfigViolation(
                f"Circular dependency detected: Machine with URI '{self_contract.uri}' is registered as "
                "service. Self-referential services create execution loops and are prohibited."
            )
        if service.uri in seen:
            raise ConfigViolation(
                "The service contracts must have unique URIs. Multiple versions of the same contract "
                f"are not allow. The contracts '{seen[service.uri]}' and '{key}' have the same URI "
                f"'{service.uri}'"
            )
        seen[service.uri] = key

    routes: dict[str, ContractRoute] = {
        self_contract.accepts.type: ContractRoute(self_contract, self_contract.accepts.schema, True)
    }
    by_accepts: dict[str, VersionedArvoContract] = {}
    for service in services:  # first contract wins (arvo-event-handler 3.x)
        for spec in (*service.emit_list, service.system_error):
            routes.setdefault(spec.type, ContractRoute(service, spec.schema, False))
        by_accepts.setdefault(service.accepts.type, service)
    cls._arvo_routes = routes
    cls._arvo_services_by_accepts = by_accepts
    cls.source = self_contract.accepts.type
    cls.version = self_contract.version
    _make_descriptors_exact(cls, routes)


def _make_descriptors_exact(cls: Any, routes: Mapping[str, ContractRoute]) -> None:
    for state in cls.states_map.values():
        for transition in state.transitions:
            for descriptor in transition.events:
                name = str(descriptor)
                if name not in routes and "." in name and not name.startswith(_PLATFORM_EVENT_PREFIXES):
                    raise ConfigViolation(
                        f"{cls.__name__}: transition from '{state.id}' on event '{name}', which is "
                        "neither the machine's init event nor emitted by any of its service contracts"
                    )
            make_exact(transition, routes)


class ArvoMachine(StateChart[Any], metaclass=ArvoMachineMeta):  # type: ignore[misc]
    """Base class of orchestrator statecharts. Subclass it; do not instantiate it yourself.

    Class attributes to set:
        contract: the orchestrator contract version this machine implements.
        services: the service contract versions it calls (and hears back from).
        context_model: optional pydantic model of the context; a plain dict otherwise.
    """

    catch_errors_as_events = False
    allow_event_without_transition = True

    contract: ClassVar[VersionedArvoContract | None] = None
    services: ClassVar[tuple[VersionedArvoContract, ...]] = ()
    context_model: ClassVar[type[BaseModel] | None] = None

    # Set by the metaclass on concrete machines.
    source: ClassVar[str]
    version: ClassVar[str]
    _arvo_routes: ClassVar[dict[str, ContractRoute]]
    _arvo_services_by_accepts: ClassVar[dict[str, VersionedArvoContract]]

    # Per step, set by the execution engine.
    context: Any
    arvo_event: ArvoEvent
    _emitted: list[EmittedEvent]

    def init_context(self, data: dict[str, Any]) -> Any:
        """Build the context from the (validated) init event data; override to customise."""
        if self.context_model is not None:
            return self.context_model.model_validate(data)
        return dict(data)

    def output(self) -> Mapping[str, Any] | BaseModel | None:
        """The completion data, read when the machine reaches a top-level final state.

        Keys ``__id``, ``__executionunits`` and ``__domain`` set the completion event's id,
        execution units and domains (as in Arvo); they are removed before validation.
        """
        return {}

    def emit(
        self,
        type: str,
        data: Mapping[str, Any] | BaseModel,
        *,
        to: str | None = None,
        redirectto: str | None = None,
        accesscontrol: str | None = None,
        executionunits: float | None = None,
        id: str | Mapping[str, str] | None = None,
        domain: list[str | None] | tuple[str | None, ...] | None = None,
        extensions: Mapping[str, Any] | None = None,
        dataschema: str | None = None,
        unchecked: bool = False,
    ) -> None:
        """Queue an event to a service, validated now against that service's contract.

        Args:
            type: a service's accepts type (``com.value.read``), or any type with
                ``unchecked=True`` (notifications that no contract of this machine describes).
            data: the payload; validated and normalised by the service's accepts schema.
            to, redirectto, accesscontrol, executionunits, id, domain, extensions, dataschema:
                routing overrides with Arvo's meaning (spec 5.4).
            unchecked: allow a type that is not a service's accepts type (sent unvalidated).

        Raises:
            ContractViolation: the type is unknown (and not ``unchecked``) or the data is invalid.
        """
        tokens = domain_tokens(domain, "emit() 'domain'")
        raw = data.model_dump(mode="json", by_alias=True) if isinstance(data, BaseModel) else dict(data)
        service = self._arvo_services_by_accepts.get(type)
        if service is None:
            if not unchecked:
                raise ContractViolation(
                    f"[Emittable Event Creation] Event type '{type}' is not accepted by any service "
                    f"contract of machine '{self.source}' (version {self.version}); pass unchecked=True "
                    "to emit an uncontracted notification"
                )
            validated = raw
        else:
            try:
                validated = service.accepts.validate(raw)
            except ValidationError as error:
                raise ContractViolation(
                    "[Emittable Event Creation] Invalid event data: Schema validation failed.\n"
                    f"Event type: {type}\nDetails: {error}"
                ) from None
        self._emitted.append(
            EmittedEvent(
                type=type,
                data=validated,
                contract=service,
                to=to,
                redirectto=redirectto,
                accesscontrol=accesscontrol,
                executionunits=executionunits,
                id=id,
                domain=tokens,
                dataschema=dataschema,
                extensions=extensions,
            )
        )

    @classmethod
    def route(cls, event_type: str) -> ContractRoute | None:
        """The contract that describes ``event_type`` for this machine, if any."""
        return cls._arvo_routes.get(event_type)
