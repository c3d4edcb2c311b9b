"""The demo: the example workflows on the in-process broker, each event printed as it flows.

``python -m cli demo`` needs no Redis and no worker: it is the embedded mode. The
``--celery`` variant (:mod:`cli.celery_demo`) runs the same workflows through Celery workers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TextIO

from examples.registry import build
from orchestrator.broker import LocalBroker
from orchestrator.event import ArvoEvent, create_arvo_event
from orchestrator.memory.in_memory import InMemoryMachineMemory
from orchestrator.subject import OrchestrationSubject

#: The demo's client, the initiator of every workflow.
CLIENT = "com.demo.client"


def init_event(
    orchestrator: str,
    dataschema: str,
    data: dict[str, Any],
    source: str = CLIENT,
    accesscontrol: str | None = None,
) -> ArvoEvent:
    """An init event for a new root workflow of ``orchestrator`` (version 1.0.0)."""
    subject = OrchestrationSubject.new(orchestrator=orchestrator, version="1.0.0", initiator=source)
    return create_arvo_event(
        source=source,
        type=orchestrator,
        subject=subject,
        data={"parentSubject$$": None, **data},
        dataschema=dataschema,
        accesscontrol=accesscontrol,
    )


def demo_workflows() -> list[tuple[str, ArvoEvent]]:
    """The demo's workflows: increment and a 10-way fan-out."""
    return [
        (
            "increment: read 'answer', add 36",
            init_event("arvo.orc.inc", "#/examples/orchestrator/increment/1.0.0", {"key": "answer", "modifier": 36}),
        ),
        (
            "fan-out: double 0..9 in parallel and sum",
            init_event("arvo.orc.fanout", "#/examples/orchestrator/fanout/1.0.0", {"values": list(range(10))}),
        ),
    ]


def event_line(event: ArvoEvent) -> str:
    """One printed line per event: type, source, to, subject (shortened)."""
    subject = event.subject if len(event.subject) <= 24 else f"{event.subject[:12]}…{event.subject[-8:]}"
    return f"  {event.type:<30} {event.source:<22} -> {event.to or '-':<22} {subject}"


def run_demo(out: TextIO, printer: Callable[[str], None] | None = None) -> int:
    """Run every demo workflow in process; return 0 when all completed successfully."""
    emit = printer or (lambda line: print(line, file=out))
    broker = LocalBroker(build(InMemoryMachineMemory()), on_event=lambda e: emit(event_line(e)))
    failures = 0
    for title, init in demo_workflows():
        emit(f"\n== {title}")
        emit(f"  {'type':<30} {'source':<22}    {'to':<22} subject")
        result = broker.run(init)
        if result is None or result.type.startswith("sys."):
            failures += 1
            emit(f"  !! workflow did not complete: {result.data if result else broker.errors}")
        else:
            emit(f"  => output: {json.dumps(result.data)}")
    return 1 if failures else 0
