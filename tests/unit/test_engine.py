"""MachineExecutionEngine: start/resume on pooled instances, JSON snapshots, error propagation.

Spec 5.2 step 10 and scenarios 99-100, adapted: the Python engine keeps warm StateChart
instances per machine class (DESIGN.md: constructing one costs far more than an event), so
the tests pin that nothing leaks from one workflow to another through a reused instance, that
an instance which raised is not reused, and that a snapshot is plain JSON that resumes
identically after a round trip.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator.engine import ExecutionResult, MachineExecutionEngine
from orchestrator.errors import ExecutionViolation
from orchestrator.event import ArvoEvent, create_arvo_event
from orchestrator.machine import ArvoMachine
from tests.unit.machines import (
    INC,
    INCREMENT,
    READ,
    CounterMachine,
    DumbMachine,
    IncrementMachine,
    ParallelMachine,
    counter_contract,
    dumb_contract,
    init_event,
    pair_contract,
)


def service(subject: str, type: str, data: dict[str, Any], dataschema: str) -> ArvoEvent:
    return create_arvo_event(
        source="com.some.service", type=type, subject=subject, data=data, dataschema=dataschema
    )


def read_reply(subject: str, value: int) -> ArvoEvent:
    return service(subject, "evt.value.read.success", {"value": value}, READ.dataschema)


def increment_reply(subject: str, result: int) -> ArvoEvent:
    return service(subject, "evt.number.increment.success", {"result": result}, INCREMENT.dataschema)


def pool(engine: MachineExecutionEngine, machine: type[ArvoMachine]) -> list[ArvoMachine]:
    return engine._pools.get(machine, [])


# --------------------------------------------------------------------------- start and resume


def test_init_starts_the_machine_and_collects_emits_spec_99() -> None:
    engine = MachineExecutionEngine()
    init = init_event(INC, {"key": "abc", "modifier": 2})
    result = engine.execute(IncrementMachine, init, None)
    assert isinstance(result, ExecutionResult)
    assert result.status == "active"
    assert result.output is None
    assert [(e.type, e.data) for e in result.emitted] == [("com.value.read", {"key": "abc"})]
    assert result.snapshot["configuration"] == ["reading"]
    assert result.snapshot["context"] == {
        "key": "abc",
        "modifier": 2,
        "value": None,
        "final": None,
        "errors": [],
    }


def test_resume_sends_the_event_and_reports_done_with_output() -> None:
    engine = MachineExecutionEngine()
    init = init_event(INC, {"key": "abc", "modifier": 2})
    first = engine.execute(IncrementMachine, init, None)
    second = engine.execute(IncrementMachine, read_reply(init.subject, 5), first.snapshot)
    assert second.status == "active"
    assert [(e.type, e.data) for e in second.emitted] == [
        ("com.number.increment", {"init": 5, "increment": 2})
    ]
    third = engine.execute(IncrementMachine, increment_reply(init.subject, 7), second.snapshot)
    assert third.status == "done"
    assert third.emitted == []
    assert third.output == {"success": True, "error": [], "final": 7}
    assert third.snapshot["configuration"] == ["done"]


def test_non_init_event_without_snapshot_is_execution_violation_spec_99() -> None:
    init = init_event(INC)
    with pytest.raises(ExecutionViolation, match="Invalid initialization event"):
        MachineExecutionEngine().execute(IncrementMachine, read_reply(init.subject, 1), None)


def test_callbacks_receive_the_given_validated_data_not_the_raw_event_data() -> None:
    engine = MachineExecutionEngine()
    init = init_event(INC, {"key": "abc"})
    first = engine.execute(IncrementMachine, init, None, {"key": "validated", "modifier": 9})
    assert first.snapshot["context"]["key"] == "validated"
    assert first.emitted[0].data == {"key": "validated"}


def test_input_snapshot_is_not_mutated() -> None:
    engine = MachineExecutionEngine()
    init = init_event(INC)
    first = engine.execute(IncrementMachine, init, None)
    frozen = json.dumps(first.snapshot, sort_keys=True)
    engine.execute(IncrementMachine, read_reply(init.subject, 5), first.snapshot)
    assert json.dumps(first.snapshot, sort_keys=True) == frozen


# --------------------------------------------------------------------------- pooling


def test_instances_are_reused_between_steps() -> None:
    engine = MachineExecutionEngine()
    init = init_event(INC)
    first = engine.execute(IncrementMachine, init, None)
    (instance,) = pool(engine, IncrementMachine)
    engine.execute(IncrementMachine, read_reply(init.subject, 5), first.snapshot)
    assert pool(engine, IncrementMachine) == [instance]
    assert instance.context is None  # released instances hold no workflow state


def test_interleaved_workflows_do_not_leak_state_through_pooled_instances() -> None:
    engine = MachineExecutionEngine()
    a = init_event(INC, {"key": "a", "modifier": 1})
    b = init_event(INC, {"key": "b", "modifier": 100})
    a1 = engine.execute(IncrementMachine, a, None)
    b1 = engine.execute(IncrementMachine, b, None)
    a2 = engine.execute(IncrementMachine, read_reply(a.subject, 10), a1.snapshot)
    b2 = engine.execute(IncrementMachine, read_reply(b.subject, 20), b1.snapshot)
    assert a2.emitted[0].data == {"init": 10, "increment": 1}
    assert b2.emitted[0].data == {"init": 20, "increment": 100}
    # Resume A from its *first* snapshot again: the instance that just served B must not remember it.
    a2_again = engine.execute(IncrementMachine, read_reply(a.subject, 10), a1.snapshot)
    assert a2_again.snapshot == a2.snapshot
    a3 = engine.execute(IncrementMachine, increment_reply(a.subject, 11), a2.snapshot)
    b3 = engine.execute(IncrementMachine, increment_reply(b.subject, 120), b2.snapshot)
    assert a3.output == {"success": True, "error": [], "final": 11}
    assert b3.output == {"success": True, "error": [], "final": 120}
    assert len(pool(engine, IncrementMachine)) == 1


def test_a_fresh_start_on_a_reused_instance_starts_from_the_initial_state() -> None:
    engine = MachineExecutionEngine()
    a = init_event(INC)
    a1 = engine.execute(IncrementMachine, a, None)
    engine.execute(IncrementMachine, read_reply(a.subject, 3), a1.snapshot)  # instance left in 'incrementing'
    b1 = engine.execute(IncrementMachine, init_event(INC, {"key": "zz"}), None)
    assert b1.snapshot["configuration"] == ["reading"]
    assert [e.data for e in b1.emitted] == [{"key": "zz"}]
    # A completed workflow's instance goes back to the pool and serves new workflows.
    done = engine.execute(
        IncrementMachine,
        increment_reply(a.subject, 4),
        engine.execute(IncrementMachine, read_reply(a.subject, 3), a1.snapshot).snapshot,
    )
    assert done.status == "done"
    c1 = engine.execute(IncrementMachine, init_event(INC), None)
    assert c1.status == "active"
    assert c1.snapshot["configuration"] == ["reading"]


def test_pool_size_bounds_the_pool() -> None:
    engine = MachineExecutionEngine(pool_size=0)
    engine.execute(IncrementMachine, init_event(INC), None)
    assert pool(engine, IncrementMachine) == []
    assert engine.execute(IncrementMachine, init_event(INC), None).status == "active"


def test_concurrent_steps_on_one_engine_stay_independent() -> None:
    engine = MachineExecutionEngine(pool_size=4)
    failures: list[str] = []

    def run(worker: int) -> None:
        for round_ in range(15):
            modifier = worker * 1000 + round_
            init = init_event(INC, {"key": f"k{worker}", "modifier": modifier})
            first = engine.execute(IncrementMachine, init, None)
            second = engine.execute(IncrementMachine, read_reply(init.subject, worker), first.snapshot)
            if second.emitted[0].data != {"init": worker, "increment": modifier}:
                failures.append(f"worker {worker} round {round_}: {second.emitted[0].data}")

    threads = [threading.Thread(target=run, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(pool(engine, IncrementMachine)) <= 4


# --------------------------------------------------------------------------- errors


def test_exception_in_an_action_propagates_and_the_instance_is_dropped_spec_100() -> None:
    engine = MachineExecutionEngine()
    init = init_event(dumb_contract.version("1.0.0"), {"mode": "error"})
    first = engine.execute(DumbMachine, init, None)
    (instance,) = pool(engine, DumbMachine)
    with pytest.raises(RuntimeError, match="Normal error"):
        engine.execute(DumbMachine, read_reply(init.subject, 1), first.snapshot)
    assert pool(engine, DumbMachine) == []  # the instance that raised is not reused
    ok = init_event(dumb_contract.version("1.0.0"), {"mode": "ok"})
    okay = engine.execute(DumbMachine, ok, None)
    assert pool(engine, DumbMachine)
    assert pool(engine, DumbMachine)[0] is not instance
    assert engine.execute(DumbMachine, read_reply(ok.subject, 1), okay.snapshot).status == "done"


def test_exception_in_an_entry_action_on_start_propagates_spec_100() -> None:
    init = init_event(dumb_contract.version("1.0.0"), {"mode": "init-error"})
    with pytest.raises(RuntimeError, match="Init error"):
        MachineExecutionEngine().execute(DumbMachine, init, None)


def test_exception_in_the_context_factory_propagates_spec_100() -> None:
    class BadContext(IncrementMachine):
        def init_context(self, data: dict[str, Any]) -> Any:
            raise ValueError("no context for you")

    with pytest.raises(ValueError, match="no context for you"):
        MachineExecutionEngine().execute(BadContext, init_event(INC), None)


def test_exception_in_a_guard_propagates() -> None:
    class BadGuard(CounterMachine):
        def at_limit(self) -> bool:
            raise ZeroDivisionError("guard failed")

    with pytest.raises(ZeroDivisionError, match="guard failed"):
        MachineExecutionEngine().execute(BadGuard, init_event(counter_contract.version("1.0.0")), None)


# --------------------------------------------------------------------------- snapshots


def run_parallel(engine: MachineExecutionEngine) -> tuple[str, dict[str, Any]]:
    init = init_event(pair_contract.version("1.0.0"), {"key": "abcd"})
    first = engine.execute(ParallelMachine, init, None)
    second = engine.execute(ParallelMachine, increment_reply(init.subject, 3), first.snapshot)
    return init.subject, second.snapshot


def run_counter(engine: MachineExecutionEngine) -> tuple[str, dict[str, Any]]:
    init = init_event(counter_contract.version("1.0.0"), {"start": 0, "limit": 6})
    snapshot = engine.execute(CounterMachine, init, None).snapshot
    for event in (increment_reply(init.subject, 2), read_reply(init.subject, 0)):
        snapshot = engine.execute(CounterMachine, event, snapshot).snapshot
    return init.subject, snapshot


@pytest.mark.parametrize(
    ("machine", "setup", "next_event"),
    [
        (ParallelMachine, run_parallel, lambda subject: read_reply(subject, 9)),
        (CounterMachine, run_counter, lambda subject: read_reply(subject, 0)),
    ],
    ids=["parallel", "compound-with-history"],
)
def test_snapshot_is_json_and_resumes_identically_after_a_round_trip(
    machine: type[ArvoMachine], setup: Any, next_event: Any
) -> None:
    engine = MachineExecutionEngine()
    subject, snapshot = setup(engine)
    text = json.dumps(snapshot)
    restored = json.loads(text)
    assert restored == snapshot
    event = next_event(subject)
    direct = engine.execute(machine, event, snapshot)
    round_trip = engine.execute(machine, event, restored)
    other_engine = MachineExecutionEngine().execute(machine, event, json.loads(text))
    for result in (round_trip, other_engine):
        assert result.snapshot == direct.snapshot
        assert result.status == direct.status
        assert result.output == direct.output
        assert [(e.type, e.data) for e in result.emitted] == [(e.type, e.data) for e in direct.emitted]
    json.dumps(direct.snapshot)


def test_history_survives_the_snapshot() -> None:
    engine = MachineExecutionEngine()
    subject, snapshot = run_counter(engine)
    assert snapshot["configuration"] == ["paused"]
    assert snapshot["history"] == {"h": ["high"]}
    resumed = engine.execute(CounterMachine, read_reply(subject, 0), json.loads(json.dumps(snapshot)))
    assert resumed.snapshot["configuration"] == ["counting", "high"]


class Appender(DumbMachine):
    """A dict context with a nested list that an action mutates before failing (or not)."""

    def init_context(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"mode": data["mode"], "items": [], "when": None}

    def maybe_fail(self) -> None:
        self.context["items"].append("partial")
        if self.context["mode"] == "error":
            raise RuntimeError("Normal error")
        if self.context["mode"] == "not-json":
            self.context["when"] = datetime(2025, 1, 1, tzinfo=UTC)


def test_resume_never_mutates_the_given_snapshot_fix_10_4() -> None:
    engine = MachineExecutionEngine()
    init = init_event(dumb_contract.version("1.0.0"), {"mode": "ok"})
    first = engine.execute(Appender, init, None)
    frozen = json.dumps(first.snapshot, sort_keys=True)
    second = engine.execute(Appender, read_reply(init.subject, 1), first.snapshot)
    assert second.snapshot["context"]["items"] == ["partial"]
    assert json.dumps(first.snapshot, sort_keys=True) == frozen
    assert first.snapshot["context"]["items"] == []


def test_failed_step_leaves_the_given_snapshot_untouched_fix_10_4() -> None:
    engine = MachineExecutionEngine()
    init = init_event(dumb_contract.version("1.0.0"), {"mode": "error"})
    first = engine.execute(Appender, init, None)
    with pytest.raises(RuntimeError, match="Normal error"):
        engine.execute(Appender, read_reply(init.subject, 1), first.snapshot)
    assert first.snapshot["context"]["items"] == []


def test_a_context_that_is_not_json_fails_the_step() -> None:
    engine = MachineExecutionEngine()
    init = init_event(dumb_contract.version("1.0.0"), {"mode": "not-json"})
    first = engine.execute(Appender, init, None)
    with pytest.raises(TypeError, match="context is not JSON"):
        engine.execute(Appender, read_reply(init.subject, 1), first.snapshot)
