"""``python -m cli demo --celery``: the demo workflows through real Celery workers.

Against the configured Redis (``ORCH_BROKER_URL`` / ``ORCH_REDIS_URL``, default
``127.0.0.1:6379``), it first asks which workers are running. If running workers already
consume every demo queue (the README's two pools, or docker-compose), it uses them and says so:
their traces go where they export them (Jaeger in docker-compose), so the demo prints each
workflow's result and trace id. Otherwise it says so and starts two worker processes of its own
(one for the orchestrator queues, one for the service queues) that export their spans to a
temporary folder; each workflow starts inside a root span, so the event flow printed afterwards
is read back from that one trace. Its workers are stopped and its folders removed at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from celery import Celery
from opentelemetry import trace

from cli.demo import demo_workflows, is_expected, timed_workflows
from config.settings import Settings
from orchestrator.event import ArvoEvent
from orchestrator.telemetry import current_headers
from tasks.client import start_workflow
from tasks.tracing import configure_tracing
from tasks.worker.app import create_app

ORCHESTRATOR_QUEUES = "arvo.orc.inc,arvo.orc.fanout,arvo.orc.approval"
SERVICE_QUEUES = "com.value.read,com.number.increment,com.number.double"

#: Seconds to wait for running workers to answer before starting the demo's own.
DISCOVERY_TIMEOUT_S = 1.0

#: The approval's review deadline through real workers: short, so the demo shows it firing.
DEADLINE_S = 2.0


def _start_worker(queues: str, name: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", queues, "-c", "1", "-P", "solo"]
    command += ["--hostname", f"{name}@%h", "--without-gossip", "--without-mingle", "-E", "--loglevel", "WARNING"]
    with log.open("wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _wait_ready(app: Any, names: list[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=0.5) or []
        seen = {host.split("@")[0] for reply in replies for host in reply}
        if set(names) <= seen:
            return
    raise RuntimeError(f"workers {names} did not start within {timeout}s")


def _traced(init: ArvoEvent) -> ArvoEvent:
    """The same init event, stamped with the active (root) span's trace context."""
    headers = current_headers()
    fields = init.to_json()
    fields.update(traceparent=headers.traceparent, tracestate=headers.tracestate)
    return ArvoEvent.model_validate(fields)


def _flow(span_dir: Path, trace_id: str) -> list[dict[str, Any]]:
    spans = []
    for path in span_dir.glob("spans-*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            span = json.loads(line)
            if span["trace_id"] == trace_id and "cloudevents.event_type" in span["attributes"]:
                spans.append(span)
    return sorted(spans, key=lambda span: span["start"])


def _served_queues(app: Celery) -> dict[str, list[str]]:
    """Queue name -> the running workers consuming it (empty when none answer)."""
    answers = app.control.inspect(timeout=DISCOVERY_TIMEOUT_S).active_queues() or {}
    served: dict[str, list[str]] = {}
    for worker, queues in answers.items():
        for queue in queues or ():
            served.setdefault(queue["name"], []).append(worker)
    return served


@contextlib.contextmanager
def _own_workers(env: dict[str, str], app: Celery) -> Iterator[None]:
    """Two workers for the demo, stopped (and their logs removed) when the block ends."""
    with tempfile.TemporaryDirectory(prefix="orch-demo-logs-") as logs:
        workers = [
            _start_worker(ORCHESTRATOR_QUEUES, "demo-orchestrators", env, Path(logs) / "orchestrators.log"),
            _start_worker(SERVICE_QUEUES, "demo-services", env, Path(logs) / "services.log"),
        ]
        try:
            _wait_ready(app, ["demo-orchestrators", "demo-services"])
            yield
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                try:
                    worker.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    worker.kill()


def run_celery_demo(out: TextIO) -> int:
    """Run the demo workflows through Celery workers; 0 when all completed."""
    settings = Settings()
    app = create_app(settings)
    needed = set(ORCHESTRATOR_QUEUES.split(",")) | set(SERVICE_QUEUES.split(","))
    served = _served_queues(app)
    if needed <= set(served):
        names = sorted({worker for queue in needed for worker in served[queue]})
        print(f"using the running workers {', '.join(names)} ({settings.broker.redacted})", file=out)
        print("  their spans go where they export them; the flow below shows each result only", file=out)
        return _run(app, out, span_dir=None)
    missing = sorted(needed - set(served))
    print(f"no running worker consumes {', '.join(missing)}: starting two demo workers", file=out)
    with tempfile.TemporaryDirectory(prefix="orch-demo-spans-") as spans:
        span_dir = Path(spans)
        env = {**os.environ, "ORCH_OTEL_EXPORTER": f"file:{span_dir}"}
        configure_tracing(settings.model_copy(update={"otel_exporter": f"file:{span_dir}"}))
        with _own_workers(env, app):
            return _run(app, out, span_dir)


def _run(app: Celery, out: TextIO, span_dir: Path | None) -> int:
    failures = 0
    tracer = trace.get_tracer("cli.celery_demo")
    plans = [(title, init, None) for title, init in demo_workflows()] + timed_workflows(DEADLINE_S)
    for title, init, cancel_reason in plans:
        with tracer.start_as_current_span(f"demo {title}") as root:
            handle = start_workflow(_traced(init), app=app)
            if cancel_reason is not None:
                handle.cancel(cancel_reason)
            result = handle.result(timeout=30)
            trace_id = format(root.get_span_context().trace_id, "032x")
        print(f"\n== {title}\n  trace id {trace_id}", file=out)
        if span_dir is not None:
            time.sleep(0.3)  # the last spans are written right after the reply is published
            for span in _flow(span_dir, trace_id):
                attrs = span["attributes"]
                print(
                    f"  {attrs['cloudevents.event_type']:<30} {attrs['cloudevents.event_source']:<22} -> "
                    f"{attrs.get('cloudevents.arvo.event_to', '-'):<22} pid {span['pid']}",
                    file=out,
                )
        print(f"  {result.type:<30} {result.source:<22} -> {result.to} (external outbox)", file=out)
        if not is_expected(result, cancel_reason):
            failures += 1
        print(f"  => {'output' if cancel_reason is None else 'cancelled'}: {json.dumps(result.data)}", file=out)
    return 1 if failures else 0


__all__ = ["run_celery_demo"]
