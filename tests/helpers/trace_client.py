"""A traced client, run as its own process by ``tests/e2e/test_tracing.py``.

``python -m tests.helpers.trace_client <span_dir> <redis_url>`` configures the OTel SDK with the
``file:<span_dir>`` exporter (and the Celery instrumentation) in *this* process, so the global
tracer provider of the pytest process is never touched. It then runs the increment and a fan-out
workflow through the workers, each inside a root span whose ``traceparent`` is stamped on the
init event (as ``tasks/demo.py`` does), and prints one JSON line per workflow: its subject, the
root span's trace and span ids, and the completion event's type and data.
"""

from __future__ import annotations

import json
import sys

from opentelemetry import trace

from cli.demo import init_event
from config.settings import Settings
from orchestrator.event import ArvoEvent
from orchestrator.telemetry import current_headers
from tasks.client import run_workflow
from tasks.tracing import configure_tracing, flush_tracing
from tasks.worker.app import create_app
from tests.helpers.broker import broker_url_for

WORKFLOWS = {
    "increment": (
        "arvo.orc.inc",
        "#/examples/orchestrator/increment/1.0.0",
        {"key": "traced", "modifier": 1},
    ),
    "fanout": ("arvo.orc.fanout", "#/examples/orchestrator/fanout/1.0.0", {"values": [1, 2, 3, 4, 5]}),
}


def traced(init: ArvoEvent) -> ArvoEvent:
    """``init`` stamped with the active span's W3C trace context."""
    headers = current_headers()
    fields = init.to_json()
    fields.update(traceparent=headers.traceparent, tracestate=headers.tracestate)
    return ArvoEvent.model_validate(fields)


def main(span_dir: str, redis_url: str) -> int:
    settings = Settings(broker_url=broker_url_for(redis_url), redis_url=redis_url, otel_exporter=f"file:{span_dir}")
    if not configure_tracing(settings):
        raise SystemExit("tracing did not turn on")
    app = create_app(settings)
    tracer = trace.get_tracer("tests.trace_client")
    try:
        for name, (orchestrator, schema, data) in WORKFLOWS.items():
            init = init_event(orchestrator, schema, data)
            with tracer.start_as_current_span(f"workflow {name}") as root:
                done = run_workflow(traced(init), timeout=30, app=app)
                context = root.get_span_context()
            line = {
                "name": name,
                "subject": init.subject,
                "trace_id": format(context.trace_id, "032x"),
                "root_span_id": format(context.span_id, "016x"),
                "type": done.type,
                "data": done.data,
            }
            print(json.dumps(line), flush=True)
    finally:
        flush_tracing()
        app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
