"""OpenTelemetry for handler and orchestrator executions; the only module that imports it.

One span per execution, a child of the incoming event's ``traceparent``, with the CloudEvents
attributes of spec 1.2; the events an execution emits carry that span's ``traceparent``, so a
whole workflow is one trace however many processes it crosses.

With no SDK configured (the API's default provider), spans would be non-recording anyway: the
fast path then skips span creation entirely and hands the incoming trace context on unchanged,
which costs a function call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from orchestrator.event import ArvoEvent

_PROPAGATOR = TraceContextTextMapPropagator()
_TRACER_NAME = "orchestrator"


@dataclass(slots=True)
class TraceHeaders:
    """W3C trace context to stamp on emitted events (and Celery task headers)."""

    traceparent: str | None
    tracestate: str | None


def tracing_enabled() -> bool:
    """True once an SDK tracer provider has been installed (``trace.set_tracer_provider``)."""
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def context_from_headers(traceparent: str | None, tracestate: str | None) -> otel_context.Context | None:
    """An OTel context whose parent is the given W3C trace context, if any."""
    if not traceparent:
        return None
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    return _PROPAGATOR.extract(carrier)


def current_headers() -> TraceHeaders:
    """The W3C headers of the active span (both None when there is none)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return TraceHeaders(carrier.get("traceparent"), carrier.get("tracestate"))


@dataclass(slots=True)
class Execution:
    """A running execution span (or the no-SDK stand-in) and the headers it hands on."""

    span: trace.Span | None
    headers: TraceHeaders

    @property
    def trace_id(self) -> str | None:
        """The span's W3C trace id (32 hex digits), None when not traced."""
        if self.span is None:
            return None
        context = self.span.get_span_context()
        return format(context.trace_id, "032x") if context.is_valid else None

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        """Attach attributes when recording; free otherwise."""
        if self.span is not None:
            self.span.set_attributes(attributes)

    def record_error(self, error: BaseException) -> None:
        """Mark the span failed with the exception."""
        if self.span is not None:
            self.span.record_exception(error)
            self.span.set_status(Status(StatusCode.ERROR, str(error)))


class _Untraced:
    """The no-SDK stand-in as a context manager: no span, the incoming trace context handed on.

    A plain class rather than a generator-based context manager: it runs twice per step.
    """

    __slots__ = ("execution",)

    def __init__(self, event: ArvoEvent) -> None:
        self.execution = Execution(None, TraceHeaders(event.traceparent, event.tracestate))

    def __enter__(self) -> Execution:
        return self.execution

    def __exit__(self, *exc_info: object) -> None:
        return None


def execution_span(name: str, event: ArvoEvent, kind: str) -> AbstractContextManager[Execution]:
    """Span for one handler or orchestrator execution, child of ``event.traceparent``.

    Args:
        name: span name, e.g. ``Orchestrator<arvo.orc.inc>``.
        event: the event being executed (its trace context is the parent).
        kind: ``handler`` or ``orchestrator`` (the ``arvo.handler.kind`` attribute).
    """
    if not tracing_enabled():
        return _Untraced(event)
    return _traced_span(name, event, kind)


@contextmanager
def _traced_span(name: str, event: ArvoEvent, kind: str) -> Iterator[Execution]:
    parent = context_from_headers(event.traceparent, event.tracestate)
    tracer = trace.get_tracer(_TRACER_NAME)
    with tracer.start_as_current_span(
        name, context=parent, kind=SpanKind.CONSUMER, record_exception=False, set_status_on_exception=False
    ) as span:
        span.set_attributes({**event.otel_attributes, "arvo.handler.kind": kind})
        yield Execution(span, current_headers())
