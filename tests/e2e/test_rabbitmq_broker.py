"""RabbitMQ as the Celery broker, Redis for state: the same workflows, whatever the test run's broker.

This module always uses RabbitMQ (the node on 127.0.0.1:5672, a fresh virtual host for the
module), so the default test run proves the AMQP path too; ``ARVO_TEST_BROKER=amqp`` runs the
rest of the end-to-end suite on it as well. What is proven here:

* increment and fan-out workflows complete through two worker pools, with the same output as
  in process, and a timer (the approval's review deadline) fires: timers live in Redis whatever
  the broker;
* every destination queue is a durable classic queue on RabbitMQ and the Redis holds no broker
  key (no queue list, no ``unacked`` hash): the Redis-transport fork is not in the path.

Worker crashes and poison messages on RabbitMQ are the fault suite's
(``tests/e2e/faults/test_worker_crash.py`` and ``test_poison_message.py`` under
``ARVO_TEST_BROKER=amqp``, run by ``.ci/run``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
import redis
from celery import Celery

from cli.demo import init_event
from config.settings import Settings
from tasks.client import run_workflow
from tasks.worker.app import create_app
from tests.e2e.conftest import StartWorkers
from tests.helpers.broker import amqp_url_for
from tests.helpers.e2e import (
    ALL_QUEUES,
    FANOUT_SCHEMA,
    INC_SCHEMA,
    ORCHESTRATOR_QUEUES,
    SERVICE_QUEUES,
    in_process_run,
)
from tests.helpers.worker import WorkerProcess, orch_env

TIMEOUT = 60
APPROVAL_QUEUE = "arvo.orc.approval"


@pytest.fixture(scope="module")
def amqp_url(module_url: str) -> str:
    """A fresh RabbitMQ virtual host for this module (deleted when the test process ends)."""
    return amqp_url_for(module_url)


@pytest.fixture(scope="module")
def pools(start_workers: StartWorkers, module_url: str, amqp_url: str) -> list[WorkerProcess]:
    env = orch_env(module_url, broker_url=amqp_url)
    return start_workers(
        [
            ("orchestrators", (*ORCHESTRATOR_QUEUES, APPROVAL_QUEUE), {"pool": "prefork", "concurrency": 1}),
            ("services", SERVICE_QUEUES, {"pool": "solo"}),
        ],
        env,
    )


@pytest.fixture(scope="module")
def amqp_app(module_url: str, amqp_url: str) -> Iterator[Celery]:
    app = create_app(Settings(broker_url=amqp_url, redis_url=module_url))
    yield app
    app.close()


def _queues(vhost: str) -> dict[str, tuple[str, str]]:
    """``name -> (durable, type)`` of the vhost's queues, from ``rabbitmqctl``."""
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "durable", "type"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    rows = [line.split("\t") for line in listed.splitlines()[1:] if line.strip()]
    return {row[0]: (row[1], row[2]) for row in rows if len(row) == 3}


def test_workflows_complete_on_rabbitmq_with_the_in_process_output(
    pools: list[WorkerProcess], amqp_app: Celery, module_client: redis.Redis, amqp_url: str
) -> None:
    for init in (
        init_event("arvo.orc.inc", INC_SCHEMA, {"key": "rabbit", "modifier": 4}),
        init_event("arvo.orc.fanout", FANOUT_SCHEMA, {"values": [1, 2, 3, 4]}),
    ):
        expected, _, _ = in_process_run(init)
        done = run_workflow(init, timeout=TIMEOUT, app=amqp_app)
        assert expected is not None
        assert (done.type, done.data) == (expected.type, expected.data)

    vhost = amqp_url.rsplit("/", 1)[1]
    queues = _queues(vhost)
    for queue in ALL_QUEUES:
        assert queues.get(queue) == ("true", "classic"), (queue, queues)
    # The Redis holds state only: no kombu queue list, no unacked bookkeeping.
    assert not module_client.exists(*ALL_QUEUES, "unacked", "unacked_index")


def test_a_deadline_fires_with_a_rabbitmq_broker(pools: list[WorkerProcess], amqp_app: Celery) -> None:
    init = init_event("arvo.orc.approval", "#/examples/orchestrator/approval/1.0.0",
                      {"document": "rabbit.pdf", "deadline_s": 1.0})
    done = run_workflow(init, timeout=TIMEOUT, app=amqp_app)
    assert done.data == {"approved": False, "decided_by": "deadline", "reminders": 0}
