"""OpenTelemetry set-up of worker processes and clients (the SDK side; spans come from
:mod:`orchestrator.telemetry` and from opentelemetry-instrumentation-celery).

The SDK is configured in the process that runs tasks: in ``worker_process_init`` for prefork
children (a BatchSpanProcessor is not fork-safe, so it must be created after the fork) and in
``worker_init`` for the solo and thread pools. ``ORCH_OTEL_EXPORTER`` picks the exporter:
``none``, ``console``, ``otlp`` (to ``ORCH_OTEL_ENDPOINT``) or ``file:<dir>``, which writes one JSON
line per span to ``<dir>/spans-<pid>.jsonl`` (used by the tests to check that a workflow is one
trace across processes). Spans are flushed when a worker process shuts down.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

if TYPE_CHECKING:
    from config.settings import Settings

_configured: dict[str, Any] = {}
_mutex = threading.Lock()


class JsonLinesSpanExporter(SpanExporter):  # type: ignore[misc]
    """Appends finished spans as JSON lines to one file per process."""

    def __init__(self, directory: str) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        self._path = Path(directory) / f"spans-{os.getpid()}.jsonl"
        self._mutex = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = [json.dumps(_span_json(span)) + "\n" for span in spans]
        with self._mutex, self._path.open("a", encoding="utf-8") as out:
            out.writelines(lines)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def _span_json(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    parent = span.parent
    return {
        "name": span.name,
        "trace_id": format(context.trace_id, "032x") if context is not None else None,
        "span_id": format(context.span_id, "016x") if context is not None else None,
        "parent_span_id": format(parent.span_id, "016x") if parent is not None else None,
        "kind": span.kind.name,
        "attributes": {key: value for key, value in (span.attributes or {}).items()},
        "start": span.start_time,
        "end": span.end_time,
        "pid": os.getpid(),
    }


def configure_tracing(settings: Settings, *, instrument_celery: bool = True) -> bool:
    """Install the SDK tracer provider and the Celery instrumentation, once per process.

    Returns:
        True when tracing is on (an exporter other than ``none`` is configured).
    """
    exporter_name = settings.otel_exporter
    if exporter_name == "none":
        return False
    with _mutex:
        if _configured.get("pid") == os.getpid():
            return True
        provider = TracerProvider(resource=Resource.create({"service.name": settings.otel_service_name}))
        provider.add_span_processor(_processor(settings))
        trace.set_tracer_provider(provider)
        if instrument_celery:
            from opentelemetry.instrumentation.celery import CeleryInstrumentor

            CeleryInstrumentor().instrument(tracer_provider=provider)
        _configured.update(pid=os.getpid(), provider=provider)
        return True


def _processor(settings: Settings) -> Any:
    name = settings.otel_exporter
    if name.startswith("file:"):
        return SimpleSpanProcessor(JsonLinesSpanExporter(name.removeprefix("file:")))
    if name == "console":
        return SimpleSpanProcessor(ConsoleSpanExporter())
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otel_endpoint) if settings.otel_endpoint else OTLPSpanExporter())


def flush_tracing() -> None:
    """Flush pending spans of this process (called when a worker process exits)."""
    provider = _configured.get("provider")
    if provider is not None and _configured.get("pid") == os.getpid():
        provider.force_flush()
