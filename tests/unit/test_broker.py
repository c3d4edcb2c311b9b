"""LocalBroker: in-process routing by ``to`` (spec 7.4, scenario 115) with the fixes of 10.19.

Arvo's SimpleEventBroker is LIFO (children newest first), sleeps 1 ms per event and drops what
nobody handles. This broker is FIFO, keeps undelivered and domained events, collects violations
in :attr:`LocalBroker.errors` and keeps going, and ``run`` returns the workflow's completion.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from orchestrator.broker import LocalBroker
from orchestrator.errors import ContractViolation, DefinitionError, TransactionCause, TransactionViolation
from orchestrator.event import ArvoEvent, create_arvo_event
from tests.unit.machines import (
    CLIENT,
    DumbMachine,
    dumb_contract,
    init_event,
    make_increment_handler,
    make_value_read_handler,
    new_orchestrator,
)


def event(type: str, to: str, **fields: object) -> ArvoEvent:
    return create_arvo_event(source=CLIENT, type=type, subject="test.subject", data={}, to=to, **fields)  # type: ignore[arg-type]


class Recorder:
    """A fake handler: records what it receives and answers with ``produce(event)``."""

    def __init__(self, source: str, produce: Callable[[ArvoEvent], list[ArvoEvent]] | None = None) -> None:
        self.source = source
        self.received: list[str] = []
        self._produce = produce or (lambda e: [])

    def execute(self, event: ArvoEvent) -> list[ArvoEvent]:
        self.received.append(event.type)
        return self._produce(event)


def children(event: ArvoEvent) -> list[ArvoEvent]:
    if event.type != "com.root.event":
        return []
    return [event_of(n) for n in (1, 2, 3)]


def event_of(n: int) -> ArvoEvent:
    return event(f"com.child.c{n}", "com.child.handler")


def test_children_are_processed_oldest_first_fifo_fix_10_19() -> None:
    log: list[str] = []
    root = Recorder("com.root.handler", children)
    child = Recorder("com.child.handler")
    broker = LocalBroker([root, child], on_event=lambda e: log.append(e.type))
    broker.publish(event("com.root.event", "com.root.handler"))
    assert log == ["com.root.event", "com.child.c1", "com.child.c2", "com.child.c3"]  # Arvo: root, c3, c2, c1
    assert child.received == ["com.child.c1", "com.child.c2", "com.child.c3"]
    assert [e.type for e in broker.history] == log


def test_breadth_first_across_generations() -> None:
    def fan(e: ArvoEvent) -> list[ArvoEvent]:
        depth = int(e.type.rsplit("d", 1)[1])
        if depth >= 2:
            return []
        return [event(f"com.a{i}.d{depth + 1}", "com.tree.node") for i in (1, 2)]

    broker = LocalBroker([Recorder("com.tree.node", fan)])
    broker.publish(event("com.a0.d0", "com.tree.node"))
    assert [e.type for e in broker.history] == [
        "com.a0.d0",
        "com.a1.d1",
        "com.a2.d1",
        "com.a1.d2",
        "com.a2.d2",
        "com.a1.d2",
        "com.a2.d2",
    ]


def test_publish_order_is_preserved_when_published_during_a_drain() -> None:
    broker: LocalBroker
    order: list[str] = []

    def republish(e: ArvoEvent) -> list[ArvoEvent]:
        if e.type == "com.first.event":
            broker.publish(event("com.published.inside", "com.sink.handler"))  # only enqueued
            return [event("com.returned.after", "com.sink.handler")]
        return []

    broker = LocalBroker(
        [Recorder("com.start.handler", republish), Recorder("com.sink.handler")],
        on_event=lambda e: order.append(e.type),
    )
    broker.publish(event("com.first.event", "com.start.handler"))
    assert order == ["com.first.event", "com.published.inside", "com.returned.after"]


def test_events_nobody_handles_are_kept_not_dropped_spec_115() -> None:
    broker = LocalBroker([Recorder("com.root.handler", children)])
    broker.publish(event("com.root.event", "com.root.handler"))
    assert [e.type for e in broker.undelivered] == ["com.child.c1", "com.child.c2", "com.child.c3"]


def test_domained_events_are_collected_by_domain_not_delivered() -> None:
    target = Recorder("com.target.handler")
    broker = LocalBroker([target])
    broker.publish(event("com.local.event", "com.target.handler"))
    broker.publish(event("com.review.event", "com.target.handler", domain="human.review"))
    broker.publish(event("com.other.event", "com.target.handler", domain="external"))
    broker.publish(event("com.review.second", "com.target.handler", domain="human.review"))
    assert target.received == ["com.local.event"]
    assert {domain: [e.type for e in events] for domain, events in broker.domained.items()} == {
        "human.review": ["com.review.event", "com.review.second"],
        "external": ["com.other.event"],
    }
    assert broker.undelivered == []


def test_violations_are_collected_and_the_broker_keeps_going() -> None:
    violation = TransactionViolation(TransactionCause.LOCK_UNACQUIRED, "busy")

    def refuse(e: ArvoEvent) -> list[ArvoEvent]:
        if e.type == "com.child.c2":
            raise violation
        if e.type == "com.child.c1":
            raise ContractViolation("bad data")
        return []

    child = Recorder("com.child.handler", refuse)
    broker = LocalBroker([Recorder("com.root.handler", children), child])
    broker.publish(event("com.root.event", "com.root.handler"))
    assert child.received == ["com.child.c1", "com.child.c2", "com.child.c3"]
    assert [(f.event.type, type(f.error)) for f in broker.errors] == [
        ("com.child.c1", ContractViolation),
        ("com.child.c2", TransactionViolation),
    ]
    assert broker.errors[1].error is violation
    assert broker.errors[1].error.retryable is True


def test_publish_requires_to() -> None:
    no_to = ArvoEvent.model_validate(
        {**event("com.x.event", "com.x.y").to_json(), "to": None, "datacontenttype": "application/json"}
    )
    with pytest.raises(ValueError, match='Event must have a "to" property'):
        LocalBroker().publish(no_to)


def test_one_handler_per_destination() -> None:
    broker = LocalBroker([Recorder("com.same.handler")])
    with pytest.raises(DefinitionError, match="already subscribed at 'com.same.handler'"):
        broker.subscribe(Recorder("com.same.handler"))
    assert broker.topics == ["com.same.handler"]


def test_history_can_be_turned_off() -> None:
    broker = LocalBroker([Recorder("com.root.handler", children)], keep_history=False)
    broker.publish(event("com.root.event", "com.root.handler"))
    assert broker.history == []
    assert len(broker.undelivered) == 3


def test_run_returns_the_completion_and_every_event_flows() -> None:
    broker = LocalBroker([make_value_read_handler(), make_increment_handler(), new_orchestrator()])
    init = init_event(data={"key": "abcd", "modifier": 6})
    done = broker.run(init)
    assert done is not None
    assert done.type == "arvo.orc.inc.done"
    assert done.data == {"success": True, "error": [], "final": 10}
    assert done.to == CLIENT
    assert broker.undelivered == []  # returned to the caller: taken out of undelivered
    assert broker.history[-1] == done
    assert [e.type for e in broker.history] == [
        "arvo.orc.inc",
        "com.value.read",
        "evt.value.read.success",
        "com.number.increment",
        "evt.number.increment.success",
        "arvo.orc.inc.done",
    ]


def test_run_returns_the_system_error_of_a_failed_workflow() -> None:
    broker = LocalBroker([make_value_read_handler(), new_orchestrator(DumbMachine)])
    result = broker.run(init_event(dumb_contract.version("1.0.0"), {"mode": "error"}))
    assert result is not None
    assert result.type == "sys.arvo.orc.dumb.error"
    assert result.data["errorMessage"] == "Normal error"


def test_run_returns_none_when_a_violation_stops_the_workflow() -> None:
    broker = LocalBroker([make_value_read_handler(), new_orchestrator()])  # no increment service
    assert broker.run(init_event()) is None
    assert [e.type for e in broker.undelivered] == ["com.number.increment"]
    bad = init_event().model_copy(update={"subject": "not-an-orchestration-subject"})
    assert broker.run(bad) is None
    assert len(broker.errors) == 1


def test_run_ignores_completions_of_other_workflows() -> None:
    broker = LocalBroker([make_value_read_handler(), make_increment_handler(), new_orchestrator()])
    first = broker.run(init_event())
    second_init = init_event(data={"key": "zz"})
    second = broker.run(second_init)
    assert first is not None
    assert second is not None
    assert second.subject == second_init.subject
    assert second is not first
