"""Nested orchestrations (spec 5.7, scenarios 80, 85, 86) run end to end on the LocalBroker.

``arvo.orc.parent`` starts ``arvo.orc.child`` (listed among its services through the child's
orchestrator contract) with ``parentSubject$$`` = its own subject; the child adds one through
``com.number.increment`` and its completion comes back to the parent *on the parent's subject*.
Also pinned: a child started by the parent without a parent subject is refused (Arvo runs it as
a root workflow whose completion the parent ignores as foreign, and the parent hangs), an
invalid ``parentSubject$$`` is an ExecutionViolation both when the parent emits it (spec 85)
and when an init event carries it (fix 10.15), and child system errors travel back like
completions (fix 10.13).
"""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.broker import LocalBroker
from orchestrator.errors import ExecutionViolation
from orchestrator.event import ArvoEvent
from orchestrator.memory.in_memory import InMemoryMachineMemory
from orchestrator.orchestrator import ArvoOrchestrator
from orchestrator.subject import OrchestrationSubject
from tests.unit.machines import (
    CLIENT,
    INCREMENT,
    ChildMachine,
    ParentMachine,
    child_contract,
    init_event,
    make_increment_handler,
    new_orchestrator,
    parent_contract,
    root_subject,
)

PARENT = parent_contract.version("1.0.0")
CHILD = child_contract.version("1.0.0")


def system(
    memory: InMemoryMachineMemory | None = None, child: type[Any] = ChildMachine
) -> tuple[LocalBroker, ArvoOrchestrator, ArvoOrchestrator]:
    memory = memory or InMemoryMachineMemory()
    parent = new_orchestrator(ParentMachine, memory=memory, executionunits=1)
    child_orchestrator = new_orchestrator(child, memory=memory, executionunits=2)
    broker = LocalBroker([make_increment_handler(), parent, child_orchestrator])
    return broker, parent, child_orchestrator


def parent_init(parent: str = "self", **options: Any) -> ArvoEvent:
    return init_event(PARENT, {"value": 41, "parent": parent}, **options)


def test_nested_orchestration_end_to_end_spec_80() -> None:
    broker, parent, child = system()
    init = parent_init(accesscontrol="role:admin")
    done = broker.run(init)
    assert broker.errors == []
    assert done is not None
    assert [(e.type, e.source, e.to) for e in broker.history] == [
        ("arvo.orc.parent", CLIENT, "arvo.orc.parent"),
        ("arvo.orc.child", "arvo.orc.parent", "arvo.orc.child"),
        ("com.number.increment", "arvo.orc.child", "com.number.increment"),
        ("evt.number.increment.success", "com.number.increment", "arvo.orc.child"),
        ("arvo.orc.child.done", "arvo.orc.child", "arvo.orc.parent"),
        ("arvo.orc.parent.done", "arvo.orc.parent", CLIENT),
    ]
    _, child_init, call, answer, child_done, parent_done = broker.history

    # The child init: parentSubject$$ is the parent's subject; a new subject names the child.
    assert child_init.data == {"parentSubject$$": init.subject, "value": 41}
    assert child_init.subject != init.subject
    assert child_init.parentid == init.id
    assert child_init.redirectto == "arvo.orc.parent"
    assert child_init.dataschema == "#/test/orchestrator/child/1.0.0"
    assert child_init.executionunits == 1
    content = OrchestrationSubject.parse(child_init.subject)
    assert content.orchestrator.name == "arvo.orc.child"
    assert content.orchestrator.version == "1.0.0"
    assert content.execution.initiator == "arvo.orc.parent"
    assert content.meta["redirectto"] == "arvo.orc.parent"

    # The child's own steps run on the child subject.
    assert call.subject == answer.subject == child_init.subject
    assert call.parentid == child_init.id

    # The child's completion comes back on the parent's subject, to the parent.
    assert child_done.subject == init.subject
    assert child_done.to == "arvo.orc.parent"
    assert child_done.parentid == child_init.id  # the child's init event
    assert child_done.data == {"result": 42}
    assert child_done.domain is None
    assert child_done.executionunits == 2

    assert parent_done is done
    assert done.subject == init.subject
    assert done.parentid == init.id
    assert done.data == {"result": 42, "error": None}
    assert done.domain is None
    assert {e.accesscontrol for e in broker.history} == {"role:admin"}

    child_record = child.memory.read(child_init.subject).record
    assert child_record is not None
    assert child_record["parentSubject"] == init.subject
    assert child_record["initEventId"] == child_init.id
    assert child_record["status"] == "done"
    parent_record = parent.memory.read(init.subject).record
    assert parent_record is not None
    assert parent_record["status"] == "done"


def test_parent_redirect_does_not_leak_into_the_child_completion() -> None:
    broker, _, _ = system()
    init = parent_init(redirectto="com.test.redirect")
    done = broker.run(init)
    assert done is not None
    assert done.to == "com.test.redirect"
    child_done = next(e for e in broker.history if e.type == "arvo.orc.child.done")
    assert child_done.to == "arvo.orc.parent"  # the child's meta.redirectto overrides the parent's


def test_child_domain_is_inherited_from_the_parent_subject() -> None:
    broker, _, _ = system()
    init = parent_init(subject=root_subject("arvo.orc.parent", domain="test.lane"))
    broker.publish(init)
    child_init = next(e for e in broker.history if e.type == "arvo.orc.child")
    assert OrchestrationSubject.parse(child_init.subject).execution.domain == "test.lane"


def test_invalid_parent_subject_emitted_by_the_parent_is_execution_violation_spec_85() -> None:
    broker, parent, _ = system()
    init = parent_init(parent="test")
    assert broker.run(init) is None
    assert len(broker.errors) == 1
    failure = broker.errors[0]
    assert failure.event.id == init.id
    assert isinstance(failure.error, ExecutionViolation)
    assert str(failure.error) == (
        "ViolationError<Execution> [Emittable Event Creation] Invalid parentSubject$$ for the "
        "event(type='arvo.orc.child', uri='#/test/orchestrator/child'). It must be follow the "
        "ArvoOrchestrationSubject schema. The easiest way is to use the current orchestration subject "
        "by storing the subject via the context block in the machine definition."
    )
    assert [e.type for e in broker.history] == ["arvo.orc.parent"]
    assert parent.memory.read(init.subject).record is None


def test_init_event_with_invalid_parent_subject_is_rejected_fix_10_15() -> None:
    child = new_orchestrator(ChildMachine)
    for bad in ("test", 42, ""):
        event = init_event(CHILD, {"value": 1})
        event = event.model_copy(update={"data": {**event.data, "parentSubject$$": bad}})
        with pytest.raises(ExecutionViolation, match=r"Invalid parentSubject\$\$ on init event"):
            child.execute(event)
        assert child.memory.read(event.subject).record is None


def test_root_level_child_of_an_orchestrator_is_refused_not_left_hanging_spec_86() -> None:
    # Arvo (spec 86) runs the child as a root workflow: its completion comes back to the parent
    # under the child's own subject, the parent ignores it as foreign and waits forever. Here
    # the child's init is refused, naming parentSubject$$ (no silent stall, issue 9 item 4).
    broker, parent, child = system()
    init = parent_init(parent="none")
    assert broker.run(init) is None
    child_init = next(e for e in broker.history if e.type == "arvo.orc.child")
    content = OrchestrationSubject.parse(child_init.subject)
    assert content.execution.initiator == "arvo.orc.parent"
    assert content.meta["redirectto"] == "arvo.orc.parent"
    (refused,) = broker.errors
    assert refused.event.id == child_init.id
    assert isinstance(refused.error, ExecutionViolation)
    assert "parentSubject$$ is null" in str(refused.error)
    assert "'arvo.orc.parent'" in str(refused.error)
    assert child.memory.read(child_init.subject).record is None
    assert not any(e.type == "arvo.orc.child.done" for e in broker.history)
    assert parent.ignored["foreign-subject"] == 0


class FailingChild(ChildMachine):
    def keep(self, data: dict[str, Any]) -> None:
        raise RuntimeError("child broke")


def test_child_system_error_comes_back_to_the_parent_on_its_subject() -> None:
    broker, _, child = system(child=FailingChild)
    init = parent_init()
    done = broker.run(init)
    assert broker.errors == []
    error = next(e for e in broker.history if e.type == "sys.arvo.orc.child.error")
    assert error.subject == init.subject
    assert error.to == "arvo.orc.parent"
    assert error.dataschema == "#/test/orchestrator/child/0.0.0"
    assert done is not None
    assert done.type == "arvo.orc.parent.done"
    assert done.data == {"result": None, "error": "child broke"}
    child_init = next(e for e in broker.history if e.type == "arvo.orc.child")
    record = child.memory.read(child_init.subject).record
    assert record is not None
    assert record["executionStatus"] == "failure"
    assert record["parentSubject"] == init.subject  # kept with the last good state (fix 10.5)


def test_child_started_directly_with_a_parent_subject_completes_on_it() -> None:
    child = new_orchestrator(ChildMachine)
    parent_subject = root_subject("arvo.orc.parent")
    init = init_event(CHILD, {"value": 1}, parent_subject=parent_subject)
    (call,) = child.execute(init)
    assert call.dataschema == INCREMENT.dataschema
    (answer,) = make_increment_handler().execute(call)
    (done,) = child.execute(answer)
    assert done.subject == parent_subject
    assert done.to == "arvo.orc.parent"  # the factory's default meta.redirectto (fix 10.14)
    assert done.parentid == init.id


def test_parent_machine_definition_uses_the_child_contract_as_a_service() -> None:
    route = ParentMachine.route("arvo.orc.child.done")
    assert route is not None
    assert route.contract is CHILD
    error_route = ParentMachine.route("sys.arvo.orc.child.error")
    assert error_route is not None
    assert error_route.contract is CHILD
