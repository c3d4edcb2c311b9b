"""The demo: the example workflows on the in-process broker, each event printed as it flows.

``python -m cli demo`` needs no Redis and no worker: it is the embedded mode. The
``--celery`` variant (:mod:`cli.celery_demo`) runs the same workflows through Celery workers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TextIO

from examples.approval import DEFAULT_DEADLINE_S
from examples.registry import build
from orchestrator.broker import LocalBroker
from orchestrator.event import ArvoEvent, create_arvo_event
from orchestrator.memory.in_memory import InMemoryMachineMemory
from orchestrator.subject import OrchestrationSubject
from orchestrator.timers import VirtualClock

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


#: Dataschema of the approval workflow's init event.
APPROVAL_SCHEMA = "#/examples/orchestrator/approval/1.0.0"

#: Reason given when the demo cancels an approval.
CANCEL_REASON = "the customer withdrew the request"


def timed_workflows(deadline_s: float) -> list[tuple[str, ArvoEvent, str | None]]:
    """The demo's workflows with time: ``(title, init event, cancellation reason or None)``.

    An approval nobody decides (its review deadline fires) and one that is cancelled.
    """
    return [
        (
            f"approval: nobody reviews 'contract.pdf', the review deadline ({_span(deadline_s)}) fires",
            init_event("arvo.orc.approval", APPROVAL_SCHEMA, {"document": "contract.pdf", "deadline_s": deadline_s}),
            None,
        ),
        (
            "approval: 'offer.pdf' is cancelled while it waits for a review",
            init_event("arvo.orc.approval", APPROVAL_SCHEMA, {"document": "offer.pdf", "deadline_s": deadline_s}),
            CANCEL_REASON,
        ),
    ]


def _span(seconds: float) -> str:
    return f"{seconds / 86400:g} days" if seconds >= 86400 else f"{seconds:g} s"


def is_expected(result: ArvoEvent, cancel_reason: str | None) -> bool:
    """Whether a timed workflow ended as the demo intends (cancelled ones with their reason)."""
    if cancel_reason is not None:
        return result.type.startswith("sys.") and result.data.get("errorMessage") == cancel_reason
    return not result.type.startswith("sys.")


def event_line(event: ArvoEvent) -> str:
    """One printed line per event: type, source, to, subject (shortened)."""
    subject = event.subject if len(event.subject) <= 24 else f"{event.subject[:12]}…{event.subject[-8:]}"
    return f"  {event.type:<30} {event.source:<22} -> {event.to or '-':<22} {subject}"


def run_demo(out: TextIO, printer: Callable[[str], None] | None = None) -> int:
    """Run every demo workflow in process; return 0 when all ended as intended.

    The broker runs on a virtual clock, so the approval's two-day review deadline passes in
    milliseconds.
    """
    emit = printer or (lambda line: print(line, file=out))
    clock = VirtualClock()
    broker = LocalBroker(build(InMemoryMachineMemory()), on_event=lambda e: emit(event_line(e)), clock=clock)
    failures = 0
    plans = [(title, init, None) for title, init in demo_workflows()] + timed_workflows(DEFAULT_DEADLINE_S)
    for title, init, cancel_reason in plans:
        emit(f"\n== {title}")
        emit(f"  {'type':<30} {'source':<22}    {'to':<22} subject")
        started = clock()
        if cancel_reason is None:
            result = broker.run(init)
        else:
            broker.publish(init)
            emit(f"  -- cancel: {cancel_reason}")
            broker.cancel(init.subject, cancel_reason)
            result = broker.run_terminal(init)
        if started != clock():
            emit(f"  (waited {(clock() - started) / 86400:g} days of virtual time)")
        if result is None or not is_expected(result, cancel_reason):
            failures += 1
            emit(f"  !! workflow did not end as intended: {result.data if result else broker.errors}")
        else:
            emit(f"  => {'output' if cancel_reason is None else 'cancelled'}: {json.dumps(result.data)}")
    return 1 if failures else 0
