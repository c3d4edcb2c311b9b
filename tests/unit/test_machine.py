"""ArvoMachine: contract binding, exact event matching, emit, and statechart features in a run.

Covers spec 5.1 (service validation, scenarios 91-93), the DESIGN.md trap (python-statemachine
matches event descriptors by token prefix; this project makes contract event types exact),
``emit`` validation (spec 5.4 b/c) and compound, parallel, history and final states, guards
and eventless transitions, all run step by step through :class:`ArvoOrchestrator`.

XState-only setup checks of Arvo (actors, delays, ``enqueueArvoEvent``, ``invoke``/``after``
keys, scenarios 94, 95, 98) have no Python counterpart: the machine version *is* its contract's
version, and python-statemachine has no such keys.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel
from statemachine import State, StateChart

from orchestrator.contract import create_simple_arvo_contract
from orchestrator.errors import ConfigViolation, ContractViolation, DefinitionError
from orchestrator.event import ArvoEvent, create_arvo_event
from orchestrator.machine import ArvoMachine
from orchestrator.memory.in_memory import InMemoryMachineMemory
from orchestrator.orchestrator import ArvoOrchestrator
from tests.unit.machines import (
    INC,
    INCREMENT,
    READ,
    CounterMachine,
    KeyInit,
    ParallelMachine,
    Payload,
    counter_contract,
    increment_contract,
    init_event,
    make_increment_handler,
    make_value_read_handler,
    new_orchestrator,
    pair_contract,
    trap_contract,
    value_fetch,
    value_read,
)

TRAP = trap_contract.version("1.0.0")
FETCH = value_fetch.version("1.0.0")


def service_event(subject: str, type: str, data: dict[str, Any], dataschema: str, to: str) -> ArvoEvent:
    """A service reply addressed to an orchestrator (no contract check)."""
    return create_arvo_event(
        source="com.some.service", type=type, subject=subject, data=data, dataschema=dataschema, to=to
    )


# --------------------------------------------------------------------------- the prefix trap


def test_library_matches_event_descriptors_by_token_prefix() -> None:
    """The trap itself, on a plain StateChart: why ArvoMachine must make descriptors exact."""

    class Plain(StateChart):
        waiting = State(initial=True)
        short = State(final=True)
        long = State(final=True)
        got_short = waiting.to(short, event="evt.value.read")
        got_long = waiting.to(long, event="evt.value.read.success")

    machine = Plain()
    machine.send("evt.value.read.success")
    assert set(machine.configuration_values) == {"short"}  # the prefix transition won


class TrapMachine(ArvoMachine):
    """``evt.value.read`` (from com.value.fetch) is declared before ``evt.value.read.success``."""

    contract = TRAP
    services = (FETCH, READ)

    waiting = State(initial=True)
    short = State(final=True)
    long = State(final=True)
    got_short = waiting.to(short, event="evt.value.read", on="keep")
    got_long = waiting.to(long, event="evt.value.read.success", on="keep")

    def keep(self, data: dict[str, Any]) -> None:
        self.context["value"] = data["value"]

    def output(self) -> dict[str, Any]:
        return {"value": self.context["value"]}


class ShortOnlyMachine(ArvoMachine):
    """Only ``evt.value.read`` has a transition; ``evt.value.read.success`` must do nothing."""

    contract = TRAP
    services = (FETCH, READ)

    waiting = State(initial=True)
    short = State(final=True)
    got_short = waiting.to(short, event="evt.value.read")


def run_trap(machine: type[ArvoMachine], event_type: str) -> tuple[list[ArvoEvent], list[str]]:
    orchestrator = new_orchestrator(machine)
    init = init_event(TRAP, {"key": "k"})
    orchestrator.execute(init)
    schema = FETCH.dataschema if event_type == "evt.value.read" else READ.dataschema
    events = orchestrator.execute(
        service_event(init.subject, event_type, {"value": 7}, schema, "arvo.orc.trap")
    )
    record = orchestrator.memory.read(init.subject).record
    assert record is not None
    return events, record["value"]


def test_prefix_descriptor_does_not_fire_for_longer_event_type_design_trap() -> None:
    events, value = run_trap(TrapMachine, "evt.value.read.success")
    assert value == ["long"]
    assert [(e.type, e.data) for e in events] == [("arvo.orc.trap.done", {"value": 7})]


def test_exact_descriptor_still_fires_for_its_own_type_design_trap() -> None:
    events, value = run_trap(TrapMachine, "evt.value.read")
    assert value == ["short"]
    assert [e.data for e in events] == [{"value": 7}]


def test_only_prefix_transition_declared_longer_event_is_ignored_design_trap() -> None:
    events, value = run_trap(ShortOnlyMachine, "evt.value.read.success")
    assert value == ["waiting"]
    assert events == []


def test_exact_matching_applies_inside_compound_states_design_trap() -> None:
    class NestedTrap(ArvoMachine):
        contract = TRAP
        services = (FETCH, READ)

        class outer(State.Compound):
            waiting = State(initial=True)
            short = State()
            got_short = waiting.to(short, event="evt.value.read")
            back = short.to(waiting, event="evt.value.read")

        long = State(final=True)
        got_long = outer.to(long, event="evt.value.read.success")

    events, value = run_trap(NestedTrap, "evt.value.read.success")
    assert value == ["long"]


def test_unknown_dotted_event_is_rejected_at_class_creation() -> None:
    with pytest.raises(ConfigViolation, match=r"transition from 'waiting' on event 'evt\.value\.typo'"):

        class Typo(ArvoMachine):
            contract = TRAP
            services = (READ,)
            waiting = State(initial=True)
            done = State(final=True)
            go = waiting.to(done, event="evt.value.typo")


def test_service_accepts_type_is_not_an_event_the_machine_can_receive() -> None:
    with pytest.raises(ConfigViolation, match="com.value.read"):

        class Echo(ArvoMachine):
            contract = TRAP
            services = (READ,)
            waiting = State(initial=True)
            done = State(final=True)
            go = waiting.to(done, event="com.value.read")


def test_undotted_internal_event_names_are_allowed() -> None:
    class Internal(ArvoMachine):
        contract = TRAP
        services = (READ,)
        waiting = State(initial=True)
        done = State(final=True)
        go = waiting.to(done, event="internal_step")

    assert Internal.route("evt.value.read.success") is not None


# --------------------------------------------------------------------------- contract binding


def test_duplicate_service_uris_are_rejected_spec_92() -> None:
    class V(BaseModel):
        value: int

    two_versions = create_simple_arvo_contract(
        uri="#/test/two",
        type="two.versions",
        versions={"1.0.0": {"accepts": V, "emits": V}, "2.0.0": {"accepts": V, "emits": V}},
    )
    with pytest.raises(ConfigViolation) as info:

        class Dup(ArvoMachine):
            contract = TRAP
            services = (two_versions.version("1.0.0"), two_versions.version("2.0.0"))
            waiting = State(initial=True)
            done = State(final=True)
            go = waiting.to(done, event="evt.two.versions.success")

    assert str(info.value) == (
        "ViolationError<Config> The service contracts must have unique URIs. Multiple versions of the "
        "same contract are not allow. The contracts '#/test/two/1.0.0' and '#/test/two/2.0.0' have the "
        "same URI '#/test/two'"
    )


def test_self_contract_as_service_is_rejected_spec_93() -> None:
    with pytest.raises(ConfigViolation, match=r"^ViolationError<Config> Circular dependency detected"):

        class Circular(ArvoMachine):
            contract = INC
            services = (READ, increment_contract.version("1.0.0"))
            waiting = State(initial=True)
            done = State(final=True)
            go = waiting.to(done, event="evt.value.read.success")


def test_contract_must_be_an_orchestrator_contract_version() -> None:
    with pytest.raises(DefinitionError, match="must be a version of an orchestrator contract"):

        class NotOrchestrator(ArvoMachine):
            contract = READ  # type: ignore[assignment]
            waiting = State(initial=True)
            done = State(final=True)
            go = waiting.to(done, event="go")


def test_machine_source_version_and_routes() -> None:
    assert TrapMachine.source == "arvo.orc.trap"
    assert TrapMachine.version == "1.0.0"
    init_route = TrapMachine.route("arvo.orc.trap")
    assert init_route is not None
    assert init_route.is_self
    assert init_route.contract is TRAP
    route = TrapMachine.route("evt.value.read")
    assert route is not None
    assert route.contract is FETCH
    assert not route.is_self
    error_route = TrapMachine.route("sys.com.value.read.error")
    assert error_route is not None
    assert error_route.contract is READ
    assert TrapMachine.route("com.value.read") is None  # a service's accepts type
    assert TrapMachine.route("arvo.orc.trap.done") is None


def test_first_service_declaring_an_emit_type_wins() -> None:
    class Payload2(BaseModel):
        other: str

    duplicate_emit = create_simple_arvo_contract(
        uri="#/test/value/read2",
        type="value.read",
        versions={"1.0.0": {"accepts": KeyInit, "emits": Payload2}},
    )

    class FirstWins(ArvoMachine):
        contract = TRAP
        services = (READ, duplicate_emit.version("1.0.0"))
        waiting = State(initial=True)
        done = State(final=True)
        go = waiting.to(done, event="evt.value.read.success")

    route = FirstWins.route("evt.value.read.success")
    assert route is not None
    assert route.contract is READ


# --------------------------------------------------------------------------- statechart features


def test_parallel_state_with_compound_regions_completes_when_both_regions_are_final() -> None:
    orchestrator = new_orchestrator(ParallelMachine)
    init = init_event(pair_contract.version("1.0.0"), {"key": "abcd"})
    calls = orchestrator.execute(init)
    assert [e.type for e in calls] == ["com.value.read", "com.number.increment"]
    state = orchestrator.memory.read(init.subject).record
    assert state is not None
    assert set(state["value"]) == {"working", "left", "reading", "right", "adding"}

    (added,) = make_increment_handler().execute(calls[1])
    assert orchestrator.execute(added) == []
    state = orchestrator.memory.read(init.subject).record
    assert state is not None
    assert set(state["value"]) == {"working", "left", "reading", "right", "add_done"}
    assert state["status"] == "active"

    (read,) = make_value_read_handler().execute(calls[0])
    done = orchestrator.execute(read)
    assert [(e.type, e.data) for e in done] == [("arvo.orc.pair.done", {"value": 4, "result": 3})]
    state = orchestrator.memory.read(init.subject).record
    assert state is not None
    assert state["value"] == ["done"]
    assert state["status"] == "done"


def counter_step(
    orchestrator: ArvoOrchestrator, subject: str, event_type: str, value: int
) -> list[ArvoEvent]:
    if event_type == "evt.number.increment.success":
        event = service_event(
            subject, event_type, {"result": value}, INCREMENT.dataschema, "arvo.orc.counter"
        )
    else:
        event = service_event(subject, event_type, {"value": value}, READ.dataschema, "arvo.orc.counter")
    return orchestrator.execute(event)


def counter_state(orchestrator: ArvoOrchestrator, subject: str) -> dict[str, Any]:
    record = orchestrator.memory.read(subject).record
    assert record is not None
    return record


def test_compound_history_guards_and_eventless_transitions() -> None:
    orchestrator = new_orchestrator(CounterMachine)
    init = init_event(counter_contract.version("1.0.0"), {"start": 0, "limit": 5})
    assert orchestrator.execute(init) == []
    subject = init.subject
    assert counter_state(orchestrator, subject)["value"] == ["counting", "low"]

    counter_step(orchestrator, subject, "evt.number.increment.success", 1)
    assert counter_state(orchestrator, subject)["value"] == ["counting", "low"]  # guard is_high false
    counter_step(orchestrator, subject, "evt.number.increment.success", 1)
    assert counter_state(orchestrator, subject)["value"] == ["counting", "high"]  # eventless low -> high

    counter_step(orchestrator, subject, "evt.value.read.success", 0)
    record = counter_state(orchestrator, subject)
    assert record["value"] == ["paused"]
    assert record["state"]["history"] == {"h": ["high"]}

    counter_step(orchestrator, subject, "evt.value.read.success", 0)
    assert counter_state(orchestrator, subject)["value"] == ["counting", "high"]  # history restored

    done = counter_step(orchestrator, subject, "evt.number.increment.success", 3)
    assert [e.type for e in done] == ["arvo.orc.counter.done"]
    assert done[0].data == {"count": 5, "path": ["counting", "high", "pause", "resume", "counting", "high"]}
    assert counter_state(orchestrator, subject)["status"] == "done"


def test_eventless_guarded_transition_can_complete_on_init() -> None:
    orchestrator = new_orchestrator(CounterMachine)
    init = init_event(counter_contract.version("1.0.0"), {"start": 9, "limit": 3})
    events = orchestrator.execute(init)
    assert [(e.type, e.data["count"]) for e in events] == [("arvo.orc.counter.done", 9)]
    assert events[0].parentid == init.id


def test_event_without_transition_in_current_state_changes_nothing() -> None:
    orchestrator = new_orchestrator(ParallelMachine)
    init = init_event(pair_contract.version("1.0.0"), {"key": "abcd"})
    calls = orchestrator.execute(init)
    (read,) = make_value_read_handler().execute(calls[0])
    orchestrator.execute(read)
    before = counter_state(orchestrator, init.subject)["value"]
    again = read.model_copy(update={"id": "another-read-reply"})
    assert orchestrator.execute(again) == []
    assert counter_state(orchestrator, init.subject)["value"] == before


# --------------------------------------------------------------------------- emit


class EmitMachine(ArvoMachine):
    """Emits on entering ``waiting`` according to the init ``mode``."""

    contract = TRAP
    services = (READ,)

    waiting = State(initial=True)
    done = State(final=True)
    got = waiting.to(done, event="evt.value.read.success")

    def init_context(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"mode": data["key"]}

    def on_enter_waiting(self) -> None:
        mode = self.context["mode"]
        if mode == "unknown":
            self.emit("com.notif.test", {"x": 1})
        elif mode == "unchecked":
            self.emit("com.notif.test", {"x": 1}, unchecked=True, dataschema="#/notif/1.0.0")
        elif mode == "invalid":
            self.emit("com.value.read", {"key": ""})
        elif mode == "string-domain":
            self.emit("com.value.read", {"key": "k"}, domain="external")  # type: ignore[arg-type]
        elif mode == "model":
            self.emit("com.value.read", KeyInit(key="from-model"))
        elif mode == "overrides":
            self.emit(
                "com.value.read",
                {"key": "k", "ignored": True},
                to="com.custom.to",
                redirectto="com.custom.back",
                accesscontrol="role:other",
                executionunits=42,
                id="custom-id",
                domain=[None, "external"],
                extensions={"tenant": "t1"},
            )

    def output(self) -> dict[str, Any]:
        return {"value": 0}


def emit_init(mode: str) -> ArvoEvent:
    return init_event(TRAP, {"key": mode}, accesscontrol="role:admin")


def test_emit_of_unknown_type_is_contract_violation_and_nothing_is_persisted() -> None:
    orchestrator = new_orchestrator(EmitMachine)
    init = emit_init("unknown")
    with pytest.raises(ContractViolation, match="'com.notif.test' is not accepted by any service contract"):
        orchestrator.execute(init)
    assert orchestrator.memory.read(init.subject).record is None


def test_emit_unchecked_sends_raw_notification_spec_5_4_c() -> None:
    orchestrator = new_orchestrator(EmitMachine, executionunits=0.5)
    init = emit_init("unchecked")
    (event,) = orchestrator.execute(init)
    assert event.type == "com.notif.test"
    assert event.data == {"x": 1}
    assert event.to == "com.notif.test"
    assert event.dataschema == "#/notif/1.0.0"
    assert event.redirectto == "arvo.orc.trap"
    assert event.executionunits == 0.5
    assert event.accesscontrol == "role:admin"
    assert event.parentid == init.id


def test_emit_with_invalid_data_is_contract_violation() -> None:
    orchestrator = new_orchestrator(EmitMachine)
    init = emit_init("invalid")
    with pytest.raises(ContractViolation, match="Invalid event data: Schema validation failed") as info:
        orchestrator.execute(init)
    assert "Event type: com.value.read" in str(info.value)
    assert orchestrator.memory.read(init.subject).record is None


def test_emit_with_a_bare_string_domain_is_contract_violation() -> None:
    orchestrator = new_orchestrator(EmitMachine)
    init = emit_init("string-domain")
    with pytest.raises(ContractViolation, match="'domain' must be a list"):
        orchestrator.execute(init)
    assert orchestrator.memory.read(init.subject).record is None


def test_emit_accepts_a_pydantic_model() -> None:
    (event,) = new_orchestrator(EmitMachine).execute(emit_init("model"))
    assert event.data == {"key": "from-model"}
    assert event.dataschema == READ.dataschema


def test_emit_overrides_routing_fields_and_domains_spec_96() -> None:
    init = emit_init("overrides")
    events = new_orchestrator(EmitMachine).execute(init)
    assert [e.domain for e in events] == [None, "external"]
    assert {e.id for e in events} == {"custom-id"}
    for event in events:
        assert event.data == {"key": "k"}  # parsed by the service contract
        assert event.to == "com.custom.to"
        assert event.redirectto == "com.custom.back"
        assert event.accesscontrol == "role:other"
        assert event.executionunits == 42
        assert event.extensions == {"tenant": "t1"}
        assert event.dataschema == "#/examples/value/read/1.0.0"


# --------------------------------------------------------------------------- context and output


class Ctx(BaseModel):
    mode: str
    steps: int = 0


class TypedMachine(ArvoMachine):
    """A pydantic context model and a pydantic output."""

    contract = TRAP
    services = (READ,)
    context_model = Ctx

    waiting = State(initial=True)
    done = State(final=True)
    got = waiting.to(done, event="evt.value.read.success", on="count")

    def init_context(self, data: dict[str, Any]) -> Ctx:
        return Ctx(mode=data["key"])

    def count(self) -> None:
        self.context.steps += 1

    def output(self) -> Payload:
        return Payload(value=self.context.steps)


def test_pydantic_context_is_persisted_as_json_and_output_model_is_dumped() -> None:
    memory = InMemoryMachineMemory()
    orchestrator = new_orchestrator(TypedMachine, memory=memory)
    init = init_event(TRAP, {"key": "typed"})
    orchestrator.execute(init)
    record = memory.read(init.subject).record
    assert record is not None
    assert record["state"]["context"] == {"mode": "typed", "steps": 0}
    done = orchestrator.execute(
        service_event(init.subject, "evt.value.read.success", {"value": 1}, READ.dataschema, "arvo.orc.trap")
    )
    assert [(e.type, e.data) for e in done] == [("arvo.orc.trap.done", {"value": 1})]


def test_default_init_context_is_a_copy_of_the_validated_init_data() -> None:
    class Default(ArvoMachine):
        contract = increment_contract.version("1.0.0")
        services = (value_read.version("1.0.0"),)
        waiting = State(initial=True)
        done = State(final=True)
        go = waiting.to(done, event="evt.value.read.success")

    orchestrator = new_orchestrator(Default)
    init = init_event(data={"key": "k"})
    orchestrator.execute(init)
    record = orchestrator.memory.read(init.subject).record
    assert record is not None
    assert record["state"]["context"] == {"parentSubject$$": None, "key": "k", "modifier": 1}
