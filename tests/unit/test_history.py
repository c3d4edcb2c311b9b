"""Workflow history and the search index row, written by the core with every step.

Every step of a workflow appends one :class:`~orchestrator.inspection.HistoryEntry` (applied,
duplicate, ignored with its reason, failed with its error) atomically with the state, capped and
expiring with the record, and keeps the workflow's index row (status, orchestrator, version,
times, parent). Run on the example machines through ``LocalBroker`` and the in-memory memory.
"""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from examples.increment import make_increment_handler, make_value_read_handler
from examples.registry import build as build_examples
from orchestrator.broker import LocalBroker
from orchestrator.errors import WorkflowNotFailed
from orchestrator.history import IndexFields, retry_event, retry_event_id, workflow_status
from orchestrator.inspection import STATUSES, EmittedRef, HistoryEntry
from orchestrator.memory.in_memory import InMemoryMachineMemory
from orchestrator.record import WorkflowRecord
from orchestrator.timers import VirtualClock
from tests.unit.machines import (
    INC,
    FlakyMachine,
    RecordingMemory,
    flaky_contract,
    init_event,
    new_orchestrator,
    reply,
)

START_S = 1_700_000_000.0
FLAKY = flaky_contract.version("1.0.0")


def system(memory: InMemoryMachineMemory | None = None) -> tuple[LocalBroker, InMemoryMachineMemory, VirtualClock]:
    memory = memory if memory is not None else InMemoryMachineMemory()
    clock = VirtualClock(start=START_S)
    broker = LocalBroker([*build_examples(memory), new_orchestrator(FlakyMachine, memory=memory)], clock=clock)
    return broker, memory, clock


def history(memory: InMemoryMachineMemory, subject: str) -> list[HistoryEntry]:
    entries = memory.history(subject)
    assert entries is not None
    return entries


def test_a_completed_workflow_has_one_applied_entry_per_step_with_states_and_emitted_events() -> None:
    broker, memory, _ = system()
    init = init_event(INC)
    done = broker.run(init)
    assert done is not None
    assert done.type == "arvo.orc.inc.done"
    entries = history(memory, init.subject)
    assert [(e.event_type, e.outcome, e.before, e.after) for e in entries] == [
        ("arvo.orc.inc", "applied", None, ("reading",)),
        ("evt.value.read.success", "applied", ("reading",), ("incrementing",)),
        ("evt.number.increment.success", "applied", ("incrementing",), ("done",)),
    ]
    assert entries[0].event_id == init.id
    assert entries[0].event_source == init.source
    assert entries[0].event_time == init.time
    assert [ref.type for ref in entries[0].emitted] == ["com.value.read"]
    assert entries[-1].emitted == (EmittedRef(done.id, "arvo.orc.inc.done"),)
    assert all(e.at_ms == int(START_S * 1000) for e in entries)  # the orchestrator's (virtual) clock
    assert all(e.duration_ms >= 0 and e.trace_id is None and e.error_name is None for e in entries)


def test_duplicates_and_ignored_events_are_entries_without_a_write() -> None:
    memory = RecordingMemory()
    broker, _, _ = system(memory)
    init = init_event(INC)
    broker.run(init)
    read_call = next(e for e in broker.history if e.type == "com.value.read")
    memory.calls.clear()
    orchestrator = broker.orchestrators[0]
    assert orchestrator.execute(init) == []  # redelivered: a duplicate
    late = reply(read_call, {"value": 1})  # a reply to a workflow that is done: ignored
    assert orchestrator.execute(late) == []
    assert "write" not in memory.calls  # entry-only steps ride on the unlock
    entries = history(memory, init.subject)[-2:]
    assert [(e.outcome, e.reason, e.before, e.after) for e in entries] == [
        ("duplicate", None, ("done",), ("done",)),
        ("ignored", "workflow-done", ("done",), ("done",)),
    ]


def test_an_event_for_no_workflow_leaves_no_history() -> None:
    broker, memory, _ = system()
    stray = reply(init_event(INC), {"value": 1}, type="evt.value.read.success")
    broker.orchestrators[0].execute(stray)
    assert memory.history(stray.subject) is None
    assert memory.summaries() == []


def test_a_failed_step_is_an_entry_with_the_error_and_the_last_good_state() -> None:
    broker, memory, clock = system()
    init = init_event(FLAKY, {"failures": 1})
    broker.publish(init)
    broker.advance("1h")
    failed = history(memory, init.subject)[-1]
    assert (failed.outcome, failed.error_name, failed.error_message) == ("failed", "RuntimeError", "nudge is flaky")
    assert failed.before == failed.after == ("waiting",)
    assert failed.at_ms == int(clock() * 1000)
    assert [ref.type for ref in failed.emitted] == ["sys.arvo.orc.flaky.error"]


def test_history_is_capped_oldest_first_dropped() -> None:
    broker, memory, _ = system(InMemoryMachineMemory(history_limit=2))
    init = init_event(INC)
    broker.run(init)
    assert [e.event_type for e in history(memory, init.subject)] == [
        "evt.value.read.success",
        "evt.number.increment.success",
    ]
    assert [e.event_type for e in memory.history(init.subject, limit=1) or []] == ["evt.number.increment.success"]
    with pytest.raises(ValueError, match="history_limit"):
        InMemoryMachineMemory(history_limit=0)


def test_history_and_index_row_expire_with_the_record() -> None:
    now = [0.0]
    memory = InMemoryMachineMemory(clock=lambda: now[0])
    clock = VirtualClock(start=START_S)
    orchestrator = new_orchestrator(memory=memory, retention_s=60)
    broker = LocalBroker([make_value_read_handler(), make_increment_handler(), orchestrator], clock=clock)
    init = init_event(INC)
    broker.run(init)
    assert memory.history(init.subject)
    assert memory.summary(init.subject) is not None
    now[0] = 61.0
    assert memory.summaries() == []
    assert memory.history(init.subject) is None


def test_the_index_row_follows_the_status_from_running_to_done() -> None:
    broker, memory, clock = system()
    init = init_event(FLAKY, {"failures": 1})
    broker.publish(init)
    row = memory.summary(init.subject)
    assert row is not None
    assert (row.status, row.orchestrator, row.version, row.parent_subject) == (
        "waiting", "arvo.orc.flaky", "1.0.0", None,
    )
    started = row.started_ms
    broker.advance("1h")
    row = memory.summary(init.subject)
    assert row is not None
    assert row.status == "failed"
    assert row.started_ms == started
    assert row.updated_ms == int(clock() * 1000)


def record(**fields: Any) -> WorkflowRecord:
    base: dict[str, Any] = {
        "subject": "s", "init_event_id": "i", "parent_subject": None, "status": "active", "value": ["a"],
        "state": {}, "consumed": {}, "produced": [], "machine": None,
    }
    return WorkflowRecord(**{**base, **fields})


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({}, "running"),
        ({"timers": {"t": {"due": 1}}}, "waiting"),
        ({"status": "done"}, "done"),
        ({"status": "cancelled"}, "cancelled"),
        ({"execution_status": "failure", "timers": {"t": {"due": 1}}}, "failed"),
    ],
)
def test_the_core_decides_the_status(fields: dict[str, Any], status: str) -> None:
    assert workflow_status(record(**fields)) == status


def test_a_retry_id_is_one_per_failure_and_a_workflow_not_failed_has_none() -> None:
    assert retry_event_id("e", 3) == retry_event_id("e", 3) != retry_event_id("e", 4)
    with pytest.raises(WorkflowNotFailed, match="not failed"):
        retry_event(record(), 2)


# -- the stored form -----------------------------------------------------------------------------

ids = st.text(min_size=1, max_size=20)
states = st.none() | st.tuples(ids) | st.lists(ids, max_size=3).map(tuple)
entries = st.builds(
    HistoryEntry,
    at_ms=st.integers(min_value=0, max_value=2**53),
    event_id=ids,
    event_type=ids,
    event_source=ids,
    event_time=st.text(max_size=30),
    outcome=st.sampled_from(["applied", "duplicate", "ignored", "failed"]),
    reason=st.none() | st.text(max_size=20),
    error_name=st.none() | ids,
    error_message=st.text(max_size=40),
    before=states,
    after=states,
    emitted=st.lists(st.builds(EmittedRef, ids, ids), max_size=3).map(tuple),
    duration_ms=st.floats(min_value=0, max_value=1e9, allow_nan=False),
    trace_id=st.none() | st.text(alphabet="0123456789abcdef", min_size=32, max_size=32),
).map(lambda e: e if e.error_name is not None else HistoryEntry(**{**_fields(e), "error_message": None}))


def _fields(entry: HistoryEntry) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in HistoryEntry.__slots__}  # type: ignore[attr-defined]


@given(entries)
def test_history_entries_survive_the_stored_form(entry: HistoryEntry) -> None:
    stored = msgpack.unpackb(msgpack.packb(entry.to_dict(), use_bin_type=True), raw=False)
    assert HistoryEntry.from_dict(stored) == entry


@given(st.sampled_from(STATUSES), ids, ids, st.integers(0, 2**40), st.none() | ids)
def test_index_fields_give_their_summary_and_keep_a_stored_start(
    status: Any, orchestrator: str, version: str, now: int, parent: str | None
) -> None:
    fields = IndexFields(status, orchestrator, version, now, now, parent)
    assert fields.summary("s").started_ms == now
    assert fields.summary("s", started_ms=5).started_ms == 5
    assert fields.summary("s").parent_subject == parent
