"""One trace per workflow across every worker process, with parent links across hops.

Two real workers export their spans with ``ORCH_OTEL_EXPORTER=file:<dir>`` (one
``spans-<pid>.jsonl`` per process): the orchestrator pool is prefork (SDK set up in the pool
child, ``worker_process_init``), the service pool solo (``worker_init``). The client runs in a
subprocess (``tests/helpers/trace_client.py``) so that configuring the global OTel provider
and the Celery instrumentation never leaks into the pytest process; it starts the increment
and a 5-way fan-out workflow, each inside a root span stamped on the init event.

What is proven, from the span files alone:

* the spans of all processes split into exactly one trace per workflow, whose id is the root
  span's; no span is in any other trace (nothing started a trace of its own);
* every span except the client's root has a ``parent_span_id`` that is the ``span_id`` of
  another span of the same trace; every ``run/tasks.execute`` (consumer) span's parent is an
  ``apply_async/tasks.execute`` (producer) span, and the producer often lives in another
  process: the links cross hops and processes;
* each trace has exactly the spans the workflow's hops imply: one producer and one consumer
  Celery span per task, one ``Orchestrator<...>`` span per orchestrator step, one
  ``Handler<...>`` span per service call, all execution spans carrying the workflow's subject;
* the spans come from at least 2 worker processes: orchestrator steps from the prefork pool
  child, handlers from the solo service worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis

from orchestrator.inspection import HistoryEntry
from tasks.store import keys
from tasks.store.codec import unpack
from tests.e2e.conftest import StartWorkers
from tests.helpers.e2e import ORCHESTRATOR_QUEUES, SERVICE_QUEUES, wait_until
from tests.helpers.worker import REPO_ROOT, WorkerProcess, orch_env

RUN = "run/tasks.execute"
PUBLISH = "apply_async/tasks.execute"

#: Spans each workflow must produce, by name (the root span is checked separately).
EXPECTED = {
    "increment": {
        PUBLISH: 5,
        RUN: 5,
        "Orchestrator<arvo.orc.inc>": 3,
        "Handler<com.value.read>": 1,
        "Handler<com.number.increment>": 1,
    },
    "fanout": {PUBLISH: 11, RUN: 11, "Orchestrator<arvo.orc.fanout>": 6, "Handler<com.number.double>": 5},
}


def _read_spans(directory: Path) -> list[dict[str, Any]]:
    spans = []
    for path in sorted(directory.glob("spans-*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            span = json.loads(line)
            assert path.name == f"spans-{span['pid']}.jsonl"
            spans.append(span)
    return spans


@pytest.fixture(scope="module")
def span_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("spans")


@pytest.fixture(scope="module")
def traced_pools(start_workers: StartWorkers, module_url: str, span_dir: Path) -> list[WorkerProcess]:
    env = orch_env(module_url, otel_exporter=f"file:{span_dir}")
    return start_workers(
        [
            ("orchestrators", ORCHESTRATOR_QUEUES, {"pool": "prefork", "concurrency": 1}),
            ("services", SERVICE_QUEUES, {"pool": "solo"}),
        ],
        env,
    )


def _run_client(span_dir: Path, url: str) -> list[dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("ORCH_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    done = subprocess.run(
        [sys.executable, "-m", "tests.helpers.trace_client", str(span_dir), url],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"trace client failed:\n{done.stdout}\n{done.stderr}"
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_each_workflow_is_one_trace_across_worker_processes(
    traced_pools: list[WorkerProcess], module_url: str, span_dir: Path
) -> None:
    orchestrators, services = traced_pools
    workflows = _run_client(span_dir, module_url)
    assert [w["name"] for w in workflows] == ["increment", "fanout"]
    assert workflows[0]["data"] == {"success": True, "error": [], "final": len("traced") + 1}
    assert workflows[1]["data"] == {"total": 30, "replies": 5}
    traces = {w["trace_id"]: w for w in workflows}
    assert len(traces) == 2

    def complete() -> list[dict[str, Any]] | None:
        spans = _read_spans(span_dir)
        for workflow in workflows:
            wanted = sum(EXPECTED[workflow["name"]].values()) + 1
            if sum(1 for s in spans if s["trace_id"] == workflow["trace_id"]) < wanted:
                return None
        return spans

    spans = wait_until(complete, 20, "every span of both workflows exported")
    # Every span of every process belongs to one of the two workflow traces.
    assert {span["trace_id"] for span in spans} == set(traces)
    client_pids = {s["pid"] for s in spans if s["span_id"] in {w["root_span_id"] for w in workflows}}
    assert len(client_pids) == 1
    orchestrator_children = set(orchestrators.child_pids())
    assert orchestrator_children
    assert orchestrators.pid not in orchestrator_children

    for trace_id, workflow in traces.items():
        in_trace = [s for s in spans if s["trace_id"] == trace_id]
        by_id = {s["span_id"]: s for s in in_trace}
        assert len(by_id) == len(in_trace), "span ids are unique"
        roots = [s for s in in_trace if s["parent_span_id"] is None]
        assert [r["span_id"] for r in roots] == [workflow["root_span_id"]]
        assert roots[0]["pid"] in client_pids
        for span in in_trace:
            if span is not roots[0]:
                assert span["parent_span_id"] in by_id, f"{span['name']} has a parent outside its trace"
        counts = Counter(s["name"] for s in in_trace if s is not roots[0])
        assert counts == Counter(EXPECTED[workflow["name"]]), workflow["name"]

        # Hops: each task's consumer span is the child of its producer span.
        cross_process = 0
        for run in (s for s in in_trace if s["name"] == RUN):
            parent = by_id[run["parent_span_id"]]
            assert parent["name"] == PUBLISH
            assert parent["kind"] == "PRODUCER"
            assert run["kind"] == "CONSUMER"
            cross_process += parent["pid"] != run["pid"]
        assert cross_process >= 3, "producer and consumer of most hops are different processes"

        execution = [s for s in in_trace if s["name"].startswith(("Orchestrator<", "Handler<"))]
        assert {s["attributes"]["cloudevents.event_subject"] for s in execution} == {workflow["subject"]}
        assert {s["pid"] for s in execution if s["name"].startswith("Orchestrator<")} <= orchestrator_children
        assert {s["pid"] for s in execution if s["name"].startswith("Handler<")} == {services.pid}
        worker_pids = {s["pid"] for s in in_trace} - client_pids
        assert len(worker_pids) >= 2

    # Each step's history entry names the trace of its span: the workflow's.
    client = redis.Redis.from_url(module_url)
    try:
        for workflow in workflows:
            stored = client.lrange(keys.SINGLE.history(workflow["subject"]), 0, -1)
            assert stored
            assert {HistoryEntry.from_dict(unpack(item)).trace_id for item in stored} == {workflow["trace_id"]}
    finally:
        client.close()
