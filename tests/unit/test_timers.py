"""Time in process: durable timers, deadlines on service calls, cancellation, the virtual clock.

Every workflow here runs on ``LocalBroker`` over ``InMemoryMachineMemory`` with a
``VirtualClock``: a workflow that waits three days runs in milliseconds, and the tests say how
far the clock moved. The same machines run through real workers in
``tests/e2e/test_time.py``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel
from statemachine import State

from orchestrator.broker import LocalBroker
from orchestrator.contract import create_orchestrator_contract
from orchestrator.errors import ContractViolation, DefinitionError, WorkflowFinished, WorkflowNotFound
from orchestrator.event import ArvoEvent, create_arvo_event
from orchestrator.machine import ArvoMachine
from orchestrator.memory.in_memory import InMemoryMachineMemory
from orchestrator.orchestrator import ArvoOrchestrator, StepOutcome, create_orchestrator
from orchestrator.record import WorkflowRecord
from orchestrator.timers import (
    CANCELLED_ERROR_NAME,
    DEADLINE_ERROR_NAME,
    TIMER_EVENT_TYPE,
    VirtualClock,
    parse_duration,
    timer_event_id,
)
from tests.unit.machines import INCREMENT, init_event, make_increment_handler, reply

DAY = 86400.0


class WaitInit(BaseModel):
    deadline_s: float = 30.0
    log: list[str] = []


class WaitDone(BaseModel):
    log: list[str]
    result: int | None = None
    error: str | None = None


wait_contract = create_orchestrator_contract(
    uri="#/test/time/wait", name="wait", versions={"1.0.0": {"init": WaitInit, "complete": WaitDone}}
)
call_contract = create_orchestrator_contract(
    uri="#/test/time/call", name="call", versions={"1.0.0": {"init": WaitInit, "complete": WaitDone}}
)
clean_contract = create_orchestrator_contract(
    uri="#/test/time/clean", name="clean", versions={"1.0.0": {"init": WaitInit, "complete": WaitDone}}
)


class _Logging(ArvoMachine):
    def note(self, data: dict[str, Any] | None = None, **_: Any) -> None:
        self.context["log"].append(str(self.arvo_event.data.get("event", self.arvo_event.type)))

    def output(self) -> dict[str, Any]:
        return {"log": self.context["log"], "result": self.context.get("result"), "error": self.context.get("error")}


class ReminderMachine(_Logging):
    """Waits three days, reminds, then finishes an hour later (delayed transitions only)."""

    contract = wait_contract.version("1.0.0")
    services = (INCREMENT,)
    after = {"waiting": {"remind": "3d"}, "reminded": {"finish": "1h"}}

    waiting = State(initial=True)
    reminded = State()
    done = State(final=True)
    remind = waiting.to(reminded, event="remind", on="note")
    finish = reminded.to(done, event="finish", on="note")
    answered = waiting.to(reminded, event="evt.number.increment.success", on="keep")

    def keep(self, data: dict[str, Any]) -> None:
        self.context["result"] = data["result"]


class CallMachine(_Logging):
    """Calls com.number.increment with a deadline; a timeout is handled as the service's error."""

    contract = call_contract.version("1.0.0")
    services = (INCREMENT,)

    calling = State(initial=True)
    done = State(final=True)
    ok = calling.to(done, event="evt.number.increment.success", on="keep")
    failed = calling.to(done, event="sys.com.number.increment.error", on="keep_error")

    def on_enter_calling(self) -> None:
        self.emit("com.number.increment", {"init": 1, "increment": 1}, deadline=self.context["deadline_s"])

    def keep(self, data: dict[str, Any]) -> None:
        self.context["result"] = data["result"]

    def keep_error(self, data: dict[str, Any]) -> None:
        self.context["error"] = data["errorName"]


class Nudge(BaseModel):
    count: int


class CleanupMachine(_Logging):
    """Schedules its own nudges; on cancel it compensates (a call) before finishing."""

    contract = clean_contract.version("1.0.0")
    services = (INCREMENT,)
    timer_schemas = {"nudge": Nudge}

    working = State(initial=True)
    compensating = State()
    done = State(final=True)
    nudged = working.to.itself(event="nudge", on="renudge")
    cancel = working.to(compensating, event="cancel", on="compensate")
    compensated = compensating.to(done, event="evt.number.increment.success")

    def on_enter_working(self) -> None:
        if not self.context["log"]:
            self.context["log"].append("start")
            self.context["first"] = self.schedule("nudge", after="1h", data={"count": 1})

    def renudge(self, data: dict[str, Any]) -> None:
        self.context["log"].append(f"nudge {data['count']}")
        self.schedule("nudge", after="1h", data={"count": data["count"] + 1})

    def compensate(self, data: dict[str, Any]) -> None:
        self.context["log"].append(f"cancel: {data['reason']}")
        self.emit("com.number.increment", {"init": 0, "increment": -1})


def _run(*machines: type[ArvoMachine], services: bool = True) -> tuple[LocalBroker, VirtualClock, list[ArvoOrchestrator]]:
    clock = VirtualClock(start=1_700_000_000.0)
    memory = InMemoryMachineMemory()
    orchestrators = [create_orchestrator(machines=[machine], memory=memory) for machine in machines]
    handlers: list[Any] = [*orchestrators, make_increment_handler()] if services else [*orchestrators]
    return LocalBroker(handlers, clock=clock), clock, orchestrators


def _record(orchestrator: ArvoOrchestrator, subject: str) -> WorkflowRecord:
    stored = orchestrator.memory.read(subject).record
    assert stored is not None
    return WorkflowRecord.from_dict(stored)


# -- durations -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30), ("5m", 300), ("2h", 7200), ("3d", 3 * DAY), ("2w", 14 * DAY), ("1mo", 30 * DAY),
     ("1h30m", 5400), ("1h 30m", 5400), ("PT30S", 30), ("P3D", 3 * DAY), ("P1M", 30 * DAY), ("PT1H30M", 5400),
     (90, 90), (0.25, 0.25), (timedelta(minutes=2), 120), (0, 0)],
)
def test_durations_from_milliseconds_to_months(text: Any, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["-5s", "soon", "3 days", "5x", "", "P", -1, timedelta(seconds=-1), True, None])
def test_bad_durations_are_refused_naming_the_value(bad: Any) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


# -- definitions ---------------------------------------------------------------------------------


def _define(after: dict[str, Any], **attrs: Any) -> type[ArvoMachine]:
    namespace: dict[str, Any] = {
        "contract": wait_contract.version("1.0.0"),
        "services": (INCREMENT,),
        "after": after,
        "waiting": (waiting := State(initial=True)),
        "done": (done := State(final=True)),
        "remind": waiting.to(done, event="remind"),
        **attrs,
    }
    return type("Defined", (ArvoMachine,), namespace)


@pytest.mark.parametrize(
    ("after", "message"),
    [
        ({"nowhere": {"remind": "1s"}}, "names state 'nowhere'"),
        ({"waiting": {"remind": "-1s"}}, r"after\['waiting'\]\['remind'\].*negative"),
        ({"waiting": {"remind": "whenever"}}, r"after\['waiting'\]\['remind'\].*not understood"),
        ({"waiting": {"ring": "1s"}}, "no transition from state 'waiting'.*'ring'"),
        ({"waiting": {}}, "must map event names to durations"),
    ],
)
def test_bad_delayed_transitions_are_definition_errors_naming_the_state(after: dict[str, Any], message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        _define(after)


def test_a_timer_schema_for_an_event_no_transition_handles_is_a_definition_error() -> None:
    with pytest.raises(DefinitionError, match="timer_schemas names event 'ring'"):
        _define({}, timer_schemas={"ring": Nudge})


# -- delayed transitions -------------------------------------------------------------------------


def test_a_workflow_that_waits_three_days_runs_in_milliseconds() -> None:
    broker, clock, (orchestrator,) = _run(ReminderMachine, services=False)
    started, wall = clock(), time.perf_counter()

    done = broker.run(init_event(wait_contract.version("1.0.0"), {}))

    assert done is not None
    assert done.type == "arvo.orc.wait.done"
    assert done.data["log"] == ["remind", "finish"]
    assert clock() - started == pytest.approx(3 * DAY + 3600)
    assert time.perf_counter() - wall < 2.0
    assert _record(orchestrator, done.subject).timers == {}


def test_advance_fires_only_what_is_due() -> None:
    broker, clock, (orchestrator,) = _run(ReminderMachine, services=False)
    init = init_event(wait_contract.version("1.0.0"), {})
    broker.publish(init)

    assert broker.advance("2d") == 0
    assert _record(orchestrator, init.subject).value == ["waiting"]
    assert broker.advance("1d") == 1
    assert _record(orchestrator, init.subject).value == ["reminded"]
    assert broker.next_timer_due() == pytest.approx(clock() + 3600)


def test_leaving_a_state_cancels_its_delayed_transition_and_a_late_firing_is_ignored_and_counted() -> None:
    broker, clock, (orchestrator,) = _run(ReminderMachine, services=False)
    init = init_event(wait_contract.version("1.0.0"), {})
    broker.publish(init)
    (timer_id,) = _record(orchestrator, init.subject).timers
    # The timer is claimed for firing (as a worker would), then the state is left before it arrives.
    memory = orchestrator.memory
    assert isinstance(memory, InMemoryMachineMemory)
    clock.advance("3d")
    (claimed,) = memory.claim_due_timers(int(clock() * 1000), 10)
    answer = create_arvo_event(
        source="com.number.increment",
        type="evt.number.increment.success",
        subject=init.subject,
        data={"result": 7},
        dataschema=INCREMENT.dataschema,
        to="arvo.orc.wait",
    )
    broker.publish(answer)
    assert _record(orchestrator, init.subject).value == ["reminded"]
    assert timer_id not in _record(orchestrator, init.subject).timers

    broker.publish(ArvoEvent.model_validate(claimed.event))

    assert claimed.event["id"] == timer_event_id(init.subject, timer_id)
    assert orchestrator.ignored["stale-timer"] == 1
    record = _record(orchestrator, init.subject)
    assert record.value == ["reminded"]
    assert record.state is not None
    assert record.state["context"]["log"] == []


def test_an_action_cancels_the_timer_it_set() -> None:
    class SnoozeMachine(_Logging):
        contract = wait_contract.version("1.0.0")
        services = (INCREMENT,)
        waiting = State(initial=True)
        done = State(final=True)
        ring = waiting.to(done, event="ring", on="note")
        snooze = waiting.to.itself(event="evt.number.increment.success", on="silence")

        def on_enter_waiting(self) -> None:
            if "alarm" not in self.context:
                self.context["alarm"] = self.schedule("ring", after="1h")

        def silence(self) -> None:
            self.cancel_timer(self.context["alarm"])

    broker, clock, (orchestrator,) = _run(SnoozeMachine, services=False)
    init = init_event(wait_contract.version("1.0.0"), {})
    broker.publish(init)
    assert broker.next_timer_due() == pytest.approx(clock() + 3600)
    broker.publish(
        create_arvo_event(
            source="com.number.increment", type="evt.number.increment.success", subject=init.subject,
            data={"result": 1}, dataschema=INCREMENT.dataschema, to="arvo.orc.wait",
        )
    )

    assert broker.next_timer_due() is None
    assert broker.advance("2h") == 0
    assert _record(orchestrator, init.subject).timers == {}


def test_a_duplicate_timer_event_is_a_no_op() -> None:
    broker, clock, (orchestrator,) = _run(ReminderMachine, services=False)
    init = init_event(wait_contract.version("1.0.0"), {})
    broker.publish(init)
    memory = orchestrator.memory
    assert isinstance(memory, InMemoryMachineMemory)
    clock.advance("3d")
    (claimed,) = memory.claim_due_timers(int(clock() * 1000), 10)
    fired = ArvoEvent.model_validate(claimed.event)

    assert orchestrator.process(fired).outcome is StepOutcome.APPLIED
    orchestrator.settle(fired)
    version = orchestrator.memory.read(init.subject).version
    assert orchestrator.process(fired).outcome is StepOutcome.DUPLICATE  # redelivered: consumed once
    assert orchestrator.memory.read(init.subject).version == version
    assert _record(orchestrator, init.subject).value == ["reminded"]


# -- timers set by actions -----------------------------------------------------------------------


def test_actions_schedule_timers_with_validated_data_and_each_fires_once() -> None:
    broker, clock, (orchestrator,) = _run(CleanupMachine)
    init = init_event(clean_contract.version("1.0.0"), {})
    broker.publish(init)

    assert broker.advance("3h30m") == 3

    record = _record(orchestrator, init.subject)
    assert record.state is not None
    assert record.state["context"]["log"] == ["start", "nudge 1", "nudge 2", "nudge 3"]
    assert len(record.timers) == 1


def test_a_schedule_in_the_past_fires_at_once() -> None:
    class PastMachine(_Logging):
        contract = wait_contract.version("1.0.0")
        services = (INCREMENT,)
        waiting = State(initial=True)
        done = State(final=True)
        remind = waiting.to(done, event="remind", on="note")

        def on_enter_waiting(self) -> None:
            self.schedule("remind", at=datetime(2001, 1, 1, tzinfo=UTC))

    broker, clock, _ = _run(PastMachine, services=False)
    started = clock()
    done = broker.run(init_event(wait_contract.version("1.0.0"), {}))
    assert done is not None
    assert done.data["log"] == ["remind"]
    assert clock() == started


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.schedule("nudge", after="1h", data={"count": "many"}), "breaks Nudge"),
        (lambda m: m.schedule("ring", after="1h"), "no transition .* handles event 'ring'"),
        (lambda m: m.schedule("nudge", data={"count": 1}), "exactly one of after= .* or at="),
        (lambda m: m.schedule("nudge", after="-1h", data={"count": 1}), "negative"),
        (lambda m: m.schedule("nudge", at=datetime(2030, 1, 1), data={"count": 1}), "no timezone"),
        (lambda m: m.schedule("cancel", after="1h", data={"when": object()}), "not JSON"),
    ],
)
def test_a_bad_timer_is_refused_when_it_is_set(call: Any, message: str) -> None:
    class BadMachine(CleanupMachine):
        def on_enter_working(self) -> None:
            call(self)

    broker, _, (orchestrator,) = _run(BadMachine)
    init = init_event(clean_contract.version("1.0.0"), {})
    broker.publish(init)
    (failure,) = broker.errors
    assert isinstance(failure.error, ContractViolation)
    assert __import__("re").search(message, str(failure.error))
    assert orchestrator.memory.read(init.subject).record is None  # nothing stored, nothing scheduled


# -- deadlines -----------------------------------------------------------------------------------


def test_a_call_answered_in_time_cancels_its_deadline() -> None:
    broker, clock, (orchestrator,) = _run(CallMachine)
    done = broker.run(init_event(call_contract.version("1.0.0"), {"deadline_s": 30}))
    assert done is not None
    assert done.data["result"] == 2
    assert broker.next_timer_due() is None
    assert _record(orchestrator, done.subject).calls == {}


def test_a_silent_service_reaches_the_machine_as_its_system_error_after_the_deadline() -> None:
    broker, clock, (orchestrator,) = _run(CallMachine, services=False)
    started = clock()

    done = broker.run(init_event(call_contract.version("1.0.0"), {"deadline_s": 30}))

    assert done is not None
    assert done.type == "arvo.orc.call.done"
    assert done.data["error"] == DEADLINE_ERROR_NAME
    assert clock() - started == pytest.approx(30)
    (call,) = [event for event in broker.undelivered if event.type == "com.number.increment"]
    record = _record(orchestrator, done.subject)
    assert record.expired_calls == (call.id,)


def test_a_reply_after_its_deadline_fired_is_ignored_and_counted() -> None:
    class WaitingCall(CallMachine):
        after = {}
        calling = State(initial=True)
        timed_out = State()
        done = State(final=True)
        ok = calling.to(done, event="evt.number.increment.success", on="keep")
        failed = calling.to(timed_out, event="sys.com.number.increment.error", on="keep_error")
        late = timed_out.to(done, event="evt.number.increment.success", on="keep")

    broker, clock, (orchestrator,) = _run(WaitingCall, services=False)
    init = init_event(call_contract.version("1.0.0"), {"deadline_s": 5})
    broker.publish(init)
    (call,) = [event for event in broker.undelivered if event.type == "com.number.increment"]
    broker.advance("5s")
    assert _record(orchestrator, init.subject).value == ["timed_out"]

    broker.publish(reply(call, {"result": 2}))

    assert orchestrator.ignored["late-reply"] == 1
    assert _record(orchestrator, init.subject).value == ["timed_out"]


def test_a_deadline_on_a_call_without_contract_is_refused_when_emitted() -> None:
    class Unchecked(CallMachine):
        def on_enter_calling(self) -> None:
            self.emit("com.nobody", {"x": 1}, unchecked=True, deadline="1s")

    broker, _, _ = _run(Unchecked)
    broker.publish(init_event(call_contract.version("1.0.0"), {}))
    (failure,) = broker.errors
    assert "deadline needs a service contract" in str(failure.error)


# -- cancellation --------------------------------------------------------------------------------


def test_cancel_ends_a_waiting_workflow_drops_its_timers_and_tells_the_initiator_why() -> None:
    broker, clock, (orchestrator,) = _run(ReminderMachine, services=False)
    init = init_event(wait_contract.version("1.0.0"), {})
    broker.publish(init)

    broker.cancel(init.subject, "customer withdrew")

    (terminal,) = [event for event in broker.undelivered if event.type == "sys.arvo.orc.wait.error"]
    assert terminal.data["errorName"] == CANCELLED_ERROR_NAME
    assert terminal.data["errorMessage"] == "customer withdrew"
    record = _record(orchestrator, init.subject)
    assert record.status == "cancelled"
    assert record.cancel is not None
    assert record.cancel["reason"] == "customer withdrew"
    assert record.timers == {}
    assert broker.next_timer_due() is None
    assert broker.run_until_idle() == 0


def test_no_event_is_applied_after_the_cancellation() -> None:
    broker, clock, (orchestrator,) = _run(CallMachine, services=False)
    init = init_event(call_contract.version("1.0.0"), {"deadline_s": 60})
    broker.publish(init)
    (call,) = [event for event in broker.undelivered if event.type == "com.number.increment"]
    broker.cancel(init.subject, "stop")

    broker.publish(reply(call, {"result": 2}))
    broker.advance("2m")

    assert orchestrator.ignored["workflow-cancelled"] == 1
    assert _record(orchestrator, init.subject).status == "cancelled"
    terminals = [event for event in broker.undelivered if event.subject == init.subject and event.type.startswith("sys.")]
    assert len(terminals) == 1


def test_a_machine_that_handles_cancel_compensates_then_ends_cancelled() -> None:
    broker, clock, (orchestrator,) = _run(CleanupMachine)
    init = init_event(clean_contract.version("1.0.0"), {})
    broker.publish(init)
    broker.advance("1h")

    broker.cancel(init.subject, "no longer needed")

    record = _record(orchestrator, init.subject)
    assert record.status == "cancelled"
    assert record.state is not None
    assert record.state["context"]["log"] == ["start", "nudge 1", "cancel: no longer needed"]
    terminal = [event for event in broker.undelivered if event.subject == init.subject]
    assert [event.type for event in terminal] == ["sys.arvo.orc.clean.error"]
    assert terminal[0].data["errorName"] == CANCELLED_ERROR_NAME
    assert broker.next_timer_due() is None  # the pending nudge went with the cancellation


def test_cancelling_unknown_or_finished_workflows_is_a_clear_error() -> None:
    broker, clock, _ = _run(ReminderMachine, services=False)
    with pytest.raises(WorkflowNotFound, match="not an orchestration subject"):
        broker.cancel("nope", "why")
    unknown = init_event(wait_contract.version("1.0.0"), {})
    with pytest.raises(WorkflowNotFound, match="no workflow with subject"):
        broker.cancel(unknown.subject, "why")
    done = broker.run(init_event(wait_contract.version("1.0.0"), {}))
    assert done is not None
    with pytest.raises(WorkflowFinished, match="already ended \\(done\\)"):
        broker.cancel(done.subject, "too late")
    running = init_event(wait_contract.version("1.0.0"), {})
    broker.publish(running)
    with pytest.raises(ValueError, match="'reason' must not be empty"):
        broker.cancel(running.subject, "  ")


def test_timer_events_are_ordinary_events_addressed_to_the_orchestrator() -> None:
    broker, clock, (orchestrator,) = _run(ReminderMachine, services=False)
    init = init_event(wait_contract.version("1.0.0"), {})
    broker.publish(init)
    memory = orchestrator.memory
    assert isinstance(memory, InMemoryMachineMemory)
    clock.advance("3d")
    (claimed,) = memory.claim_due_timers(int(clock() * 1000), 10)
    fired = ArvoEvent.model_validate(claimed.event)
    assert (fired.type, fired.to, fired.source, fired.subject) == (TIMER_EVENT_TYPE, "arvo.orc.wait", "arvo.orc.wait", init.subject)
    assert fired.parentid == init.id
    assert fired.data == {"timer": claimed.timer_id, "event": "remind", "kind": "after"}
