"""Flower, started by the test on a free port against the workers' broker, sees everything.

``celery -A tasks flower --address=127.0.0.1 --port=<free>`` (``FLOWER_UNAUTHENTICATED_API=true``)
runs next to two real workers (orchestrator pool and service pool). What is proven:

* ``/healthcheck`` answers and ``/api/workers`` lists both workers by hostname, with the queues
  each consumes;
* after an increment workflow ran, ``/api/tasks`` lists its 5 ``tasks.execute`` tasks (matched
  by the workflow's subject in their arguments) in state ``SUCCESS``, the orchestrator steps
  executed by the orchestrator worker and the service calls by the service worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from cli.demo import init_event
from tasks.client import run_workflow
from tests.e2e.conftest import StartWorkers
from tests.helpers.e2e import INC_SCHEMA, ORCHESTRATOR_QUEUES, SERVICE_QUEUES, wait_until
from tests.helpers.redis_server import free_port
from tests.helpers.worker import REPO_ROOT, WorkerProcess, orch_env


def _get(base: str, path: str) -> Any:
    """GET ``base + path``; the decoded JSON (or text), None when Flower does not answer yet."""
    try:
        with urllib.request.urlopen(base + path, timeout=10) as response:
            body = response.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body


@pytest.fixture(scope="module")
def pools(start_workers: StartWorkers, module_url: str) -> list[WorkerProcess]:
    return start_workers(
        [
            ("orchestrators", ORCHESTRATOR_QUEUES, {"pool": "solo"}),
            ("services", SERVICE_QUEUES, {"pool": "solo"}),
        ],
        orch_env(module_url),
    )


@pytest.fixture(scope="module")
def flower(module_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Flower process on a free port; yields its base URL. Fails the test if it never answers."""
    port = free_port()
    log = tmp_path_factory.mktemp("flower") / "flower.log"
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("ORCH_")}
    env.update(orch_env(module_url))
    env["FLOWER_UNAUTHENTICATED_API"] = "true"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tasks",
        "flower",
        "--address=127.0.0.1",
        f"--port={port}",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while _get(base, "/healthcheck") != "OK":
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Flower did not start:\n{_tail(log)}", pytrace=False)
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        print(f"--- flower ({log}) ---\n{_tail(log)}")


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def test_flower_lists_the_workers(pools: list[WorkerProcess], flower: str) -> None:
    names = {worker.hostname for worker in pools}

    def listed() -> dict[str, Any] | None:
        # Flower fills a worker's entry from several inspect replies; one that timed out under
        # load leaves a key out (CI once saw a worker without ``active_queues``): ask again.
        workers = _get(flower, "/api/workers?refresh=1")
        if not isinstance(workers, dict) or not names <= set(workers):
            return None
        return workers if all("active_queues" in workers[name] for name in names) else None

    workers = wait_until(listed, 30, "both workers in /api/workers", interval=0.5)
    for worker in pools:
        queues = {queue["name"] for queue in workers[worker.hostname]["active_queues"]}
        assert queues == set(worker.queues)


def test_flower_lists_the_executed_tasks(pools: list[WorkerProcess], flower: str, client_app: Celery) -> None:
    orchestrators, services = pools
    # Flower only knows what happened while it listened: let it see the workers first.
    wait_until(lambda: _get(flower, "/api/workers?status=true"), 30, "worker status", interval=0.5)
    init = init_event("arvo.orc.inc", INC_SCHEMA, {"key": "flower", "modifier": 3})
    done = run_workflow(init, timeout=30, app=client_app)
    assert done.data["final"] == len("flower") + 3

    def workflow_tasks() -> list[dict[str, Any]] | None:
        tasks = _get(flower, "/api/tasks?taskname=tasks.execute&limit=1000")
        if not isinstance(tasks, dict):
            return None
        mine = [task for task in tasks.values() if init.subject in str(task.get("args"))]
        return mine if len(mine) == 5 and all(t["state"] == "SUCCESS" for t in mine) else None

    tasks = wait_until(workflow_tasks, 30, "the workflow's 5 tasks in /api/tasks", interval=0.5)
    assert {task["name"] for task in tasks} == {"tasks.execute"}
    by_worker = {task["worker"]: 0 for task in tasks}
    for task in tasks:
        by_worker[task["worker"]] += 1
    assert by_worker == {orchestrators.hostname: 3, services.hostname: 2}
