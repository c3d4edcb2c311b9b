"""No silent stall (issue 9, item 4): what used to leave a workflow waiting forever now fails loudly.

1. A ``sys.*.error`` that no transition of the active configuration handles fails the workflow
   (``UnhandledSystemError``: a failure record with the last good state, the workflow's system
   error to its parent or initiator) instead of being dropped by
   ``allow_event_without_transition``; a machine opts out with
   ``ignore_unhandled_system_errors = True`` (then it is ignored and counted). Other unhandled
   events are still ignored, and only system errors pay for the check.
2. An ``async def`` method or callback is refused when the machine class is created (its
   coroutine was never awaited and the workflow was stored with an empty configuration).
3. An init whose ``parentSubject$$`` is null or missing while its subject replies to another
   orchestrator is refused (an ExecutionViolation naming the field): its completion would come
   back under its own subject, which that orchestrator ignores as foreign, forever.

Everything runs in process, with small machines defined here.
"""

from __future__ import annotations

from typing import Any

import pytest
from statemachine import State

import orchestrator.engine as engine_module
from orchestrator.broker import LocalBroker
from orchestrator.contract import create_orchestrator_contract
from orchestrator.engine import MachineExecutionEngine
from orchestrator.errors import (
    ContractViolation,
    DefinitionError,
    ExecutionViolation,
    UnhandledSystemError,
)
from orchestrator.event import ArvoEvent
from orchestrator.handler import HandlerInput, create_event_handler
from orchestrator.machine import ArvoMachine
from orchestrator.memory.in_memory import InMemoryMachineMemory
from orchestrator.orchestrator import ArvoOrchestrator, StepOutcome
from tests.unit.machines import (
    CLIENT,
    INCREMENT,
    READ,
    ChildMachine,
    Empty,
    KeyInit,
    ParentMachine,
    child_contract,
    init_event,
    make_increment_handler,
    make_value_read_handler,
    new_orchestrator,
    number_increment,
    parent_contract,
    reply,
)

stall_contract = create_orchestrator_contract(
    uri="#/test/orchestrator/stall", name="stall", versions={"1.0.0": {"init": KeyInit, "complete": Empty}}
)
STALL = stall_contract.version("1.0.0")
CHILD = child_contract.version("1.0.0")
PARENT = parent_contract.version("1.0.0")
READ_ERROR = "sys.com.value.read.error"
STORE_DOWN = {"errorName": "StoreError", "errorMessage": "store down", "errorStack": None}


class StallMachine(ArvoMachine):
    """Reads a value and waits for the reply; no transition handles the read's system error."""

    contract = STALL
    services = (READ, INCREMENT)

    waiting = State(initial=True)
    done = State(final=True)
    got = waiting.to(done, event="evt.value.read.success")

    def on_enter_waiting(self) -> None:
        self.emit("com.value.read", {"key": self.context["key"]})


class IgnoringStallMachine(StallMachine):
    """The same machine, opting out: unhandled system errors are ignored (and counted)."""

    ignore_unhandled_system_errors = True


class GuardedMachine(ArvoMachine):
    """Handles the read's system error only when its guard agrees (errorName 'Retryable')."""

    contract = STALL
    services = (READ,)

    waiting = State(initial=True)
    done = State(final=True)
    got = waiting.to(done, event="evt.value.read.success")
    failed = waiting.to(done, event=READ_ERROR, cond="retryable")

    def on_enter_waiting(self) -> None:
        self.emit("com.value.read", {"key": self.context["key"]})

    def retryable(self, data: dict[str, Any]) -> bool:
        return bool(data["errorName"] == "Retryable")


class CompoundMachine(ArvoMachine):
    """The system error is handled by a transition of the compound state around the waiting one."""

    contract = STALL
    services = (READ,)

    class working(State.Compound):
        waiting = State(initial=True)
        read = State(final=True)
        got = waiting.to(read, event="evt.value.read.success")

    done = State(final=True)
    done_state_working = working.to(done)
    failed = working.to(done, event=READ_ERROR)

    def on_enter_waiting(self) -> None:
        self.emit("com.value.read", {"key": self.context["key"]})


def started(*machines: type[ArvoMachine]) -> tuple[ArvoOrchestrator, ArvoEvent, ArvoEvent]:
    """An orchestrator over ``machines`` with one workflow started: (orchestrator, init, read call)."""
    orchestrator = new_orchestrator(*machines)
    init = init_event(STALL, {"key": "abc"})
    (call,) = orchestrator.execute(init)
    assert call.type == "com.value.read"
    return orchestrator, init, call


def read_error(call: ArvoEvent, data: dict[str, Any] = STORE_DOWN) -> ArvoEvent:
    return reply(call, data, type=READ_ERROR, dataschema=f"{READ.uri}/0.0.0")


def stored(orchestrator: ArvoOrchestrator, subject: str) -> tuple[dict[str, Any], int]:
    read = orchestrator.memory.read(subject)
    assert read.record is not None
    return read.record, read.version


# --------------------------------------------------------------------------- 1. unhandled sys errors


def test_an_unhandled_system_error_fails_the_workflow_and_reports_to_the_initiator() -> None:
    orchestrator, init, call = started(StallMachine)
    before, version = stored(orchestrator, init.subject)
    error = read_error(call)

    result = orchestrator.process(error)
    orchestrator.settle(error)

    assert result.outcome is StepOutcome.FAILED
    (report,) = result.events
    assert report.type == "sys.arvo.orc.stall.error"
    assert (report.to, report.subject, report.parentid) == (CLIENT, init.subject, init.id)
    assert report.data["errorName"] == "UnhandledSystemError"
    for part in (READ_ERROR, "StoreError", "store down", "['waiting']", "ignore_unhandled_system_errors"):
        assert part in report.data["errorMessage"]
    record, after = stored(orchestrator, init.subject)
    assert after == version + 1
    assert record["executionStatus"] == "failure"
    assert record["value"] == before["value"] == ["waiting"]  # the last good state
    assert record["state"] == before["state"]
    assert record["error"]["name"] == "UnhandledSystemError"
    assert "store down" in record["error"]["message"]
    assert record["failedEventId"] == error.id
    assert orchestrator.ignored["unhandled-system-error"] == 0


def test_the_engine_raises_it_with_the_event_type_and_the_services_error() -> None:
    orchestrator, init, call = started(StallMachine)
    snapshot = orchestrator.memory.read(init.subject).record["state"]  # type: ignore[index]
    engine = MachineExecutionEngine()
    with pytest.raises(UnhandledSystemError) as raised:
        engine.execute(StallMachine, read_error(call), snapshot, dict(STORE_DOWN))
    error = raised.value
    assert (error.event_type, error.error_name, error.error_message) == (
        READ_ERROR,
        "StoreError",
        "store down",
    )
    assert error.configuration == ("waiting",)
    assert not error.retryable
    # Nothing ran but the check: the instance went back to the pool.
    assert len(engine._pools[StallMachine]) == 1


def test_a_child_whose_service_fails_unhandled_reports_to_its_parent_which_completes() -> None:
    def broken(request: HandlerInput) -> dict[str, Any]:
        raise RuntimeError("adder broke")

    memory = InMemoryMachineMemory()
    child = new_orchestrator(ChildMachine, memory=memory)  # no transition for the adder's error
    broker = LocalBroker(
        [
            create_event_handler(contract=number_increment, handlers={"1.0.0": broken}),
            new_orchestrator(ParentMachine, memory=memory),
            child,
        ]
    )
    init = init_event(PARENT, {"value": 1, "parent": "self"})
    done = broker.run(init)  # before: None, the parent waited forever
    assert broker.errors == []
    assert done is not None
    assert done.type == "arvo.orc.parent.done"
    assert done.data["result"] is None
    assert "sys.com.number.increment.error" in done.data["error"]
    assert "adder broke" in done.data["error"]
    child_error = next(e for e in broker.history if e.type == "sys.arvo.orc.child.error")
    assert child_error.subject == init.subject  # on the parent's subject
    child_init = next(e for e in broker.history if e.type == "arvo.orc.child")
    record, _ = stored(child, child_init.subject)
    assert record["executionStatus"] == "failure"
    assert record["value"] == ["adding"]


def test_a_machine_that_opts_out_ignores_it_counts_it_and_carries_on() -> None:
    orchestrator, init, call = started(IgnoringStallMachine)
    before, version = stored(orchestrator, init.subject)

    result = orchestrator.process(read_error(call))

    assert (result.events, result.outcome, result.reason) == (
        [],
        StepOutcome.IGNORED,
        "unhandled-system-error",
    )
    assert orchestrator.ignored["unhandled-system-error"] == 1
    assert stored(orchestrator, init.subject) == (before, version)  # nothing written
    (answer,) = make_value_read_handler().execute(call)
    (done,) = orchestrator.execute(answer)
    assert done.type == "arvo.orc.stall.done"


def test_the_opt_out_is_an_explicit_documented_class_attribute() -> None:
    assert ArvoMachine.ignore_unhandled_system_errors is False
    assert StallMachine.ignore_unhandled_system_errors is False
    assert "ignore_unhandled_system_errors" in (ArvoMachine.__doc__ or "")


def test_other_unhandled_events_are_still_ignored_as_before() -> None:
    orchestrator, init, call = started(StallMachine)
    _, version = stored(orchestrator, init.subject)
    stray = reply(call, {"result": 3}, type="evt.number.increment.success", dataschema=INCREMENT.dataschema)

    result = orchestrator.process(stray)

    assert (result.events, result.outcome) == ([], StepOutcome.APPLIED)
    record, after = stored(orchestrator, init.subject)
    assert (record["executionStatus"], record["value"], after) == ("normal", ["waiting"], version + 1)


def test_only_system_errors_pay_for_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    real = engine_module.has_enabled_transition

    def spy(instance: Any, event: str, **kwargs: Any) -> bool:
        asked.append(event)
        return real(instance, event, **kwargs)

    monkeypatch.setattr(engine_module, "has_enabled_transition", spy)
    orchestrator, init, call = started(StallMachine)
    (answer,) = make_value_read_handler().execute(call)
    (done,) = orchestrator.execute(answer)
    assert done.type == "arvo.orc.stall.done"
    assert asked == []

    orchestrator, init, call = started(StallMachine)
    orchestrator.execute(read_error(call))
    assert asked == [READ_ERROR]


@pytest.mark.parametrize(("error_name", "outcome"), [("Retryable", "applied"), ("Fatal", "failed")])
def test_a_guarded_transition_handles_it_only_when_its_guard_holds(error_name: str, outcome: str) -> None:
    orchestrator, init, call = started(GuardedMachine)
    result = orchestrator.process(read_error(call, {**STORE_DOWN, "errorName": error_name}))
    assert result.outcome == outcome
    if outcome == "applied":
        assert [e.type for e in result.events] == ["arvo.orc.stall.done"]
    else:
        assert "Fatal" in result.events[0].data["errorMessage"]


def test_a_transition_of_an_enclosing_compound_state_handles_it() -> None:
    orchestrator, init, call = started(CompoundMachine)
    result = orchestrator.process(read_error(call))
    assert result.outcome is StepOutcome.APPLIED
    assert [e.type for e in result.events] == ["arvo.orc.stall.done"]


def test_the_increment_example_still_handles_its_service_errors() -> None:
    orchestrator = new_orchestrator()
    (call,) = orchestrator.execute(init_event())
    (done,) = orchestrator.execute(read_error(call))
    assert done.data == {"success": False, "error": ["store down"], "final": None}


# --------------------------------------------------------------------------- 2. async actions


async def _coroutine_function(*args: Any, **kwargs: Any) -> None:
    return None


class _AsyncHelper:
    async def notify(self) -> None:
        return None


@pytest.mark.parametrize(
    ("attribute", "referenced_as"),
    [
        ("on_enter_waiting", "an entry action by naming convention"),
        ("on_exit_waiting", "an exit action by naming convention"),
        ("on_got", "an event action by naming convention"),
        ("keep", "a transition's on="),
        ("prepare", "a transition's before="),
        ("audit", "a transition's after="),
        ("allowed", "a transition's cond="),
        ("output", "the completion data"),
        ("init_context", "the context factory"),
    ],
)
def test_an_async_method_is_refused_at_class_creation(attribute: str, referenced_as: str) -> None:
    mixin = type("Mixin", (), {attribute: _coroutine_function})

    with pytest.raises(DefinitionError) as refused:

        class AsyncMachine(mixin, ArvoMachine):  # type: ignore[valid-type,misc]
            contract = STALL
            services = (READ,)
            waiting = State(initial=True)
            done = State(final=True)
            got = waiting.to(
                done,
                event="evt.value.read.success",
                on="keep",
                before="prepare",
                after="audit",
                cond="allowed",
            )

            def keep(self) -> None: ...

            def prepare(self) -> None: ...

            def audit(self) -> None: ...

            def allowed(self) -> bool:
                return True

    message = str(refused.value)
    assert f"Mixin.{attribute}" in message, referenced_as
    assert "AsyncMachine" in message
    assert "async actions are not supported by the orchestrator" in message
    assert "synchronously under the subject's lock" in message


def test_an_async_def_in_the_class_body_is_refused_naming_the_class_and_the_method() -> None:
    with pytest.raises(DefinitionError, match=r"AsyncBody: AsyncBody\.on_enter_waiting is async def"):

        class AsyncBody(ArvoMachine):
            contract = STALL
            services = (READ,)
            waiting = State(initial=True)
            done = State(final=True)
            got = waiting.to(done, event="evt.value.read.success")

            async def on_enter_waiting(self) -> None:
                self.emit("com.value.read", {"key": "k"})


def test_an_async_callable_given_directly_to_a_transition_is_refused() -> None:
    with pytest.raises(DefinitionError, match=r"_coroutine_function \(given to transition .*\) is async def"):

        class AsyncCallable(ArvoMachine):
            contract = STALL
            services = (READ,)
            waiting = State(initial=True)
            done = State(final=True)
            got = waiting.to(done, event="evt.value.read.success", on=_coroutine_function)


def test_an_async_helper_on_an_abstract_base_is_refused_with_the_concrete_class() -> None:
    class Base(ArvoMachine):
        async def helper(self) -> None:
            return None

    with pytest.raises(DefinitionError, match=r"Concrete: Base\.helper is async def"):

        class Concrete(Base):
            contract = STALL
            services = (READ,)
            waiting = State(initial=True)
            done = State(final=True)
            got = waiting.to(done, event="evt.value.read.success")


def test_sync_methods_and_unrelated_async_attributes_are_accepted() -> None:
    class Fine(ArvoMachine):
        contract = STALL
        services = (READ,)
        helper = _AsyncHelper  # a class, not a coroutine function
        waiting = State(initial=True)
        done = State(final=True)
        got = waiting.to(done, event="evt.value.read.success", on=lambda: None)

    assert Fine.source == "arvo.orc.stall"


# --------------------------------------------------------------------------- 3. parentSubject$$


def test_a_null_parent_subject_replying_to_another_orchestrator_is_refused_naming_the_field() -> None:
    child = new_orchestrator(ChildMachine)
    # What a parent orchestrator sends when it starts a child without parentSubject$$: the
    # subject's initiator and meta.redirectto are the parent orchestrator.
    init = init_event(CHILD, {"value": 1}, source="arvo.orc.parent", redirectto="arvo.orc.parent")
    assert init.data["parentSubject$$"] is None
    with pytest.raises(ExecutionViolation) as refused:
        child.execute(init)
    message = str(refused.value)
    assert "parentSubject$$ is null" in message
    assert "'arvo.orc.parent'" in message
    assert "ignores as foreign" in message
    assert not refused.value.retryable
    assert child.memory.read(init.subject).record is None


def test_a_missing_parent_subject_replying_to_another_orchestrator_is_refused_naming_the_field() -> None:
    child = new_orchestrator(ChildMachine)
    init = init_event(CHILD, {"value": 1}, source="arvo.orc.parent")
    init = init.model_copy(update={"data": {"value": 1}})
    with pytest.raises(ExecutionViolation, match=r"parentSubject\$\$ is missing .*'arvo\.orc\.parent'"):
        child.execute(init)


def test_a_missing_parent_subject_otherwise_fails_contract_validation_naming_the_field() -> None:
    child = new_orchestrator(ChildMachine)
    init = init_event(CHILD, {"value": 1})
    init = init.model_copy(update={"data": {"value": 1}})
    with pytest.raises(ContractViolation, match=r"parentSubject\$\$\n\s+Field required"):
        child.execute(init)


@pytest.mark.parametrize(
    ("source", "redirectto"),
    [
        (CLIENT, None),  # a root workflow started by a client
        ("arvo.orc.parent", "com.test.sink"),  # detached from its parent: replies go to a service
        (CLIENT, "arvo.orc.child"),  # replies to this very orchestrator: nobody waits elsewhere
    ],
)
def test_a_null_parent_subject_is_fine_when_no_other_orchestrator_waits(
    source: str, redirectto: str | None
) -> None:
    child = new_orchestrator(ChildMachine)
    init = init_event(CHILD, {"value": 1}, source=source, redirectto=redirectto)
    (call,) = child.execute(init)
    assert call.type == "com.number.increment"


def test_a_parent_that_omits_parent_subject_gets_a_dead_letter_not_a_silent_hang() -> None:
    memory = InMemoryMachineMemory()
    broker = LocalBroker(
        [
            make_increment_handler(),
            new_orchestrator(ParentMachine, memory=memory),
            new_orchestrator(ChildMachine, memory=memory),
        ]
    )
    init = init_event(PARENT, {"value": 1, "parent": "none"})
    assert broker.run(init) is None
    (refused,) = broker.errors
    assert refused.event.type == "arvo.orc.child"
    assert isinstance(refused.error, ExecutionViolation)
    assert "parentSubject$$" in str(refused.error)
