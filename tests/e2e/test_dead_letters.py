"""Bad input ends in the dead-letter store with a reason, and the worker keeps serving.

Against one real worker (prefork, one child) serving every queue of the examples, each of these
messages is published and then found in ``DeadLetterStore.read()`` with its reason, an error
text, the time and what was received:

* an undecodable message: a garbage body declared as msgpack, with Celery task headers and
  without any (``undecodable-message``, the raw body kept);
* a valid Celery envelope whose argument is not an event (``undecodable``);
* an event whose ``to`` no handler of the deployment serves, published straight to a served
  queue (``unknown-destination``);
* events failing their contract: bad data for the ``com.value.read`` service and for the
  ``arvo.orc.inc`` orchestrator (``violation:Contract``);
* a pickle message (``rejected-message``): refused before decoding, never executed. The body
  is a pickle that creates a file when unpickled (checked on a copy in the test process), and
  the worker never created it.

After each one the worker process and its pool child are the same processes (nothing crashed),
the queue is empty (nothing loops), and an increment workflow still completes.
"""

from __future__ import annotations

import pickle
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from cli.demo import init_event
from orchestrator.event import ArvoEvent, create_arvo_event
from orchestrator.subject import OrchestrationSubject
from tasks.client import run_workflow, send_event
from tasks.store.streams import DeadLetter, DeadLetterStore
from tasks.worker.app import settings_of
from tasks.worker.task import EXECUTE_TASK
from tests.e2e.conftest import StartWorkers
from tests.helpers.chaos import publish_raw
from tests.helpers.e2e import ALL_QUEUES, INC_SCHEMA, queue_length, queue_lengths, redis_url_of, wait_until
from tests.helpers.worker import WorkerProcess, orch_env

TIMEOUT = 30.0


@pytest.fixture(scope="module")
def worker(start_workers: StartWorkers, module_url: str) -> WorkerProcess:
    (started,) = start_workers(
        [("all", ALL_QUEUES, {"pool": "prefork", "concurrency": 1})], orch_env(module_url)
    )
    return started


@pytest.fixture(scope="module")
def children(worker: WorkerProcess) -> list[int]:
    """The pool child at the start of the module (a crash would replace it)."""
    pids = worker.child_pids()
    assert len(pids) == 1
    return pids


@pytest.fixture
def dead_letters(client_app: Celery, module_client: redis.Redis) -> DeadLetterStore:
    settings = settings_of(client_app)
    return DeadLetterStore(module_client, settings.stream_maxlen)


def _wait_dead_letter(store: DeadLetterStore, matches: Callable[[DeadLetter], bool], what: str) -> DeadLetter:
    found = wait_until(lambda: [d for d in store.read() if matches(d)], TIMEOUT, f"the dead letter of {what}")
    assert len(found) == 1, found
    letter = found[0]
    assert letter.error
    assert letter.at > 0
    return letter


def _still_serving(
    worker: WorkerProcess, children: list[int], app: Celery, client: redis.Redis, queue: str
) -> None:
    url = redis_url_of(client)
    wait_until(lambda: queue_length(url, queue) == 0, TIMEOUT, f"{queue} drained")
    init = init_event("arvo.orc.inc", INC_SCHEMA, {"key": "after", "modifier": 1})
    done = run_workflow(init, timeout=TIMEOUT, app=app)
    assert done.data == {"success": True, "error": [], "final": len("after") + 1}
    assert worker.running
    assert worker.child_pids() == children, "the pool process was replaced: something crashed"
    assert queue_lengths(url) == dict.fromkeys(ALL_QUEUES, 0)


@pytest.mark.parametrize("with_task_headers", [True, False])
def test_undecodable_message(
    worker: WorkerProcess,
    children: list[int],
    client_app: Celery,
    module_client: redis.Redis,
    dead_letters: DeadLetterStore,
    with_task_headers: bool,
) -> None:
    body = b"\xc1\xc1 not msgpack " + uuid.uuid4().hex.encode()
    task_id = str(uuid.uuid4()) if with_task_headers else None
    publish_raw(client_app, "com.value.read", body, "application/x-msgpack", task_id=task_id)

    letter = _wait_dead_letter(
        dead_letters, lambda d: isinstance(d.payload, dict) and d.payload.get("body") == body, "garbage"
    )
    assert letter.reason == "undecodable-message"
    assert letter.task_id == task_id
    assert letter.payload["content_type"] == "application/x-msgpack"
    _still_serving(worker, children, client_app, module_client, "com.value.read")


@pytest.mark.parametrize("argument", [{"not": "an event"}, "just some text", 42, [1, 2, 3]])
def test_envelope_whose_argument_is_not_an_event(
    worker: WorkerProcess,
    children: list[int],
    client_app: Celery,
    module_client: redis.Redis,
    dead_letters: DeadLetterStore,
    argument: Any,
) -> None:
    sent = client_app.tasks[EXECUTE_TASK].apply_async(args=[argument], queue="com.number.double")
    letter = _wait_dead_letter(dead_letters, lambda d: d.task_id == sent.id, "a non-event argument")
    assert letter.reason == "undecodable"
    assert letter.payload == argument
    _still_serving(worker, children, client_app, module_client, "com.number.double")


def _event(to: str, data: dict[str, Any], dataschema: str | None) -> ArvoEvent:
    subject = OrchestrationSubject.new(
        orchestrator="arvo.orc.inc", version="1.0.0", initiator="com.test.client"
    )
    return create_arvo_event(
        source="com.test.client", type=to, to=to, subject=subject, data=data, dataschema=dataschema
    )


def test_event_for_an_unknown_destination(
    worker: WorkerProcess,
    children: list[int],
    client_app: Celery,
    module_client: redis.Redis,
    dead_letters: DeadLetterStore,
) -> None:
    event = _event("com.nobody.home", {"key": "x"}, None)
    # execute.delay routes by `to`, to a queue nobody serves: publish to a served one instead.
    client_app.tasks[EXECUTE_TASK].apply_async(args=[event.to_json()], queue="com.value.read")
    letter = _wait_dead_letter(dead_letters, lambda d: _event_id(d) == event.id, "an unknown to")
    assert letter.reason == "unknown-destination"
    assert "com.nobody.home" in letter.error
    assert letter.payload["to"] == "com.nobody.home"
    _still_serving(worker, children, client_app, module_client, "com.value.read")


@pytest.mark.parametrize(
    ("to", "data", "dataschema"),
    [
        ("com.value.read", {"key": ""}, "#/examples/value/read/1.0.0"),
        ("com.value.read", {"wrong": 1}, "#/examples/value/read/1.0.0"),
        ("arvo.orc.inc", {"parentSubject$$": None, "key": "k", "modifier": "not a number"}, INC_SCHEMA),
    ],
    ids=["service-empty-key", "service-missing-key", "orchestrator-bad-init"],
)
def test_event_failing_its_contract(
    worker: WorkerProcess,
    children: list[int],
    client_app: Celery,
    module_client: redis.Redis,
    dead_letters: DeadLetterStore,
    to: str,
    data: dict[str, Any],
    dataschema: str,
) -> None:
    event = _event(to, data, dataschema)
    send_event(event, client_app)
    letter = _wait_dead_letter(dead_letters, lambda d: _event_id(d) == event.id, "a contract violation")
    assert letter.reason == "violation:Contract"
    assert "ViolationError<Contract>" in letter.error
    assert letter.payload["data"] == data
    _still_serving(worker, children, client_app, module_client, to)


class _CreatesFile:
    """Unpickling this calls ``open(path, "w")``: the file appearing would prove execution."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def _task_body(argument: Any) -> bytes:
    """A Celery protocol 2 body ``(args, kwargs, embed)`` pickled."""
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    return pickle.dumps(((argument,), {}, embed))


def test_pickle_message_is_dead_lettered_and_never_executed(
    worker: WorkerProcess,
    children: list[int],
    client_app: Celery,
    module_client: redis.Redis,
    dead_letters: DeadLetterStore,
    tmp_path: Path,
) -> None:
    # The payload works: unpickling a copy in this process creates its file.
    probe = tmp_path / "probe-created"
    pickle.loads(_task_body(_CreatesFile(probe)))  # noqa: S301 - the point of the test
    assert probe.exists()

    target = tmp_path / "created-by-the-worker"
    body = _task_body(_CreatesFile(target))
    task_id = str(uuid.uuid4())
    publish_raw(client_app, "arvo.orc.inc", body, "application/x-python-serialize", task_id=task_id)

    letter = _wait_dead_letter(dead_letters, lambda d: d.task_id == task_id, "the pickle message")
    assert letter.reason == "rejected-message"
    assert "ContentDisallowed" in letter.error
    assert letter.payload["content_type"] == "application/x-python-serialize"
    assert letter.payload["body"] == body  # kept raw, never decoded
    _still_serving(worker, children, client_app, module_client, "arvo.orc.inc")
    assert not target.exists(), "the worker unpickled the message"
    assert f"Task {EXECUTE_TASK}[{task_id}]" not in worker.log_text()


def _event_id(letter: DeadLetter) -> str | None:
    return letter.payload.get("id") if isinstance(letter.payload, dict) else None
