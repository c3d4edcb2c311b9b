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
* **No silent stall.** ``async def`` actions are refused at class creation (a step is
  synchronous), and a ``sys.*.error`` that no transition handles fails the workflow unless the
  machine sets ``ignore_unhandled_system_errors`` (the engine checks, the orchestrator decides).
* **Typed context** built from the init event by :meth:`ArvoMachine.init_context`, persisted as
  JSON, and an :meth:`ArvoMachine.emit` validated against the service contracts at emit time.
* **Time** (:mod:`orchestrator.timers`): delayed transitions declared per state (``after``),
  timers set and cancelled by actions (:meth:`ArvoMachine.schedule`,
  :meth:`ArvoMachine.cancel_timer`), deadlines on service calls (``emit(..., deadline=...)``), all
  checked at class creation or when set, and durable: the orchestrator stores them with the state.
* No locking heuristic (spec 10.1): the orchestrator always serialises writes per subject.
"""

from __future__ import annotations

import inspect
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError
from statemachine import StateChart

from orchestrator._statemachine import StateChartMetaclass, attached_callables, make_exact
from orchestrator.contract import VersionedArvoContract
from orchestrator.domain import domain_tokens
from orchestrator.errors import ConfigViolation, ContractViolation, DefinitionError
from orchestrator.event import ArvoEvent
from orchestrator.timers import CANCEL_MACHINE_EVENT, Duration, parse_duration, to_epoch_ms

#: Namespace of the ids of timers set by actions without an explicit id.
SCHEDULE_ID_NAMESPACE = uuid.UUID("2c6b9f0e-8d1a-4c5e-b0f7-3e9d1a6c4b22")

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
    deadline_s: float | None = None


@dataclass(frozen=True, slots=True)
class ScheduledTimer:
    """A timer an action set during a step (the orchestrator turns it into a stored timer)."""

    id: str
    event: str
    data: dict[str, Any]
    delay_s: float | None = None
    at_ms: int | None = None


class ArvoMachineMeta(StateChartMetaclass):
    """Binds a concrete machine class to its contracts once its states are known."""

    def __init__(cls, name: str, bases: tuple[type], attrs: dict[str, Any]) -> None:
        super().__init__(name, bases, attrs)
        if attrs.get("contract") is not None or (cls.states and getattr(cls, "contract", None)):
            _refuse_async_callbacks(cls)
            _bind_contracts(cls)
            _bind_time(cls)


def _is_async(value: Any) -> bool:
    if isinstance(value, staticmethod | classmethod):
        value = value.__func__
    elif isinstance(value, property):
        value = value.fget
    return inspect.iscoroutinefunction(value) or inspect.isasyncgenfunction(value)


def _refuse_async_callbacks(cls: Any) -> None:
    """Refuse ``async def`` methods and callbacks at class creation (issue 9, item 4).

    python-statemachine runs a machine with a coroutine callback on its async engine, whose
    coroutines nobody in a step awaits: the workflow would be stored with an empty
    configuration and no error. Every coroutine function defined on the class or its bases
    (ArvoMachine, StateChart and their bases excepted) is refused, whether it is an action by
    naming convention, named by a transition or state, ``output``, ``init_context`` or a helper,
    and so is a coroutine function given directly (``on=function``).
    """
    found: dict[int, str] = {}
    for klass in cls.__mro__:
        if klass in ArvoMachine.__mro__:
            continue
        for attr, value in vars(klass).items():
            if _is_async(value):
                found.setdefault(id(getattr(value, "__func__", value)), f"{klass.__name__}.{attr}")
    for where, func in attached_callables(cls):
        if _is_async(func):
            found.setdefault(id(func), f"{getattr(func, '__qualname__', func)!s} (given to {where})")
    if found:
        raise DefinitionError(
            f"{cls.__name__}: {', '.join(found.values())} is async def; async actions are not "
            "supported by the orchestrator: a step runs synchronously under the subject's lock, "
            "from the event to the written state, and nothing would await the coroutine. Use a plain "
            "def, and do asynchronous work in a service the machine emits to"
        )


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


def _related_states(state: Any) -> Iterator[Any]:
    """``state``, its ancestors and its descendants: every state active whenever it is."""
    yield state
    parent = state.parent
    while parent is not None:
        yield parent
        parent = parent.parent
    stack = list(state.states)
    while stack:
        child = stack.pop()
        yield child
        stack.extend(child.states)


def _handled_events(state: Any) -> set[str]:
    return {str(descriptor) for transition in state.transitions for descriptor in transition.events}


def _bind_time(cls: Any) -> None:
    """Check and compile the ``after`` declarations, and learn which timer events exist."""
    internal = {
        name
        for state in cls.states_map.values()
        for name in _handled_events(state)
        if "." not in name
    }
    compiled: dict[str, tuple[tuple[str, float], ...]] = {}
    for state_id, delays in dict(cls.after).items():
        state = cls.states_map.get(state_id)
        if state is None:
            raise DefinitionError(
                f"{cls.__name__}.after names state '{state_id}', which the machine does not have "
                f"(states: {sorted(cls.states_map)})"
            )
        if not isinstance(delays, Mapping) or not delays:
            raise DefinitionError(
                f"{cls.__name__}.after['{state_id}'] must map event names to durations, e.g. {{'remind': '3d'}}"
            )
        handled = set().union(*(_handled_events(related) for related in _related_states(state)))
        entries = []
        for event, duration in delays.items():
            try:
                seconds = parse_duration(duration)
            except ValueError as error:
                raise DefinitionError(f"{cls.__name__}.after['{state_id}']['{event}']: {error}") from None
            if event not in handled:
                raise DefinitionError(
                    f"{cls.__name__}.after['{state_id}']: no transition from state '{state_id}' (or a state "
                    f"containing it, or inside it) handles the timer event '{event}'"
                )
            entries.append((event, seconds))
        compiled[state_id] = tuple(entries)
    for event in cls.timer_schemas:
        if event not in internal:
            raise DefinitionError(
                f"{cls.__name__}.timer_schemas names event '{event}', which no transition of the machine handles"
            )
    cls._arvo_after = compiled
    cls._arvo_timer_events = frozenset(internal)
    cls._arvo_handles_cancel = CANCEL_MACHINE_EVENT in internal


class ArvoMachine(StateChart[Any], metaclass=ArvoMachineMeta):  # type: ignore[misc]
    """Base class of orchestrator statecharts. Subclass it; do not instantiate it yourself.

    Class attributes to set:
        contract: the orchestrator contract version this machine implements.
        services: the service contract versions it calls (and hears back from).
        context_model: optional pydantic model of the context; a plain dict otherwise.
        ignore_unhandled_system_errors: ``True`` to ignore a ``sys.*.error`` that no transition
            handles; by default it fails the workflow (see the attribute).
        after: delayed transitions, ``{state id: {event name: duration}}``: while the state is
            active for that long, the machine receives the event (a transition of the state,
            of a state containing it or inside it, must handle it). Leaving the state cancels
            it. Checked at class creation.
        timer_schemas: optional pydantic models of timer events' data, ``{event name: model}``:
            data given to :meth:`schedule` is validated when the timer is set.

    A machine declares what cancelling its workflow does by handling the event ``cancel``
    (data ``{"reason": ...}``): it then cleans up, compensates and reaches a final state, and
    the workflow ends cancelled. Without such a transition a cancelled workflow ends at once.
    """

    catch_errors_as_events = False
    allow_event_without_transition = True
    #: A service's or child's system error (``sys.*.error``) that no transition of the active
    #: configuration handles fails the workflow (``UnhandledSystemError``, reported to the
    #: parent or initiator) instead of being dropped, which would leave the workflow waiting
    #: forever. ``True`` opts out: such errors are ignored, and counted by the orchestrator
    #: (``ignored["unhandled-system-error"]``). Other unhandled events are always ignored.
    ignore_unhandled_system_errors: ClassVar[bool] = False

    contract: ClassVar[VersionedArvoContract | None] = None
    services: ClassVar[tuple[VersionedArvoContract, ...]] = ()
    context_model: ClassVar[type[BaseModel] | None] = None
    after: ClassVar[Mapping[str, Mapping[str, Duration]]] = {}
    timer_schemas: ClassVar[Mapping[str, type[BaseModel]]] = {}

    # Set by the metaclass on concrete machines.
    source: ClassVar[str]
    version: ClassVar[str]
    _arvo_routes: ClassVar[dict[str, ContractRoute]]
    _arvo_services_by_accepts: ClassVar[dict[str, VersionedArvoContract]]
    _arvo_after: ClassVar[dict[str, tuple[tuple[str, float], ...]]] = {}
    _arvo_timer_events: ClassVar[frozenset[str]] = frozenset()
    _arvo_handles_cancel: ClassVar[bool] = False

    # Per step, set by the execution engine.
    context: Any
    arvo_event: ArvoEvent
    _emitted: list[EmittedEvent]
    _scheduled: list[ScheduledTimer]
    _unscheduled: list[str]

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
        deadline: Duration | None = None,
    ) -> None:
        """Queue an event to a service, validated now against that service's contract.

        Args:
            type: a service's accepts type (``com.value.read``), or any type with
                ``unchecked=True`` (notifications that no contract of this machine describes).
            data: the payload; validated and normalised by the service's accepts schema.
            to, redirectto, accesscontrol, executionunits, id, domain, extensions, dataschema:
                routing overrides with Arvo's meaning (spec 5.4).
            unchecked: allow a type that is not a service's accepts type (sent unvalidated).
            deadline: if no reply to this call (an event whose ``parentid`` is the call's id)
                has arrived by then, the machine receives the service's ``sys.<type>.error``
                with ``errorName`` ``DeadlineExceeded``; a reply arriving later is ignored.

        Raises:
            ContractViolation: the type is unknown (and not ``unchecked``), the data is invalid,
                or a deadline is given for a type with no contract (no system error to send).
        """
        tokens = domain_tokens(domain, "emit() 'domain'")
        deadline_s = self._deadline_seconds(type, deadline) if deadline is not None else None
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
                deadline_s=deadline_s,
            )
        )

    def _deadline_seconds(self, type: str, deadline: Duration) -> float:
        if type not in self._arvo_services_by_accepts:
            raise ContractViolation(
                f"[Emittable Event Creation] A deadline needs a service contract: '{type}' has none in machine "
                f"'{self.source}', so there is no system error event to send when it passes"
            )
        try:
            return parse_duration(deadline)
        except ValueError as error:
            raise ContractViolation(f"[Emittable Event Creation] emit('{type}', deadline=...): {error}") from None

    def schedule(
        self,
        event: str,
        *,
        after: Duration | None = None,
        at: datetime | None = None,
        data: Mapping[str, Any] | BaseModel | None = None,
        id: str | None = None,
    ) -> str:
        """Set a durable timer: the machine receives ``event`` with ``data`` then.

        Give either ``after`` (a duration) or ``at`` (a timezone-aware time); a time in the
        past fires at once. The timer lives until it fires or :meth:`cancel_timer` cancels it.

        Returns:
            The timer's id (``id`` if given), for :meth:`cancel_timer`.

        Raises:
            ContractViolation: the event is not handled by any transition, the data breaks the
                event's ``timer_schemas`` model or is not JSON, or the time is missing or invalid.
        """
        if event not in self._arvo_timer_events:
            raise ContractViolation(
                f"schedule('{event}'): no transition of machine '{type(self).__name__}' handles event '{event}' "
                f"(timer events: {sorted(self._arvo_timer_events)})"
            )
        if (after is None) == (at is None):
            raise ContractViolation(f"schedule('{event}'): give exactly one of after= (a duration) or at= (a time)")
        try:
            delay_s = parse_duration(after) if after is not None else None
            at_ms = to_epoch_ms(at) if at is not None else None
        except ValueError as error:
            raise ContractViolation(f"schedule('{event}'): {error}") from None
        payload = self._timer_payload(event, data)
        timer_id = id or f"{event}:{uuid.uuid5(SCHEDULE_ID_NAMESPACE, f'{self.arvo_event.id}|{len(self._scheduled)}')}"
        self._scheduled.append(ScheduledTimer(timer_id, event, payload, delay_s, at_ms))
        return timer_id

    def _timer_payload(self, event: str, data: Mapping[str, Any] | BaseModel | None) -> dict[str, Any]:
        raw = data.model_dump(mode="json", by_alias=True) if isinstance(data, BaseModel) else dict(data or {})
        schema = self.timer_schemas.get(event)
        if schema is not None:
            try:
                raw = schema.model_validate(raw).model_dump(mode="json", by_alias=True)
            except ValidationError as error:
                raise ContractViolation(f"schedule('{event}'): the data breaks {schema.__name__}: {error}") from None
        try:
            json.dumps(raw)
        except (TypeError, ValueError) as error:
            raise ContractViolation(f"schedule('{event}'): the data is not JSON ({error})") from None
        return raw

    def cancel_timer(self, timer_id: str) -> None:
        """Cancel a timer set by :meth:`schedule` (no effect if it already fired or is unknown)."""
        self._unscheduled.append(timer_id)

    @classmethod
    def route(cls, event_type: str) -> ContractRoute | None:
        """The contract that describes ``event_type`` for this machine, if any."""
        return cls._arvo_routes.get(event_type)
