"""The Python inspection API against real workers: history, search, describe, retry, dead letters.

One worker (prefork, one child) serves the examples plus the test orchestrators of
:mod:`tests.e2e.inspect_registry`; :class:`tasks.inspect.RedisInspector` reads the module's
Redis and sends through the client app. The same scenarios run in process on
:class:`orchestrator.local_inspector.LocalInspector`, and both inspectors must report the same
steps (ids are deterministic: uuid5 of the consumed event, the timer, the failed version).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from examples.increment import increment_contract
from orchestrator.broker import LocalBroker
from orchestrator.errors import DeadLetterNotFound, WorkflowNotFailed, WorkflowNotFound
from orchestrator.event import ArvoEvent
from orchestrator.factory import EventFactory
from orchestrator.inspection import HistoryEntry, WorkflowFilter, WorkflowInspector
from orchestrator.local_inspector import LocalInspector
from orchestrator.memory.in_memory import InMemoryMachineMemory
from orchestrator.timers import VirtualClock
from tasks.client import run_workflow, send_event
from tasks.inspect import RedisInspector, inspector_from_settings
from tasks.store.streams import ExternalOutbox
from tasks.worker.app import create_app, settings_of
from tests.e2e.conftest import StartWorkers
from tests.e2e.inspect_registry import QUEUES, boss_contract, build, echo_contract, flag_contract
from tests.helpers.e2e import ALL_QUEUES, settings_for, wait_until
from tests.helpers.worker import WorkerProcess, orch_env
from tests.unit.machines import CLIENT, init_event

TIMEOUT = 30.0
HANDLERS = "tests.e2e.inspect_registry:build"
INC = increment_contract.version("1.0.0")
FLAG = flag_contract.version("1.0.0")


@pytest.fixture(scope="module")
def flags(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("flags")


@pytest.fixture(scope="module")
def client_app(module_url: str) -> Iterator[Celery]:
    """The publishing side, knowing the destinations of the test registry."""
    app = create_app(settings_for(module_url, handlers=HANDLERS))
    yield app
    app.close()


@pytest.fixture(scope="module")
def worker(start_workers: StartWorkers, module_url: str, flags: Path) -> WorkerProcess:
    env = {
        **orch_env(module_url, handlers=HANDLERS, timer_resolution_s=0.1),
        "ARVO_TEST_FLAG_DIR": str(flags),
    }
    (started,) = start_workers([("all", ALL_QUEUES + QUEUES, {"pool": "prefork", "concurrency": 1})], env)
    return started


@pytest.fixture(scope="module")
def inspector(worker: WorkerProcess, client_app: Celery, module_client: redis.Redis) -> RedisInspector:
    return RedisInspector(settings_of(client_app), module_client, client_app)


@pytest.fixture
def local_flags(flags: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The in-process machines read the same flag directory."""
    monkeypatch.setenv("ARVO_TEST_FLAG_DIR", str(flags))
    return flags


def local_system() -> tuple[LocalBroker, LocalInspector]:
    broker = LocalBroker(build(InMemoryMachineMemory()), clock=VirtualClock(start=1_700_000_000.0))
    return broker, LocalInspector(broker)


def steps(entries: list[HistoryEntry]) -> list[tuple[Any, ...]]:
    """What both stores must agree on (times and durations differ)."""
    return [(e.event_id, e.event_type, e.outcome, e.reason, e.error_name, e.before, e.after, e.emitted) for e in entries]


def test_the_factory_builds_an_inspector_from_settings(inspector: RedisInspector, client_app: Celery) -> None:
    built = inspector_from_settings(settings_of(client_app), client_app)
    assert isinstance(built, WorkflowInspector)
    built.client.close()


def test_a_completed_workflow_has_the_same_history_and_description_in_redis_and_in_process(
    inspector: RedisInspector, client_app: Celery
) -> None:
    init = init_event(INC, {"key": "abcd", "modifier": 3})
    done = run_workflow(init, TIMEOUT, client_app)
    assert done.type == "arvo.orc.inc.done"
    remote = inspector.history(init.subject)
    assert [(e.event_type, e.outcome, e.after) for e in remote] == [
        ("arvo.orc.inc", "applied", ("reading",)),
        ("evt.value.read.success", "applied", ("incrementing",)),
        ("evt.number.increment.success", "applied", ("done",)),
    ]
    assert remote[-1].emitted[0].id == done.id
    broker, local = local_system()
    assert broker.run(init) is not None
    assert steps(remote) == steps(local.history(init.subject))
    remote_described, local_described = inspector.describe(init.subject), local.describe(init.subject)
    for field in ("configuration", "context", "machine_class", "init_event_id", "failure", "timers"):
        assert getattr(remote_described, field) == getattr(local_described, field), field
    assert remote_described.summary.status == local_described.summary.status == "done"
    assert [e.event_type for e in inspector.history(init.subject, limit=1)] == ["evt.number.increment.success"]


def run_flag_scenario_remote(inspector: RedisInspector, client_app: Celery, flags: Path) -> ArvoEvent:
    flag = uuid.uuid4().hex
    (flags / flag).touch()
    init = init_event(FLAG, {"flag": flag})
    send_event(init, client_app)
    failed = WorkflowFilter(status="failed")
    wait_until(
        lambda: init.subject in {row.subject for row in inspector.list_workflows(failed, limit=1000).items},
        TIMEOUT,
        "the failed flag workflow to be listed",
    )
    return init


def test_a_failed_workflow_is_found_without_its_subject_counted_described_and_retried_to_done(
    inspector: RedisInspector, client_app: Celery, flags: Path, local_flags: Path
) -> None:
    before = inspector.count(WorkflowFilter(status="failed"))
    init = run_flag_scenario_remote(inspector, client_app, flags)
    assert inspector.count(WorkflowFilter(status="failed")) == before + 1
    assert inspector.count(WorkflowFilter(status="failed", orchestrator="arvo.orc.flag")) >= 1
    described = inspector.describe(init.subject)
    assert described.failure is not None
    assert described.failure.message == f"flag {init.data['flag']} was up"
    assert "Traceback" in described.failure.stack
    assert described.configuration == ("waiting",)
    sent = inspector.retry(init.subject)
    wait_until(lambda: inspector.describe(init.subject).summary.status == "done", TIMEOUT, "the retried workflow")
    remote = inspector.history(init.subject)
    assert [(e.outcome, e.event_id == sent) for e in remote] == [
        ("applied", False),
        ("failed", False),
        ("applied", True),
    ]
    assert init.subject not in {r.subject for r in inspector.list_workflows(WorkflowFilter(status="failed"), 1000).items}
    with pytest.raises(WorkflowNotFailed):
        inspector.retry(init.subject)
    # The same scenario in process reports the same steps.
    (local_flags / init.data["flag"]).touch()
    broker, local = local_system()
    broker.publish(init)
    broker.advance("1s")
    assert local.describe(init.subject).summary.status == "failed"
    assert local.retry(init.subject) == sent
    assert steps(local.history(init.subject)) == steps(remote)


def test_describe_shows_a_running_child_its_call_deadline_and_timers_and_cancel_ends_both(
    inspector: RedisInspector, client_app: Celery
) -> None:
    boss = init_event(boss_contract.version("1.0.0"), {"document": "plan"})
    send_event(boss, client_app)
    children = wait_until(lambda: _children(inspector, boss.subject), TIMEOUT, "the boss's child")
    [child] = children
    assert child.type == "arvo.orc.approval"
    described = wait_until(lambda: _described(inspector, child.subject), TIMEOUT, "the child's first step")
    assert described.summary.parent_subject == boss.subject
    assert described.summary.status == "waiting"
    [call] = described.pending_calls
    assert call.due_ms is not None
    assert sorted(t.event_type for t in described.timers) == ["remind", "sys.com.approval.review.error"]
    assert [row.subject for row in inspector.list_workflows(WorkflowFilter(parent_subject=boss.subject)).items] == [
        child.subject
    ]
    assert inspector.count(WorkflowFilter(parent_subject=boss.subject)) == 1
    inspector.cancel(boss.subject, "plan dropped")
    wait_until(
        lambda: {inspector.describe(s).summary.status for s in (boss.subject, child.subject)} == {"cancelled"},
        TIMEOUT,
        "both cancelled",
    )
    assert inspector.describe(boss.subject).cancel_reason == "plan dropped"


def _children(inspector: RedisInspector, subject: str) -> Any:
    try:
        return inspector.describe(subject).children
    except WorkflowNotFound:
        return ()


def _described(inspector: RedisInspector, subject: str) -> Any:
    try:
        return inspector.describe(subject)
    except WorkflowNotFound:
        return None


def echo(flag: str) -> ArvoEvent:
    factory = EventFactory(echo_contract.version("1.0.0"))
    if flag:
        return factory.accepts(source=CLIENT, data={"flag": flag})
    good = factory.accepts(source=CLIENT, data={"flag": "x"})
    return good.model_copy(update={"data": {"flag": ""}})  # refused by the service's contract


def _letter_of(inspector: RedisInspector, event: ArvoEvent) -> Any:
    found = [entry for entry in inspector.dead_letters(1000) if entry.payload.get("id") == event.id]
    return found[0] if found else None


def test_a_dead_letter_replays_and_leaves_the_store(
    inspector: RedisInspector, client_app: Celery, module_client: redis.Redis, flags: Path
) -> None:
    flag = uuid.uuid4().hex
    (flags / flag).touch()
    request = echo(flag)
    send_event(request, client_app)
    letter = wait_until(lambda: _letter_of(inspector, request), TIMEOUT, "the echo's dead letter")
    assert letter.reason.startswith("violation:")
    assert (letter.event_type, letter.subject, letter.replays) == ("com.flaky.echo", request.subject, 0)
    assert inspector.dead_letter(letter.id) == letter
    outbox = ExternalOutbox(module_client, settings_of(client_app).stream_maxlen)
    after = outbox.last_id(CLIENT, request.subject)
    replayed = inspector.replay_dead_letter(letter.id)
    assert (replayed.entry_id, replayed.event_id, replayed.destination) == (letter.id, request.id, "com.flaky.echo")
    with pytest.raises(DeadLetterNotFound):
        inspector.dead_letter(letter.id)
    replies = wait_until(
        lambda: [e for _, e in outbox.read_after(CLIENT, request.subject, after, block_ms=100) if e.parentid == request.id],
        TIMEOUT,
        "the echo's reply",
    )
    assert replies[0].data == {"flag": flag}
    assert _letter_of(inspector, request) is None
    with pytest.raises(DeadLetterNotFound):
        inspector.replay_dead_letter(letter.id)
    with pytest.raises(DeadLetterNotFound):
        inspector.replay_dead_letter("not-an-id")


def test_a_replay_that_fails_again_is_stored_anew_with_its_count_and_purge_removes_it(
    inspector: RedisInspector, client_app: Celery
) -> None:
    request = echo("")
    send_event(request, client_app)
    letter = wait_until(lambda: _letter_of(inspector, request), TIMEOUT, "the bad echo's dead letter")
    assert letter.reason == "violation:Contract"
    inspector.replay_dead_letter(letter.id)
    again = wait_until(
        lambda: (found := _letter_of(inspector, request)) is not None and found.id != letter.id and found,
        TIMEOUT,
        "the replay's new dead letter",
    )
    assert again.replays == 1
    assert again.reason == "violation:Contract"
    assert inspector.purge_dead_letters([again.id, "1-0"]) == 1
    assert _letter_of(inspector, request) is None


def test_unknown_subjects_are_workflow_not_found(inspector: RedisInspector) -> None:
    subject = init_event(INC).subject
    for call in (inspector.describe, inspector.history, inspector.retry):
        with pytest.raises(WorkflowNotFound):
            call(subject)
