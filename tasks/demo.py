"""``python -m orchestrator demo --celery``: the demo workflows through real Celery workers.

It starts two worker processes against the configured Redis (``ORCH_BROKER_URL`` /
``ORCH_REDIS_URL``, default ``127.0.0.1:6379``): one serving the orchestrator queues and one the
service queues. Each workflow starts inside a root span, so the whole workflow is one trace; the
workers export their spans to files, and the event flow printed afterwards is read back from that
trace (every execution span carries the CloudEvents attributes of the event it executed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from opentelemetry import trace

from config.settings import Settings
from orchestrator.demo import demo_workflows
from orchestrator.event import ArvoEvent
from orchestrator.telemetry import current_headers

ORCHESTRATOR_QUEUES = "arvo.orc.inc,arvo.orc.fanout"
SERVICE_QUEUES = "com.value.read,com.number.increment,com.number.double"


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


def run_celery_demo(out: TextIO) -> int:
    """Run the demo workflows through two Celery worker processes; 0 when all completed."""
    from tasks.app import create_app
    from tasks.client import run_workflow
    from tasks.tracing import configure_tracing

    span_dir = Path(tempfile.mkdtemp(prefix="orch-demo-spans-"))
    env = {**os.environ, "ORCH_OTEL_EXPORTER": f"file:{span_dir}"}
    settings = Settings(otel_exporter=f"file:{span_dir}")
    configure_tracing(settings)
    app = create_app(settings)
    logs = Path(tempfile.mkdtemp(prefix="orch-demo-logs-"))
    workers = [
        _start_worker(ORCHESTRATOR_QUEUES, "orchestrators", env, logs / "orchestrators.log"),
        _start_worker(SERVICE_QUEUES, "services", env, logs / "services.log"),
    ]
    failures = 0
    try:
        _wait_ready(app, ["orchestrators", "services"])
        tracer = trace.get_tracer("orchestrator.demo")
        for title, init in demo_workflows():
            with tracer.start_as_current_span(f"demo {title}") as root:
                result = run_workflow(_traced(init), timeout=30, app=app)
                trace_id = format(root.get_span_context().trace_id, "032x")
            print(f"\n== {title}\n  trace id {trace_id}", file=out)
            time.sleep(0.3)  # the last spans are written right after the reply is published
            for span in _flow(span_dir, trace_id):
                attrs = span["attributes"]
                print(
                    f"  {attrs['cloudevents.event_type']:<30} {attrs['cloudevents.event_source']:<22} -> "
                    f"{attrs.get('cloudevents.arvo.event_to', '-'):<22} pid {span['pid']}",
                    file=out,
                )
            print(f"  {result.type:<30} {result.source:<22} -> {result.to} (external outbox)", file=out)
            if result.type.startswith("sys."):
                failures += 1
            print(f"  => output: {json.dumps(result.data)}", file=out)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()
    return 1 if failures else 0


__all__ = ["run_celery_demo"]
