"""ArvoOrchestrator.execute/process: spec 5 and scenarios 75-90, 111-114, with the section 10 fixes.

The increment workflow of ``examples/increment.py`` is driven step by step (orchestrator, then
the real service handler, then the orchestrator again) and every emitted event is checked field
by field against spec 5.4 "Concrete results". Deliberate differences from Arvo are named in the
test names (``..._fix_10_N``): the lock is always taken, duplicates are recognised by event id,
completion happens on entering the final state (even with an output of ``{}``), a failure
record keeps the last good state, system errors are routed like completions, and output ids are
deterministic (uuid5 of the consumed event id).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from pydantic import BaseModel
from statemachine import State

from examples.fanout import FanoutMachine, fanout_contract, make_double_handler
from orchestrator.broker import LocalBroker
from orchestrator.contract import create_orchestrator_contract
from orchestrator.domain import ArvoDomain
from orchestrator.errors import (
    ConfigViolation,
    ContractViolation,
    ExecutionViolation,
    TransactionCause,
    TransactionViolation,
)
from orchestrator.event import ArvoEvent, create_arvo_event
from orchestrator.machine import ArvoMachine
from orchestrator.memory.base import Lease, ReadResult
from orchestrator.memory.in_memory import InMemoryMachineMemory
from orchestrator.orchestrator import ArvoOrchestrator, StepOutcome
from tests.unit.machines import (
    READ,
    DumbMachine,
    Empty,
    FailingMemory,
    KeyInit,
    RecordingMemory,
    dumb_contract,
    init_event,
    make_increment_handler,
    make_value_read_handler,
    new_orchestrator,
    reply,
    root_subject,
)

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
DUMB = dumb_contract.version("1.0.0")


def record_of(orchestrator: ArvoOrchestrator, subject: str) -> dict[str, Any]:
    record = orchestrator.memory.read(subject).record
    assert record is not None
    return record


def version_of(orchestrator: ArvoOrchestrator, subject: str) -> int:
    return orchestrator.memory.read(subject).version


# --------------------------------------------------------------------------- the increment flow


def test_increment_flow_step_by_step_spec_75() -> None:
    orchestrator = new_orchestrator(executionunits=0.1)
    read_handler = make_value_read_handler({"test": 2})
    init = init_event(data={"key": "test", "modifier": 2}, source="com.test.test")

    (read,) = orchestrator.execute(init)
    assert (read.type, read.to, read.source) == ("com.value.read", "com.value.read", "arvo.orc.inc")

    (read_reply,) = read_handler.execute(read)
    (increment,) = orchestrator.execute(read_reply)
    assert increment.type == "com.number.increment"
    assert increment.data == {"init": 2, "increment": 2}

    (increment_reply,) = make_increment_handler().execute(increment)
    (done,) = orchestrator.execute(increment_reply)
    assert done.type == "arvo.orc.inc.done"
    assert done.to == "com.test.test"
    assert done.data == {"success": True, "error": [], "final": 4}


def test_every_emitted_event_follows_spec_5_4_concrete_results() -> None:
    orchestrator = new_orchestrator(executionunits=0.1)
    init = init_event(
        data={"key": "abc", "modifier": 2}, redirectto="com.test.redirect", accesscontrol="role:admin"
    )
    assert init.redirectto == "com.test.redirect"

    (read,) = orchestrator.execute(init)
    assert read.type == "com.value.read"
    assert read.source == "arvo.orc.inc"
    assert read.subject == init.subject
    assert read.to == "com.value.read"
    assert read.redirectto == "arvo.orc.inc"
    assert read.executionunits == 0.1
    assert read.parentid == init.id
    assert read.accesscontrol == "role:admin"
    assert read.dataschema == "#/examples/value/read/1.0.0"
    assert read.data == {"key": "abc"}
    assert read.domain is None

    (read_reply,) = make_value_read_handler().execute(read)
    assert read_reply.to == "arvo.orc.inc"  # from redirectto
    assert read_reply.redirectto is None
    assert read_reply.parentid == read.id
    assert read_reply.accesscontrol == "role:admin"
    assert read_reply.subject == init.subject

    (increment,) = orchestrator.execute(read_reply)
    assert increment.to == "com.number.increment"
    assert increment.redirectto == "arvo.orc.inc"
    assert increment.parentid == read_reply.id
    assert increment.accesscontrol == "role:admin"
    assert increment.dataschema == "#/examples/number/increment/1.0.0"
    assert increment.data == {"init": 3, "increment": 2}  # 'abc' reads len('abc')

    (increment_reply,) = make_increment_handler().execute(increment)
    (done,) = orchestrator.execute(increment_reply)
    assert done.type == "arvo.orc.inc.done"
    assert done.source == "arvo.orc.inc"
    assert done.subject == init.subject
    assert done.to == "com.test.redirect"  # subject meta.redirectto
    assert done.redirectto == "arvo.orc.inc"
    assert done.parentid == init.id
    assert done.dataschema == "#/examples/orchestrator/increment/1.0.0"
    assert done.accesscontrol == "role:admin"
    assert done.executionunits == 0.1
    assert done.domain is None
    assert done.data == {"success": True, "error": [], "final": 5}


def test_persisted_record_envelope_spec_5_5() -> None:
    orchestrator = new_orchestrator()
    init = init_event()
    (read,) = orchestrator.execute(init)
    record = record_of(orchestrator, init.subject)
    assert record["executionStatus"] == "normal"
    assert record["initEventId"] == init.id
    assert record["subject"] == init.subject
    assert record["parentSubject"] is None
    assert record["status"] == "active"
    assert record["value"] == ["reading"]
    assert record["state"]["configuration"] == ["reading"]
    assert record["events"] == {"consumed": init.to_json(), "produced": [read.to_json()]}
    assert record["machine"] == {"name": "arvo.orc.inc", "version": "1.0.0", "class": "IncrementMachine"}
    assert record["error"] is None
    assert record["schemaVersion"] == 2

    (read_reply,) = make_value_read_handler().execute(read)
    orchestrator.execute(read_reply)
    record = record_of(orchestrator, init.subject)
    assert record["initEventId"] == init.id  # carried across steps
    assert record["events"]["consumed"]["id"] == read_reply.id


def test_all_emitted_events_carry_parentid_spec_79() -> None:
    broker = LocalBroker([make_value_read_handler(), make_increment_handler(), new_orchestrator()])
    init = init_event()
    assert broker.run(init) is not None
    emitted = [e for e in broker.history if e.id != init.id]
    assert len(emitted) == 5
    assert all(e.parentid for e in emitted)


def test_accesscontrol_of_the_init_reaches_every_downstream_event() -> None:
    broker = LocalBroker([make_value_read_handler(), make_increment_handler(), new_orchestrator()])
    done = broker.run(init_event(accesscontrol="role:admin;tenant:42"))
    assert done is not None
    assert done.type == "arvo.orc.inc.done"
    assert len(broker.history) == 6
    assert {e.accesscontrol for e in broker.history} == {"role:admin;tenant:42"}


def test_trace_context_is_handed_on_without_an_sdk() -> None:
    orchestrator = new_orchestrator()
    init = init_event().model_copy(update={"traceparent": TRACEPARENT})
    (read,) = orchestrator.execute(init)
    assert read.traceparent is not None
    assert read.traceparent.split("-")[1] == TRACEPARENT.split("-")[1]  # same trace


def test_system_error_type_spec_88() -> None:
    assert new_orchestrator().system_error_type == "sys.arvo.orc.inc.error"
    assert new_orchestrator().source == "arvo.orc.inc"


# --------------------------------------------------------------------------- subject and ownership


def test_invalid_subject_is_execution_violation_spec_81() -> None:
    memory = RecordingMemory()
    event = init_event().model_copy(update={"subject": "test"})
    with pytest.raises(ExecutionViolation) as info:
        new_orchestrator(memory=memory).execute(event)
    assert str(info.value) == (
        f"ViolationError<Execution> Invalid event (id={event.id}) subject format. Expected an "
        "ArvoOrchestrationSubject but received 'test'. The subject must follow the format specified "
        "by ArvoOrchestrationSubject schema"
    )
    assert memory.calls == []


def test_foreign_subject_is_ignored_without_locking_spec_113() -> None:
    memory = RecordingMemory()
    orchestrator = new_orchestrator(memory=memory)
    event = init_event(subject=root_subject("arvo.orc.other"))
    assert orchestrator.execute(event) == []
    assert memory.calls == []  # no lock, no read, no settle
    result = orchestrator.process(event)
    assert (result.outcome, result.reason, result.events) == (StepOutcome.IGNORED, "foreign-subject", [])
    assert memory.calls == []
    assert orchestrator.ignored["foreign-subject"] == 2


def test_one_step_locks_reads_writes_unlocks_and_settles_fix_10_1() -> None:
    memory = RecordingMemory()
    new_orchestrator(memory=memory).execute(init_event())
    # The events are handed over under the lock; releasing it settles the outbox (one call).
    assert memory.calls == ["lock", "read", "write", "unlock+settle"]


# --------------------------------------------------------------------------- locking and memory failures


def test_lock_held_elsewhere_is_retryable_lock_unacquired_spec_76_fix_10_2() -> None:
    memory = InMemoryMachineMemory()
    orchestrator = new_orchestrator(memory=memory)
    init = init_event()
    holder = memory.lock(init.subject)
    assert holder is not None
    with pytest.raises(TransactionViolation) as info:
        orchestrator.execute(init)
    error = info.value
    assert error.cause is TransactionCause.LOCK_UNACQUIRED
    assert error.retryable is True
    assert str(error) == (
        "ViolationError<OrchestratorTransaction> [LOCK_UNACQUIRED] Lock acquisition denied - Unable to "
        "obtain exclusive access to event processing"
    )
    assert memory.read(init.subject).record is None
    assert memory.lock(init.subject) is None  # the other holder's lock was not released
    memory.unlock(holder)
    assert len(orchestrator.execute(init)) == 1  # the retry succeeds


@pytest.mark.parametrize(
    ("operation", "message", "cause", "expected"),
    [
        ("lock", "Locking system failure!", TransactionCause.LOCK_FAILURE, "Error acquiring lock for event"),
        ("read", "Failed to acquire memory", TransactionCause.READ_FAILURE, "Error reading state for event"),
        ("write", "Failed to write memory", TransactionCause.WRITE_FAILURE, "Error writing state for event"),
    ],
)
def test_memory_failures_are_transaction_violations_spec_83(
    operation: str, message: str, cause: TransactionCause, expected: str
) -> None:
    memory = FailingMemory(operation, message)
    init = init_event()
    with pytest.raises(TransactionViolation) as info:
        new_orchestrator(memory=memory).execute(init)
    error = info.value
    assert error.cause is cause
    assert error.retryable is True
    assert str(error) == (
        f"ViolationError<OrchestratorTransaction> [{cause.value}] {expected} (subject={init.subject}): {message}"
    )
    assert isinstance(error.__cause__, RuntimeError)
    assert error.metadata == {"event_id": init.id}
    memory.fail = ""
    assert memory.read(init.subject).record is None
    assert memory.lock(init.subject) is not None  # the lock was released after the failure


class UnlockFailingMemory(InMemoryMachineMemory):
    def unlock(self, lease: Lease) -> bool:
        raise RuntimeError("unlock exploded")


def test_unlock_failure_is_tolerated_spec_5_2_step_16() -> None:
    orchestrator = new_orchestrator(memory=UnlockFailingMemory())
    init = init_event()
    assert len(orchestrator.execute(init)) == 1
    assert record_of(orchestrator, init.subject)["status"] == "active"


class ExpiringMemory(InMemoryMachineMemory):
    """Every read takes longer than the lock TTL: the lease is lost before the write."""

    def __init__(self) -> None:
        self.now = 0.0
        super().__init__(lock_ttl=30.0, clock=lambda: self.now)

    def read(self, subject: str, event_id: str | None = None) -> ReadResult:
        self.now += 31.0
        return super().read(subject, event_id)


def test_lost_lease_refuses_the_write_and_returns_no_events_fix_10_3() -> None:
    memory = ExpiringMemory()
    init = init_event()
    with pytest.raises(TransactionViolation) as info:
        new_orchestrator(memory=memory).execute(init)
    assert info.value.cause is TransactionCause.WRITE_CONFLICT
    assert info.value.retryable is True
    assert memory.read(init.subject).record is None


def test_concurrent_replies_lose_no_update_fix_10_1() -> None:
    """Fan-in of parallel replies from threads: lock contention is retried, nothing is lost."""
    memory = InMemoryMachineMemory()
    orchestrator = ArvoOrchestrator([FanoutMachine], memory)
    double = make_double_handler()
    init = init_event(fanout_contract.version("1.0.0"), {"values": list(range(12))})
    calls = orchestrator.execute(init)
    replies = [double.execute(call)[0] for call in calls]
    results: list[ArvoEvent] = []
    fatal: list[TransactionViolation] = []
    retries = 0
    mutex = threading.Lock()

    def deliver(event: ArvoEvent) -> None:
        nonlocal retries
        while True:
            try:
                out = orchestrator.execute(event)
            except TransactionViolation as error:
                with mutex:
                    retries += 1
                    if not error.retryable:
                        fatal.append(error)
                        return
                continue
            with mutex:
                results.extend(out)
            return

    threads = [threading.Thread(target=deliver, args=(r,)) for r in replies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert fatal == []
    assert [(e.type, e.data) for e in results] == [("arvo.orc.fanout.done", {"total": 132, "replies": 12})]


# --------------------------------------------------------------------------- input validation


def test_own_emitted_service_call_is_config_violation_spec_77() -> None:
    orchestrator = new_orchestrator()
    (read,) = orchestrator.execute(init_event())
    with pytest.raises(ConfigViolation) as info:
        orchestrator.execute(read)
    assert str(info.value) == (
        "ViolationError<Config> Contract validation failed - Event does not match any registered "
        "contract schemas in the machine"
    )


def test_invalid_reply_data_is_contract_violation_spec_78() -> None:
    orchestrator = new_orchestrator()
    init = init_event()
    (read,) = orchestrator.execute(init)
    version = version_of(orchestrator, init.subject)
    with pytest.raises(
        ContractViolation,
        match=r"^ViolationError<Contract> Input validation failed - Event data does not meet contract requirements",
    ):
        orchestrator.execute(reply(read, {"value": "saad"}))
    assert version_of(orchestrator, init.subject) == version


@pytest.mark.parametrize(
    ("dataschema", "error", "message"),
    [
        (None, ContractViolation, "Event dataschema resolution failed"),
        ("saad", ContractViolation, "Event dataschema resolution failed"),
        ("#/examples/orchestrator/increment/0.0.2", ContractViolation, "Contract version mismatch"),
        ("#/examples/orchestrator/invalid/1.0.0", ContractViolation, "Contract URI mismatch"),
    ],
    ids=["no-dataschema", "not-a-dataschema", "version-mismatch", "uri-mismatch"],
)
def test_init_validation_spec_97(dataschema: str | None, error: type[Exception], message: str) -> None:
    orchestrator = new_orchestrator()
    init = init_event().model_copy(update={"dataschema": dataschema})
    with pytest.raises(error, match=message):
        orchestrator.execute(init)
    assert orchestrator.memory.read(init.subject).record is None


def test_init_with_wildcard_dataschema_version_is_accepted_spec_97() -> None:
    init = init_event().model_copy(update={"dataschema": "#/examples/orchestrator/increment/0.0.0"})
    assert len(new_orchestrator().execute(init)) == 1


def test_invalid_init_data_is_contract_violation_spec_97() -> None:
    init = init_event().model_copy(update={"data": {"parentSubject$$": None, "key": ""}})
    with pytest.raises(ContractViolation, match="Input validation failed"):
        new_orchestrator().execute(init)


def test_unknown_event_type_is_config_violation_spec_97() -> None:
    orchestrator = new_orchestrator()
    init = init_event()
    orchestrator.execute(init)
    stray = create_arvo_event(
        source="com.x.y", type="com.unknown.type", subject=init.subject, data={}, dataschema="#/x/1.0.0"
    )
    with pytest.raises(ConfigViolation, match="Contract validation failed"):
        orchestrator.execute(stray)


@pytest.mark.parametrize(
    ("dataschema", "accepted"),
    [
        ("#/examples/value/read/1.0.0", True),
        ("#/examples/value/read/0.0.0", True),
        ("#/examples/value/read/0.0.2", False),
    ],
)
def test_reply_dataschema_version_spec_97(dataschema: str, accepted: bool) -> None:
    orchestrator = new_orchestrator()
    (read,) = orchestrator.execute(init_event())
    event = reply(read, {"value": 1}, dataschema=dataschema)
    if accepted:
        assert [e.type for e in orchestrator.execute(event)] == ["com.number.increment"]
    else:
        with pytest.raises(ContractViolation, match="Contract version mismatch"):
            orchestrator.execute(event)


def test_service_system_error_is_routed_to_the_machine() -> None:
    orchestrator = new_orchestrator()
    init = init_event()
    (read,) = orchestrator.execute(init)
    error = reply(
        read,
        {"errorName": "Error", "errorMessage": "store down", "errorStack": None},
        type="sys.com.value.read.error",
        dataschema="#/examples/value/read/0.0.0",
    )
    (done,) = orchestrator.execute(error)
    assert done.data == {"success": False, "error": ["store down"], "final": None}


# --------------------------------------------------------------------------- stray, duplicate, done


def test_non_init_event_without_state_is_ignored_and_counted_spec_87() -> None:
    memory = RecordingMemory()
    orchestrator = new_orchestrator(memory=memory)
    (read,) = new_orchestrator().execute(init_event())  # a workflow this orchestrator never saw
    event = reply(read, {"value": 1})
    assert orchestrator.execute(event) == []
    assert orchestrator.ignored["no-workflow"] == 1
    assert "write" not in memory.calls
    assert orchestrator.memory.read(event.subject).record is None


def test_duplicate_event_id_changes_nothing_fix_10_7() -> None:
    orchestrator = new_orchestrator()
    init = init_event()
    (read,) = orchestrator.execute(init)
    (read_reply,) = make_value_read_handler().execute(read)
    assert len(orchestrator.execute(read_reply)) == 1
    record, version = record_of(orchestrator, init.subject), version_of(orchestrator, init.subject)
    assert orchestrator.execute(read_reply) == []
    assert orchestrator.execute(init) == []
    assert record_of(orchestrator, init.subject) == record
    assert version_of(orchestrator, init.subject) == version


def test_duplicate_init_with_a_different_id_is_ignored_spec_112() -> None:
    orchestrator = new_orchestrator()
    init = init_event()
    orchestrator.execute(init)
    record = record_of(orchestrator, init.subject)
    second = init.model_copy(update={"id": "another-init", "data": {**init.data, "key": "zzz"}})
    assert orchestrator.execute(second) == []
    assert orchestrator.ignored["already-initialised"] == 1
    assert record_of(orchestrator, init.subject) == record


def test_events_after_completion_are_ignored() -> None:
    broker = LocalBroker([make_value_read_handler(), make_increment_handler(), new_orchestrator()])
    init = init_event()
    assert broker.run(init) is not None
    orchestrator = broker._handlers["arvo.orc.inc"]
    assert isinstance(orchestrator, ArvoOrchestrator)
    late = broker.history[2].model_copy(update={"id": "late-reply"})  # an evt.value.read.success
    assert late.type == "evt.value.read.success"
    assert orchestrator.execute(late) == []
    assert orchestrator.ignored["workflow-done"] == 1


def test_process_duplicate_returns_unsettled_outbox_until_settled_fix_10_7() -> None:
    orchestrator = new_orchestrator()
    init = init_event()
    first = orchestrator.process(init)
    assert first.outcome is StepOutcome.APPLIED
    again = orchestrator.process(init)
    assert again.outcome is StepOutcome.DUPLICATE
    assert [e.to_json() for e in again.events] == [e.to_json() for e in first.events]
    orchestrator.settle(init)
    settled = orchestrator.process(init)
    assert (settled.outcome, settled.events) == (StepOutcome.DUPLICATE, [])


def test_execute_settles_the_outbox() -> None:
    orchestrator = new_orchestrator()
    init = init_event()
    orchestrator.execute(init)
    assert orchestrator.process(init).events == []


def test_output_ids_are_deterministic_uuid5_of_the_consumed_event() -> None:
    init = init_event()
    first = new_orchestrator().execute(init)
    second = new_orchestrator().execute(init)
    assert [e.id for e in first] == [e.id for e in second]
    assert first[0].id != init.id
    other = new_orchestrator().execute(init_event())
    assert other[0].id != first[0].id


def test_redelivery_after_a_failed_write_produces_the_same_events() -> None:
    memory = FailingMemory("write", "Failed to write memory")
    orchestrator = new_orchestrator(memory=memory)
    init = init_event()
    with pytest.raises(TransactionViolation):
        orchestrator.execute(init)
    memory.fail = ""
    retried = orchestrator.execute(init)
    assert [e.id for e in retried] == [e.id for e in new_orchestrator().execute(init)]


# --------------------------------------------------------------------------- completion routing


def test_redirectto_on_init_routes_the_completion_spec_84() -> None:
    broker = LocalBroker([make_value_read_handler(), make_increment_handler(), new_orchestrator()])
    init = init_event(source="com.test.test", redirectto="com.test.test.1")
    done = broker.run(init)
    assert done is not None
    assert done.to == "com.test.test.1"
    assert done.parentid == init.id
    assert broker.history[-1] is done
    assert broker.history[-2].parentid != init.id
    orchestrator = broker._handlers["arvo.orc.inc"]
    assert isinstance(orchestrator, ArvoOrchestrator)
    assert record_of(orchestrator, init.subject)["initEventId"] == init.id


class MetaDone(BaseModel):
    value: int


empty_contract = create_orchestrator_contract(
    uri="#/test/orchestrator/empty", name="empty", versions={"1.0.0": {"init": KeyInit, "complete": Empty}}
)
meta_contract = create_orchestrator_contract(
    uri="#/test/orchestrator/meta", name="meta", versions={"1.0.0": {"init": KeyInit, "complete": MetaDone}}
)


class EmptyOutputMachine(ArvoMachine):
    contract = empty_contract.version("1.0.0")
    services = (READ,)
    waiting = State(initial=True)
    done = State(final=True)
    got = waiting.to(done, event="evt.value.read.success")

    def output(self) -> None:
        return None


class MetaOutputMachine(ArvoMachine):
    """Completes at once with ``__id``, ``__executionunits`` and ``__domain`` (spec 5.2 step 12)."""

    contract = meta_contract.version("1.0.0")
    services = (READ,)
    start = State(initial=True)
    done = State(final=True)
    start.to(done)

    def output(self) -> dict[str, Any]:
        return {
            "value": 1,
            "__id": self.context["key"],
            "__executionunits": 23,
            "__domain": [None, "external"],
        }


def test_empty_output_still_completes_fix_10_6() -> None:
    orchestrator = new_orchestrator(DumbMachine)
    init = init_event(DUMB, {"mode": "ok"})
    (read,) = orchestrator.execute(init)
    (done,) = orchestrator.execute(reply(read, {"value": 1}))
    assert (done.type, done.data) == ("arvo.orc.dumb.done", {})


def test_none_output_still_completes_fix_10_6() -> None:
    orchestrator = new_orchestrator(EmptyOutputMachine)
    init = init_event(empty_contract.version("1.0.0"), {"key": "k"})
    orchestrator.execute(init)
    event = create_arvo_event(
        source="com.value.read",
        type="evt.value.read.success",
        subject=init.subject,
        data={"value": 1},
        dataschema=READ.dataschema,
    )
    (done,) = orchestrator.execute(event)
    assert (done.type, done.data) == ("arvo.orc.empty.done", {})
    assert record_of(orchestrator, init.subject)["status"] == "done"


def test_completion_metadata_keys_spec_96() -> None:
    orchestrator = new_orchestrator(MetaOutputMachine, executionunits=1)
    init = init_event(meta_contract.version("1.0.0"), {"key": "custom-orch-1"})
    events = orchestrator.execute(init)
    assert [(e.type, e.domain) for e in events] == [
        ("arvo.orc.meta.done", None),
        ("arvo.orc.meta.done", "external"),
    ]
    for event in events:
        assert event.id == "custom-orch-1"
        assert event.executionunits == 23
        assert event.data == {"value": 1}  # the __ keys are not part of the data
        assert event.to == "com.test.client"
        assert event.dataschema == "#/test/orchestrator/meta/1.0.0"
        assert event.parentid == init.id


def test_completion_with_a_bare_string_domain_is_contract_violation() -> None:
    class StringDomain(MetaOutputMachine):
        def output(self) -> dict[str, Any]:
            return {"value": 1, "__domain": "external"}

    orchestrator = new_orchestrator(StringDomain)
    init = init_event(meta_contract.version("1.0.0"), {"key": "k"})
    with pytest.raises(ContractViolation, match="'__domain' must be a list"):
        orchestrator.execute(init)
    assert orchestrator.memory.read(init.subject).record is None


@pytest.mark.parametrize(
    ("reply_domain", "expected"),
    [(None, None), ("human.review", None), ("external", "human.review")],
)
def test_completion_default_domain_is_the_orchestration_context(
    reply_domain: str | None, expected: str | None
) -> None:
    orchestrator = new_orchestrator(DumbMachine)
    subject = root_subject("arvo.orc.dumb", domain="human.review")
    init = init_event(DUMB, {"mode": "ok"}, subject=subject)
    (read,) = orchestrator.execute(init)
    assert read.domain is None  # service calls default to the local lane
    (done,) = orchestrator.execute(reply(read, {"value": 1}, domain=reply_domain))
    assert done.type == "arvo.orc.dumb.done"
    assert done.domain == expected


# --------------------------------------------------------------------------- failures in user code


def test_action_error_gives_one_system_error_and_a_failure_record_spec_90_fix_10_5() -> None:
    orchestrator = new_orchestrator(DumbMachine, executionunits=3)
    init = init_event(DUMB, {"mode": "error"}, source="com.test.test", accesscontrol="role:x")
    (read,) = orchestrator.execute(init)
    good = record_of(orchestrator, init.subject)
    failing_reply = reply(read, {"value": 1})
    events = orchestrator.execute(failing_reply)
    assert len(events) == 1
    error = events[0]
    assert error.type == "sys.arvo.orc.dumb.error"
    assert error.source == "arvo.orc.dumb"
    assert error.to == "com.test.test"
    assert error.subject == init.subject
    assert error.parentid == init.id
    assert error.redirectto is None
    assert error.accesscontrol == "role:x"
    assert error.executionunits == 3
    assert error.dataschema == "#/test/orchestrator/dumb/0.0.0"
    assert error.domain is None
    assert error.data["errorName"] == "RuntimeError"
    assert error.data["errorMessage"] == "Normal error"
    assert "Normal error" in error.data["errorStack"]

    record = record_of(orchestrator, init.subject)
    assert record["executionStatus"] == "failure"
    for key in ("state", "status", "value", "initEventId", "parentSubject", "subject", "machine"):
        assert record[key] == good[key], key  # the last good state is kept
    assert record["error"]["name"] == "RuntimeError"
    assert record["error"]["message"] == "Normal error"
    assert "RuntimeError: Normal error" in record["error"]["stack"]
    assert record["failedEventId"] == failing_reply.id
    assert record["failedAt"].endswith("+00:00")
    assert record["events"]["produced"] == [error.to_json()]

    later = reply(read, {"value": 2}).model_copy(update={"id": "later"})
    assert orchestrator.execute(later) == []
    assert orchestrator.ignored["workflow-failed"] == 1


def test_error_in_output_gives_a_system_error() -> None:
    class BrokenOutput(MetaOutputMachine):
        def output(self) -> dict[str, Any]:
            raise KeyError("missing")

    orchestrator = new_orchestrator(BrokenOutput)
    init = init_event(meta_contract.version("1.0.0"), {"key": "k"})
    (error,) = orchestrator.execute(init)
    assert error.type == "sys.arvo.orc.meta.error"
    assert error.data["errorName"] == "KeyError"
    assert record_of(orchestrator, init.subject)["executionStatus"] == "failure"


def test_failed_failure_write_is_retryable_not_just_logged_fix_10_5() -> None:
    memory = FailingMemory("", "")
    orchestrator = new_orchestrator(DumbMachine, memory=memory)
    init = init_event(DUMB, {"mode": "error"})
    (read,) = orchestrator.execute(init)
    good = record_of(orchestrator, init.subject)
    failing_reply = reply(read, {"value": 1})
    memory.fail, memory.message = "write", "Failed to write memory"
    with pytest.raises(TransactionViolation) as info:
        orchestrator.execute(failing_reply)
    assert info.value.cause is TransactionCause.WRITE_FAILURE
    memory.fail = ""
    assert record_of(orchestrator, init.subject) == good
    (error,) = orchestrator.execute(failing_reply)  # the redelivery records the failure
    assert error.type == "sys.arvo.orc.dumb.error"
    assert record_of(orchestrator, init.subject)["executionStatus"] == "failure"


def test_process_reports_failed_outcome() -> None:
    orchestrator = new_orchestrator(DumbMachine)
    init = init_event(DUMB, {"mode": "error"})
    (read,) = orchestrator.execute(init)
    result = orchestrator.process(reply(read, {"value": 1}))
    assert result.outcome is StepOutcome.FAILED
    assert [e.type for e in result.events] == ["sys.arvo.orc.dumb.error"]


def test_system_error_is_routed_like_the_completion_fix_10_13() -> None:
    orchestrator = new_orchestrator(DumbMachine)
    init = init_event(DUMB, {"mode": "error"}, redirectto="com.test.redirect")
    (read,) = orchestrator.execute(init)
    (error,) = orchestrator.execute(reply(read, {"value": 1}))
    assert error.to == "com.test.redirect"  # Arvo: the initiator, ignoring meta.redirectto


def test_error_during_init_records_a_failure_without_state() -> None:
    orchestrator = new_orchestrator(DumbMachine)
    init = init_event(DUMB, {"mode": "init-error"})
    (error,) = orchestrator.execute(init)
    assert error.type == "sys.arvo.orc.dumb.error"
    assert error.data["errorMessage"] == "Init error"
    assert error.parentid == init.id
    record = record_of(orchestrator, init.subject)
    assert record["executionStatus"] == "failure"
    assert record["state"] is None
    assert record["initEventId"] == init.id
    retry = init.model_copy(update={"id": "second-init"})
    assert orchestrator.execute(retry) == []
    assert orchestrator.ignored["workflow-failed"] == 1


def test_action_raising_a_violation_propagates_and_persists_nothing_spec_90() -> None:
    orchestrator = new_orchestrator(DumbMachine)
    init = init_event(DUMB, {"mode": "violation"})
    (read,) = orchestrator.execute(init)
    record, version = record_of(orchestrator, init.subject), version_of(orchestrator, init.subject)
    event = reply(read, {"value": 1})
    with pytest.raises(ExecutionViolation, match="Deliberate violation"):
        orchestrator.execute(event)
    assert record_of(orchestrator, init.subject) == record
    assert record["executionStatus"] == "normal"
    assert version_of(orchestrator, init.subject) == version
    assert orchestrator.memory.read(init.subject, event.id).consumed is False
    assert orchestrator.memory.lock(init.subject) is not None  # released


def test_invalid_completion_output_is_contract_violation() -> None:
    class BadOutput(MetaOutputMachine):
        def output(self) -> dict[str, Any]:
            return {"value": "not a number"}

    init = init_event(meta_contract.version("1.0.0"), {"key": "k"})
    orchestrator = new_orchestrator(BadOutput)
    with pytest.raises(ContractViolation, match="Event type: arvo.orc.meta.done"):
        orchestrator.execute(init)
    assert orchestrator.memory.read(init.subject).record is None


class Appender(DumbMachine):
    """A dict context with a nested list that an action mutates before failing."""

    def init_context(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"mode": data["mode"], "items": []}

    def maybe_fail(self) -> None:
        self.context["items"].append("partial")
        if self.context["mode"] == "error":
            raise RuntimeError("Normal error")
        self.context["when"] = object()  # not JSON


def test_failure_record_keeps_the_last_good_state_not_a_partial_step_fix_10_5() -> None:
    orchestrator = new_orchestrator(Appender)
    init = init_event(DUMB, {"mode": "error"})
    (read,) = orchestrator.execute(init)
    good = record_of(orchestrator, init.subject)
    assert good["state"]["context"]["items"] == []
    (error,) = orchestrator.execute(reply(read, {"value": 1}))
    assert error.type == "sys.arvo.orc.dumb.error"
    record = record_of(orchestrator, init.subject)
    assert record["executionStatus"] == "failure"
    assert record["state"] == good["state"]


def test_a_context_that_is_not_json_is_a_user_error_not_a_retryable_write_failure() -> None:
    orchestrator = new_orchestrator(Appender)
    init = init_event(DUMB, {"mode": "not-json"})
    (read,) = orchestrator.execute(init)
    good = record_of(orchestrator, init.subject)
    (error,) = orchestrator.execute(reply(read, {"value": 1}))
    assert error.type == "sys.arvo.orc.dumb.error"
    assert "not JSON" in error.data["errorMessage"]
    record = record_of(orchestrator, init.subject)
    assert record["executionStatus"] == "failure"
    assert record["state"] == good["state"]


def test_default_domains_can_be_overridden() -> None:
    orchestrator = new_orchestrator(
        DumbMachine, default_domains={"services": (None, "external"), "system_error": ("ops.alerts",)}
    )
    init = init_event(DUMB, {"mode": "error"})
    calls = orchestrator.execute(init)
    assert [(e.type, e.domain) for e in calls] == [("com.value.read", None), ("com.value.read", "external")]
    assert calls[0].id != calls[1].id
    (error,) = orchestrator.execute(reply(calls[0], {"value": 1}))
    assert (error.type, error.domain) == ("sys.arvo.orc.dumb.error", "ops.alerts")


def test_domains_are_deduplicated_after_resolution_fix_10_12() -> None:
    # Both tokens resolve to the local lane (READ has no domain): Arvo emitted the call twice.
    tokens = (None, ArvoDomain.FROM_EVENT_CONTRACT, ArvoDomain.FROM_TRIGGERING_EVENT)
    orchestrator = new_orchestrator(default_domains={"services": tokens})
    calls = orchestrator.execute(init_event())
    assert [(e.type, e.domain) for e in calls] == [("com.value.read", None)]
