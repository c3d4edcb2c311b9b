"""A real ``celery -A tasks worker`` subprocess on the test Redis: it serves tasks, stores no
results unless asked, refuses pickle, and keeps serving after a refused message.

These tests mainly prove the worker fixture; the orchestration behaviour through workers is
tested elsewhere with the same fixtures.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
from celery import Celery
from kombu import Exchange, Queue  # type: ignore[attr-defined]

from config.settings import Settings
from tasks.worker.app import create_app
from tests.helpers.worker import WorkerProcess, orch_env

QUEUE = "diagnostics"


@pytest.fixture
def backend_url(redis_url: str) -> str:
    """Result backend in database 1 of the test Redis (results are off by default)."""
    return redis_url.rsplit("/", 1)[0] + "/1"


@pytest.fixture
def client_app(redis_url: str, backend_url: str) -> Iterator[Celery]:
    """The publishing side: an app built from the same settings the worker reads."""
    app = create_app(Settings(broker_url=redis_url, redis_url=redis_url, result_backend=backend_url))
    yield app
    app.close()


@pytest.fixture
def worker(worker_factory: Callable[..., WorkerProcess], redis_url: str, backend_url: str) -> WorkerProcess:
    return worker_factory(
        env=orch_env(redis_url, result_backend=backend_url), queues=[QUEUE], concurrency=1, name="smoke"
    )


def test_worker_serves_a_task_and_stores_a_result_only_when_asked(
    worker: WorkerProcess, client_app: Celery, backend_url: str
) -> None:
    ping = client_app.tasks["tasks.ping"]
    ignored = ping.apply_async(queue=QUEUE)
    stored = ping.apply_async(queue=QUEUE, ignore_result=False)
    assert stored.get(timeout=30) == "pong"
    # One process consumes the queue in order, so the first task has run by now, and
    # task_ignore_result kept its result out of the backend.
    backend = redis.Redis.from_url(backend_url)
    assert backend.exists(f"celery-task-meta-{stored.id}") == 1
    assert backend.exists(f"celery-task-meta-{ignored.id}") == 0
    backend.close()
    assert "Task tasks.ping[" in worker.log_text()
    assert worker.running


def test_worker_answers_control_ping_and_reports_its_config(
    worker: WorkerProcess, client_app: Celery
) -> None:
    replies = client_app.control.ping(destination=[worker.hostname], timeout=5)
    assert replies == [{worker.hostname: {"ok": "pong"}}]
    conf = client_app.control.inspect(destination=[worker.hostname], timeout=5).conf()
    assert conf is not None
    worker_conf = conf[worker.hostname]
    assert worker_conf["task_serializer"] == "msgpack"
    assert "pickle" not in worker_conf["accept_content"]
    assert worker_conf["task_acks_late"] is True


def test_pickle_message_is_refused_and_the_worker_keeps_serving(
    worker: WorkerProcess, client_app: Celery, redis_client: redis.Redis
) -> None:
    task_id = str(uuid.uuid4())
    headers, properties, body, _ = client_app.amqp.as_task_v2(task_id, "tasks.ping", args=(), kwargs={})
    queue = Queue(QUEUE, Exchange(QUEUE), routing_key=QUEUE)  # type: ignore[no-untyped-call]
    with client_app.connection_for_write() as connection:
        connection.Producer().publish(
            body,
            exchange=queue.exchange,
            routing_key=QUEUE,
            serializer="pickle",
            headers=headers,
            declare=[queue],
            **properties,
        )

    worker.wait_for_log("ContentDisallowed", timeout=30)
    assert (
        client_app.tasks["tasks.ping"].apply_async(queue=QUEUE, ignore_result=False).get(timeout=30) == "pong"
    )
    assert worker.running
    assert f"Task tasks.ping[{task_id}]" not in worker.log_text()  # never executed
    deadline = time.monotonic() + 10
    while redis_client.llen(QUEUE) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert redis_client.llen(QUEUE) == 0  # consumed and dropped, not left to loop


def test_warm_stop_and_crash_helpers(worker_factory: Callable[..., WorkerProcess]) -> None:
    crashed = worker_factory(queues=[QUEUE], concurrency=2, name="crash")
    children = crashed.child_pids()
    assert len(children) == 2
    killed = crashed.kill_child(0)
    assert killed == children[0]
    crashed.wait_for_log("exited", timeout=30)  # the worker notices and replaces the process
    assert crashed.running
    crashed.kill()
    assert not crashed.running
    assert crashed.process.returncode == -9

    stopped = worker_factory(queues=[QUEUE], pool="solo", name="warm")
    assert stopped.child_pids() == []
    assert stopped.stop() == 0
