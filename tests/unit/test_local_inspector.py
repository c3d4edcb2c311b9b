"""LocalInspector: describe, history, search, dead letters, retry and cancel in process.

The example machines (and a flaky one) run on ``LocalBroker`` over the in-memory memory with a
virtual clock; the inspector reads that memory and steers through that broker, as the command
line and the dashboard would.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from examples.approval import approval_contract
from examples.registry import build as build_examples
from orchestrator.broker import LocalBroker
from orchestrator.errors import (
    DeadLetterNotFound,
    InvalidFilter,
    WorkflowFinished,
    WorkflowNotFailed,
    WorkflowNotFound,
)
from orchestrator.event import ArvoEvent
from orchestrator.history import retry_event
from orchestrator.inspection import MAX_PAGE, STATUSES, WorkflowFilter, WorkflowInspector, WorkflowSummary
from orchestrator.local_inspector import LocalInspector
from orchestrator.memory.in_memory import InMemoryMachineMemory
from orchestrator.record import WorkflowRecord
from orchestrator.search import matches, newest_first, page
from orchestrator.timers import VirtualClock
from tests.unit.machines import (
    INC,
    ChildMachine,
    FlakyMachine,
    ParentMachine,
    flaky_contract,
    init_event,
    new_orchestrator,
    parent_contract,
)

START_S = 1_700_000_000.0
FLAKY = flaky_contract.version("1.0.0")
APPROVAL = approval_contract.version("1.0.0")


def system(*extra: Any) -> tuple[LocalBroker, LocalInspector, InMemoryMachineMemory]:
    memory = InMemoryMachineMemory()
    handlers = [*build_examples(memory), new_orchestrator(FlakyMachine, memory=memory)]
    handlers += [new_orchestrator(machine, memory=memory) for machine in extra]
    broker = LocalBroker(handlers, clock=VirtualClock(start=START_S))
    return broker, LocalInspector(broker), memory


def test_it_is_a_workflow_inspector() -> None:
    assert isinstance(system()[1], WorkflowInspector)


def test_describe_a_waiting_approval_shows_state_context_call_deadline_and_timers() -> None:
    broker, inspector, _ = system()
    init = init_event(APPROVAL, {"document": "contract.pdf", "deadline_s": 600})
    broker.publish(init)
    described = inspector.describe(init.subject)
    assert described.summary.status == "waiting"
    assert described.configuration == ("waiting",)
    assert described.context["document"] == "contract.pdf"
    assert described.context["requested"] is True
    assert described.machine_class == "ApprovalMachine"
    assert described.init_event_id == init.id
    [call] = described.pending_calls
    assert call.due_ms == int(START_S * 1000) + 600_000
    assert sorted(t.event_type for t in described.timers) == ["remind", "sys.com.approval.review.error"]
    assert [t.due_ms for t in described.timers] == sorted(t.due_ms for t in described.timers)
    assert described.failure is None
    assert described.cancel_reason is None


def test_describe_shows_running_children_and_list_finds_them_by_parent() -> None:
    memory = InMemoryMachineMemory()
    parent = new_orchestrator(ParentMachine, memory=memory)
    child = new_orchestrator(ChildMachine, memory=memory)
    broker = LocalBroker([parent, child], clock=VirtualClock(start=START_S))  # no increment service
    inspector = LocalInspector(broker)
    init = init_event(parent_contract.version("1.0.0"), {"value": 1, "parent": "self"})
    broker.publish(init)
    [running] = inspector.describe(init.subject).children
    assert running.type == "arvo.orc.child"
    assert inspector.describe(running.subject).summary.parent_subject == init.subject
    listed = inspector.list_workflows(WorkflowFilter(parent_subject=init.subject)).items
    assert [row.subject for row in listed] == [running.subject]
    assert inspector.count(WorkflowFilter(status="running")) == 2


def test_a_failure_is_described_with_its_stack_and_found_without_its_subject() -> None:
    broker, inspector, _ = system()
    init = init_event(FLAKY, {"failures": 1})
    broker.publish(init)
    broker.run(init_event(INC))
    broker.advance("1h")
    [row] = inspector.list_workflows(WorkflowFilter(status="failed")).items
    assert row.subject == init.subject
    failure = inspector.describe(init.subject).failure
    assert failure is not None
    assert (failure.name, failure.message) == ("RuntimeError", "nudge is flaky")
    assert "Traceback" in failure.stack
    assert failure.event_id is not None
    assert failure.at is not None
    assert inspector.count(WorkflowFilter(status="failed")) == 1
    assert inspector.count(WorkflowFilter(status="done", orchestrator="arvo.orc.inc", version="1.0.0")) == 1
    assert inspector.count(WorkflowFilter(orchestrator="arvo.orc.nope")) == 0


def test_retry_resumes_a_failed_workflow_from_its_last_good_state_to_done() -> None:
    broker, inspector, memory = system()
    init = init_event(FLAKY, {"failures": 1})
    broker.publish(init)
    broker.advance("1h")
    assert memory.next_timer_due_ms() is None  # a failed workflow's timers leave the index
    sent = inspector.retry(init.subject)
    assert inspector.describe(init.subject).summary.status == "waiting"
    assert memory.next_timer_due_ms() is not None  # ... and come back with the retry
    broker.advance("3h")  # the expire timer set before the failure fires: done
    assert inspector.describe(init.subject).summary.status == "done"
    steps = [(e.event_id == sent, e.outcome) for e in inspector.history(init.subject)]
    assert (True, "applied") in steps
    assert steps[-1] == (False, "applied")
    with pytest.raises(WorkflowNotFailed, match="not failed"):
        inspector.retry(init.subject)


def test_a_retry_sent_twice_is_applied_once() -> None:
    broker, inspector, memory = system()
    init = init_event(FLAKY, {"failures": 1})
    broker.publish(init)
    broker.advance("1h")
    record = memory.read(init.subject)
    inspector.retry(init.subject)
    again = retry_event(WorkflowRecord.from_dict(record.record or {}), record.version)
    broker.publish(again)
    assert [e.outcome for e in inspector.history(init.subject)][-2:] == ["applied", "duplicate"]


def test_a_workflow_that_failed_at_its_init_is_retried_from_the_start() -> None:
    broker, inspector, _ = system()
    init = init_event(FLAKY, {"init_failures": 1})
    broker.publish(init)
    described = inspector.describe(init.subject)
    assert described.summary.status == "failed"
    assert described.configuration == ()
    inspector.retry(init.subject)
    described = inspector.describe(init.subject)
    assert described.summary.status == "waiting"
    assert described.configuration == ("waiting",)
    assert described.init_event_id == init.id  # the completion still answers the original init


def test_cancel_goes_through_the_broker() -> None:
    broker, inspector, _ = system()
    init = init_event(APPROVAL, {"document": "d"})
    broker.publish(init)
    inspector.cancel(init.subject, "no longer needed")
    described = inspector.describe(init.subject)
    assert described.summary.status == "cancelled"
    assert described.cancel_reason == "no longer needed"
    assert described.timers == ()
    with pytest.raises(WorkflowFinished):
        inspector.cancel(init.subject, "again")


@pytest.mark.parametrize("subject", ["not-a-subject", init_event(INC).subject])
def test_unknown_subjects_are_workflow_not_found(subject: str) -> None:
    _, inspector, _ = system()
    with pytest.raises(WorkflowNotFound):
        inspector.describe(subject)
    with pytest.raises(WorkflowNotFound):
        inspector.history(subject)
    with pytest.raises(WorkflowNotFound):
        inspector.retry(subject)


def bad_init() -> ArvoEvent:
    """An init the orchestrator refuses: its key must not be empty (a contract violation)."""
    good = init_event(INC)
    return good.model_copy(update={"data": {**good.data, "key": ""}})


def test_dead_letters_are_listed_shown_replayed_and_purged() -> None:
    broker, inspector, _ = system()
    broker.publish(bad_init())
    broker.publish(bad_init())
    first, second = inspector.dead_letters()
    assert first.reason == "violation:Contract"
    assert "ContractViolation" in first.error
    assert first.event_type == "arvo.orc.inc"
    assert first.payload["type"] == "arvo.orc.inc"
    assert first.at_ms == int(START_S * 1000)
    assert first.replays == 0
    assert inspector.dead_letter(first.id) == first
    replayed = inspector.replay_dead_letter(first.id)
    assert (replayed.entry_id, replayed.event_id, replayed.destination) == (first.id, first.payload["id"], "arvo.orc.inc")
    left = inspector.dead_letters()
    assert [entry.id for entry in left][0] == second.id
    assert left[1].payload["id"] == first.payload["id"]
    assert left[1].replays == 1
    with pytest.raises(DeadLetterNotFound):
        inspector.replay_dead_letter(first.id)
    with pytest.raises(DeadLetterNotFound):
        inspector.dead_letter(first.id)
    assert inspector.purge_dead_letters([second.id, "gone"]) == 1
    assert inspector.purge_dead_letters() == 1
    assert inspector.dead_letters() == []


def test_list_pages_newest_first_with_a_cursor() -> None:
    broker, inspector, _ = system()
    subjects = []
    for _ in range(5):
        init = init_event(INC)
        broker.run(init)
        subjects.append(init.subject)
        broker.advance("1s")
    first = inspector.list_workflows(WorkflowFilter(), limit=2)
    assert first.cursor is not None
    second = inspector.list_workflows(WorkflowFilter(), limit=2, cursor=first.cursor)
    third = inspector.list_workflows(WorkflowFilter(), limit=2, cursor=second.cursor)
    assert third.cursor is None
    listed = [row.subject for p in (first, second, third) for row in p.items]
    assert listed == subjects[::-1]
    newest = inspector.list_workflows(WorkflowFilter(updated_after_ms=int((START_S + 3) * 1000)))
    assert [row.subject for row in newest.items] == subjects[:2:-1]


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda i: i.list_workflows(WorkflowFilter(), limit=0), "limit"),
        (lambda i: i.list_workflows(WorkflowFilter(), limit=MAX_PAGE + 1), "limit"),
        (lambda i: i.list_workflows(WorkflowFilter(), cursor="bogus"), "cursor"),
        (lambda i: i.list_workflows(WorkflowFilter(status="lost")), "status"),  # type: ignore[arg-type]
        (lambda i: i.count(WorkflowFilter(version="1.0.0")), "version"),
    ],
)
def test_bad_filters_name_the_field(call: Any, field: str) -> None:
    _, inspector, _ = system()
    with pytest.raises(InvalidFilter) as raised:
        call(inspector)
    assert raised.value.field == field
    assert field in str(raised.value)


# -- search, property-based --------------------------------------------------------------------------

names = st.sampled_from(["arvo.orc.a", "arvo.orc.b"])
times = st.integers(min_value=0, max_value=20)
summaries = st.lists(
    st.builds(
        WorkflowSummary,
        subject=st.text(alphabet="abcdef", min_size=1, max_size=4),
        orchestrator=names,
        version=st.sampled_from(["1.0.0", "2.0.0"]),
        status=st.sampled_from(STATUSES),
        started_ms=times,
        updated_ms=times,
        parent_subject=st.none() | st.sampled_from(["p", "q"]),
    ),
    max_size=25,
    unique_by=lambda row: row.subject,
)
filters = st.builds(
    WorkflowFilter,
    status=st.none() | st.sampled_from(STATUSES),
    orchestrator=st.none() | names,
    parent_subject=st.none() | st.sampled_from(["p", "q"]),
    updated_after_ms=st.none() | times,
)


@given(summaries, filters, st.integers(min_value=1, max_value=7))
@settings(max_examples=200)
def test_paging_with_the_cursor_lists_every_match_once_in_order(
    rows: list[WorkflowSummary], where: WorkflowFilter, limit: int
) -> None:
    matching = newest_first(row for row in rows if matches(row, where))
    seen: list[WorkflowSummary] = []
    cursor = None
    for _ in range(len(rows) + 2):
        current = page(matching, limit, cursor)
        seen.extend(current.items)
        cursor = current.cursor
        if cursor is None:
            break
    assert seen == matching


@given(
    st.dictionaries(
        st.sampled_from(["status", "orchestrator", "version", "parent_subject", "started_after_ms", "updated_before_ms"]),
        st.none() | st.integers(-3, 3) | st.text(max_size=3) | st.booleans(),
    )
)
def test_a_filter_is_valid_or_refused_naming_a_field(fields: dict[str, Any]) -> None:
    refused: InvalidFilter | None = None
    try:
        where = WorkflowFilter(**fields)
    except InvalidFilter as error:
        refused = error
    if refused is not None:
        assert refused.field in fields
        return
    for name, value in fields.items():
        assert getattr(where, name) == value
