"""Flower, started by the test on a free port against the workers' broker, sees everything.

``celery -A tasks flower --address=127.0.0.1 --port=<free>`` (``FLOWER_UNAUTHENTICATED_API=true``)
runs next to three real workers: two orchestrator pools (a prefork one for ``arvo.orc.inc``, a
solo one for ``arvo.orc.fanout``: Celery reports retries differently from each) and a service
pool. What is proven:

* ``/healthcheck`` answers and ``/api/workers`` lists the workers by hostname, with the queues
  each consumes;
* after an increment workflow ran, ``/api/tasks`` lists its 5 ``tasks.execute`` tasks (matched
  by the workflow's subject in their arguments) in state ``SUCCESS``, the orchestrator steps
  executed by the orchestrator worker and the service calls by the service worker;
* each of them is listed under its display name (``<event type> · arvo.orc.inc/<short id>``,
  tasks/worker/naming.py), not as ``tasks.execute``, and the link the dashboard gives for the
  workflow (:func:`~tasks.worker.naming.flower_task_filter_url`) opens Flower's task list
  whose search finds exactly those 5 tasks;
* a step that finds its workflow's lock busy (the test holds it) is retried, and Flower shows
  the retry as one line saying why (``exception`` and ``traceback``), as does the worker log,
  for a prefork and a solo worker alike.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import redis
from celery import Celery

from cli.demo import init_event
from tasks.client import run_workflow, start_workflow
from tasks.store.memory import RedisMachineMemory
from tasks.worker.naming import flower_task_filter_url, short_workflow_id
from tests.e2e.conftest import StartWorkers
from tests.helpers.e2e import FANOUT_SCHEMA, INC_SCHEMA, SERVICE_QUEUES, wait_until
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
    # Celery reports a retry differently from a prefork child and from a solo worker, so one
    # orchestrator runs in each.
    return start_workers(
        [
            ("orchestrators", ("arvo.orc.inc",), {"pool": "prefork", "concurrency": 1}),
            ("fanouts", ("arvo.orc.fanout",), {"pool": "solo"}),
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

    workers = wait_until(listed, 30, "every worker in /api/workers", interval=0.5)
    for worker in pools:
        queues = {queue["name"] for queue in workers[worker.hostname]["active_queues"]}
        assert queues == set(worker.queues)


def test_flower_lists_the_executed_tasks(pools: list[WorkerProcess], flower: str, client_app: Celery) -> None:
    orchestrators, _, services = pools
    # Flower only knows what happened while it listened: let it see the workers first.
    wait_until(lambda: _get(flower, "/api/workers?status=true"), 30, "worker status", interval=0.5)
    init = init_event("arvo.orc.inc", INC_SCHEMA, {"key": "flower", "modifier": 3})
    done = run_workflow(init, timeout=30, app=client_app)
    assert done.data["final"] == len("flower") + 3

    def workflow_tasks() -> list[dict[str, Any]] | None:
        tasks = _get(flower, "/api/tasks?limit=1000")
        if not isinstance(tasks, dict):
            return None
        mine = [task for task in tasks.values() if init.subject in str(task.get("args"))]
        return mine if len(mine) == 5 and all(t["state"] == "SUCCESS" for t in mine) else None

    tasks = wait_until(workflow_tasks, 30, "the workflow's 5 tasks in /api/tasks", interval=0.5)
    by_worker = {task["worker"]: 0 for task in tasks}
    for task in tasks:
        by_worker[task["worker"]] += 1
    assert by_worker == {orchestrators.hostname: 3, services.hostname: 2}

    # A person scanning the list reads each task's event type and workflow.
    workflow = f"arvo.orc.inc/{short_workflow_id(init.subject)}"
    assert sorted(task["name"] for task in tasks) == sorted(
        f"{event_type} · {workflow}"
        for event_type in (
            "arvo.orc.inc",
            "com.value.read",
            "evt.value.read.success",
            "com.number.increment",
            "evt.number.increment.success",
        )
    )
    assert {task["result"] for task in tasks} == {"'applied'", "'handled'"}

    # The search the dashboard's link stands for finds exactly this workflow's tasks.
    (term,) = parse_qs(urlsplit(flower_task_filter_url(flower, init.subject)).query)["name"]
    assert term == workflow
    found = _get(flower, f"/api/tasks?search={quote(f'name:{term}')}&limit=1000")
    assert isinstance(found, dict)
    assert set(found) == {task["uuid"] for task in tasks}


def test_the_dashboard_link_shows_one_workflows_tasks_in_a_browser(
    pools: list[WorkerProcess], flower: str, client_app: Celery, tmp_path: Path
) -> None:
    wait_until(lambda: _get(flower, "/api/workers?status=true"), 30, "worker status", interval=0.5)
    mine, other = (init_event("arvo.orc.inc", INC_SCHEMA, {"key": key, "modifier": 1}) for key in ("a", "b"))
    for init in (mine, other):
        run_workflow(init, timeout=30, app=client_app)

    def task_ids(init: Any) -> set[str] | None:
        tasks = _get(flower, "/api/tasks?limit=1000")
        if not isinstance(tasks, dict):
            return None
        ids = {uuid for uuid, task in tasks.items() if init.subject in str(task.get("args"))}
        return ids if len(ids) == 5 else None

    wanted = wait_until(lambda: task_ids(mine), 30, "the first workflow's 5 tasks", interval=0.5)
    unwanted = wait_until(lambda: task_ids(other), 30, "the second workflow's 5 tasks", interval=0.5)
    # Flower's page fills its table with JavaScript (the link's name= becomes its search): a
    # real browser loads it and the rendered rows (one per task, id = task id) are compared.
    dom = subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--virtual-time-budget=15000",
            "--dump-dom",
            flower_task_filter_url(flower, mine.subject),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    shown = set(re.findall(r'<tr[^>]* id="([0-9a-f-]{36})"', dom))
    assert shown == wanted, dom[-3000:]
    assert not shown & unwanted


@pytest.mark.parametrize(
    ("orchestrator", "data", "pool"),
    [
        ("arvo.orc.inc", {"key": "busy", "modifier": 1}, "prefork"),
        ("arvo.orc.fanout", {"values": [1, 2]}, "solo"),
    ],
)
def test_a_lock_busy_retry_reads_as_one_line(
    pools: list[WorkerProcess],
    flower: str,
    client_app: Celery,
    module_client: redis.Redis,
    orchestrator: str,
    data: dict[str, Any],
    pool: str,
) -> None:
    worker = pools[0] if pool == "prefork" else pools[1]
    wait_until(lambda: _get(flower, "/api/workers?status=true"), 30, "worker status", interval=0.5)
    init = init_event(orchestrator, INC_SCHEMA if orchestrator == "arvo.orc.inc" else FANOUT_SCHEMA, data)
    workflow = f"{orchestrator}/{short_workflow_id(init.subject)}"
    name = f"{orchestrator} · {workflow}"
    # Another step holds the workflow's lock: the init event is retried until it is released.
    memory = RedisMachineMemory(module_client, lock_expire_s=60, auto_renewal=False)
    lease = memory.lock(init.subject)
    assert lease is not None
    try:
        handle = start_workflow(init, app=client_app)

        def retried() -> dict[str, Any] | None:
            # Flower's state is RETRY only until the retried message is received again (at
            # once: it waits for its ETA in the worker); the retry's fields stay.
            tasks = _get(flower, "/api/tasks?limit=1000")
            if not isinstance(tasks, dict):
                return None
            mine = [t for t in tasks.values() if t["name"] == name and t["retried"] and t["exception"]]
            return mine[0] if mine else None

        task = wait_until(retried, 30, f"a retry of {name} in /api/tasks", interval=0.2)
    finally:
        memory.unlock(lease)
    assert handle.result(30).type == f"{orchestrator}.done"

    expected = f"ExpectedRetry: lock busy: another step of workflow {workflow} holds its lock (retry "
    for field in ("exception", "traceback"):
        assert len(task[field].splitlines()) == 1, f"{field}: {task[field]}"
        assert task[field].startswith(expected), f"{field}: {task[field]}"
    log = worker.log_text().splitlines()
    retries = [i for i, line in enumerate(log) if f"Task {name}[" in line and "retry:" in line]
    assert retries
    for i in retries:  # the line says why, and no traceback follows it
        assert f"retry: {expected}" in log[i], log[i]
        assert i + 1 == len(log) or log[i + 1].startswith("["), log[i + 1]
