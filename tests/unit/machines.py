"""Shared fixture contracts, machines and helpers for the unit tests of the orchestration layer.

Everything here is in-process: contracts are pydantic models, machines are small ArvoMachine
statecharts, and events are built with the project's factories. The increment workflow of
``examples/increment.py`` (``arvo.orc.inc`` over ``com.value.read`` and ``com.number.increment``)
is the main subject of the orchestrator tests; the machines below cover what it does not:
compound, parallel and history states, guards, eventless transitions, failures in actions,
outputs of ``{}`` and nested orchestrations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field
from statemachine import HistoryState, State

from examples.increment import (
    IncrementMachine,
    increment_contract,
    make_increment_handler,
    make_value_read_handler,
    number_increment,
    value_read,
)
from orchestrator.contract import (
    VersionedArvoContract,
    create_arvo_contract,
    create_orchestrator_contract,
    create_simple_arvo_contract,
)
from orchestrator.errors import ExecutionViolation
from orchestrator.event import ArvoEvent, create_arvo_event
from orchestrator.factory import EventFactory, OrchestratorEventFactory
from orchestrator.handler import ArvoEventHandler
from orchestrator.inspection import HistoryEntry
from orchestrator.machine import ArvoMachine
from orchestrator.memory.base import Lease, ReadResult
from orchestrator.memory.in_memory import InMemoryMachineMemory
from orchestrator.orchestrator import ArvoOrchestrator, create_orchestrator
from orchestrator.subject import OrchestrationSubject

__all__ = [
    "CLIENT",
    "INC",
    "INCREMENT",
    "READ",
    "child_contract",
    "ChildDone",
    "ChildInit",
    "ChildMachine",
    "counter_contract",
    "CounterDone",
    "CounterInit",
    "CounterMachine",
    "dumb_contract",
    "DumbMachine",
    "Empty",
    "FailingMemory",
    "hello_contract",
    "hello_domain_contract",
    "hello_event",
    "hello_handler",
    "HelloInput",
    "HelloOutput",
    "increment_contract",
    "IncrementMachine",
    "init_event",
    "KeyInit",
    "make_increment_handler",
    "make_value_read_handler",
    "Mode",
    "new_orchestrator",
    "number_increment",
    "pair_contract",
    "PairDone",
    "ParallelMachine",
    "parent_contract",
    "ParentDone",
    "ParentInit",
    "ParentMachine",
    "Payload",
    "RecordingMemory",
    "reply",
    "root_subject",
    "trap_contract",
    "value_fetch",
    "value_read",
]

#: The initiator of the test workflows.
CLIENT = "com.test.client"

INC = increment_contract.version("1.0.0")
READ = value_read.version("1.0.0")
INCREMENT = number_increment.version("1.0.0")


# --------------------------------------------------------------------------- helpers


def init_event(
    contract: VersionedArvoContract = INC,
    data: Mapping[str, Any] | None = None,
    *,
    source: str = CLIENT,
    parent_subject: str | None = None,
    **options: Any,
) -> ArvoEvent:
    """An init event for ``contract`` built by the orchestrator event factory.

    ``options`` are event attributes (``redirectto``, ``accesscontrol``, ``domain``, ``id``...);
    ``redirectto`` also lands in the subject's ``meta.redirectto`` as the factory does.
    """
    payload = {"key": "abc", "modifier": 2} if data is None else dict(data)
    return OrchestratorEventFactory(contract).init(
        source=source, data={"parentSubject$$": parent_subject, **payload}, **options
    )


def reply(event: ArvoEvent, data: Mapping[str, Any], *, type: str | None = None, **options: Any) -> ArvoEvent:
    """A service reply to ``event`` (an orchestrator's service call), as the service would send it.

    Built with ``create_arvo_event`` (no contract check) so tests can send invalid data too.
    """
    contract_type = event.type
    return create_arvo_event(
        source=contract_type,
        type=type or f"evt.{contract_type.removeprefix('com.')}.success",
        subject=event.subject,
        data=dict(data),
        dataschema=options.pop("dataschema", event.dataschema),
        to=event.redirectto or event.source,
        parentid=event.id,
        accesscontrol=options.pop("accesscontrol", event.accesscontrol),
        **options,
    )


def new_orchestrator(
    *machines: type[ArvoMachine], memory: InMemoryMachineMemory | None = None, **kwargs: Any
) -> ArvoOrchestrator:
    """An orchestrator over ``machines`` (the increment machine by default) with in-memory state."""
    return create_orchestrator(
        machines=machines or (IncrementMachine,),
        memory=memory if memory is not None else InMemoryMachineMemory(),
        **kwargs,
    )


class RecordingMemory(InMemoryMachineMemory):
    """The in-memory machine memory, recording every call by name (a spy, not a fake)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls: list[str] = []

    def lock(self, subject: str) -> Lease | None:
        self.calls.append("lock")
        return super().lock(subject)

    def unlock(self, lease: Lease, settle: str | None = None, history: HistoryEntry | None = None) -> bool:
        self.calls.append("unlock+settle" if settle is not None else "unlock")
        return super().unlock(lease, settle, history)

    def read(self, subject: str, event_id: str | None = None) -> ReadResult:
        self.calls.append("read")
        return super().read(subject, event_id)

    def write(self, subject: str, record: dict[str, Any], **kwargs: Any) -> int:
        self.calls.append("write")
        return super().write(subject, record, **kwargs)

    def settle(self, subject: str, event_id: str) -> None:
        self.calls.append("settle")
        super().settle(subject, event_id)


class FailingMemory(InMemoryMachineMemory):
    """The in-memory machine memory whose ``fail`` operation raises ``RuntimeError(message)``."""

    def __init__(self, fail: str, message: str) -> None:
        super().__init__()
        self.fail = fail
        self.message = message

    def _maybe_fail(self, operation: str) -> None:
        if self.fail == operation:
            raise RuntimeError(self.message)

    def lock(self, subject: str) -> Lease | None:
        self._maybe_fail("lock")
        return super().lock(subject)

    def read(self, subject: str, event_id: str | None = None) -> ReadResult:
        self._maybe_fail("read")
        return super().read(subject, event_id)

    def write(self, subject: str, record: dict[str, Any], **kwargs: Any) -> int:
        self._maybe_fail("write")
        return super().write(subject, record, **kwargs)


# --------------------------------------------------------------------------- small machines


class KeyInit(BaseModel):
    key: str = Field(min_length=1)


class Empty(BaseModel):
    pass


class PairDone(BaseModel):
    value: int | None = None
    result: int | None = None


pair_contract = create_orchestrator_contract(
    uri="#/test/orchestrator/pair", name="pair", versions={"1.0.0": {"init": KeyInit, "complete": PairDone}}
)


class ParallelMachine(ArvoMachine):
    """A parallel state with two compound regions, each waiting for one service reply."""

    contract = pair_contract.version("1.0.0")
    services = (READ, INCREMENT)

    class working(State.Parallel):
        class left(State.Compound):
            reading = State(initial=True)
            read_done = State(final=True)
            got_value = reading.to(read_done, event="evt.value.read.success", on="keep_value")

        class right(State.Compound):
            adding = State(initial=True)
            add_done = State(final=True)
            got_sum = adding.to(add_done, event="evt.number.increment.success", on="keep_result")

    done = State(final=True)
    done_state_working = working.to(done)

    def on_enter_working(self) -> None:
        self.emit("com.value.read", {"key": self.context["key"]})
        self.emit("com.number.increment", {"init": 1, "increment": 2})

    def keep_value(self, data: dict[str, Any]) -> None:
        self.context["value"] = data["value"]

    def keep_result(self, data: dict[str, Any]) -> None:
        self.context["result"] = data["result"]

    def output(self) -> dict[str, Any]:
        return {"value": self.context.get("value"), "result": self.context.get("result")}


class CounterInit(BaseModel):
    start: int = 0
    limit: int = 3


class CounterDone(BaseModel):
    count: int
    path: list[str]


counter_contract = create_orchestrator_contract(
    uri="#/test/orchestrator/counter",
    name="counter",
    versions={"1.0.0": {"init": CounterInit, "complete": CounterDone}},
)


class CounterMachine(ArvoMachine):
    """Compound state with a history state, guards and an eventless guarded transition.

    ``counting`` (compound: ``low`` → ``high`` once count ≥ 2, eventless) self-loops on each
    increment reply; a value-read reply pauses into ``paused`` and a second one resumes into
    ``counting``'s history. When ``count`` reaches ``limit`` the eventless guarded transition
    leaves for the final state.
    """

    contract = counter_contract.version("1.0.0")
    services = (READ, INCREMENT)

    class counting(State.Compound):
        low = State(initial=True)
        high = State()
        h = HistoryState()
        low.to(high, cond="is_high")  # eventless
        step_low = low.to.itself(event="evt.number.increment.success", on="add")
        step_high = high.to.itself(event="evt.number.increment.success", on="add")

    paused = State()
    done = State(final=True)

    pause = counting.to(paused, event="evt.value.read.success", on="trace_pause")
    # No ``on`` action here: python-statemachine 3.2.2 runs the action of a transition that
    # targets a history state twice; ``on_exit_paused`` traces the resume instead.
    resume = paused.to(counting.h, event="evt.value.read.success")
    counting.to(done, cond="at_limit")  # eventless, guarded

    def init_context(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"count": data["start"], "limit": data["limit"], "path": []}

    def on_enter_counting(self) -> None:
        self.context["path"].append("counting")

    def on_enter_high(self) -> None:
        if self.context["path"][-1] != "high":  # self-transitions re-enter the atomic state
            self.context["path"].append("high")

    def add(self, data: dict[str, Any]) -> None:
        self.context["count"] += data["result"]

    def trace_pause(self) -> None:
        self.context["path"].append("pause")

    def on_exit_paused(self) -> None:
        self.context["path"].append("resume")

    def is_high(self) -> bool:
        return bool(self.context["count"] >= 2)

    def at_limit(self) -> bool:
        return bool(self.context["count"] >= self.context["limit"])

    def output(self) -> dict[str, Any]:
        return {"count": self.context["count"], "path": self.context["path"]}


class Mode(BaseModel):
    mode: str = "ok"


dumb_contract = create_orchestrator_contract(
    uri="#/test/orchestrator/dumb", name="dumb", versions={"1.0.0": {"init": Mode, "complete": Empty}}
)


class DumbMachine(ArvoMachine):
    """Reads a value, then fails in an action according to the init ``mode``.

    ``mode``: ``ok`` completes with ``{}``; ``error`` raises ``RuntimeError('Normal error')``;
    ``violation`` raises an ExecutionViolation; ``init-error`` raises on entering the first state.
    """

    contract = dumb_contract.version("1.0.0")
    services = (READ,)

    waiting = State(initial=True)
    done = State(final=True)
    got = waiting.to(done, event="evt.value.read.success", on="maybe_fail")

    def on_enter_waiting(self) -> None:
        if self.context["mode"] == "init-error":
            raise RuntimeError("Init error")
        self.emit("com.value.read", {"key": "k"})

    def maybe_fail(self) -> None:
        mode = self.context["mode"]
        if mode == "error":
            raise RuntimeError("Normal error")
        if mode == "violation":
            raise ExecutionViolation("Deliberate violation")

    def output(self) -> dict[str, Any]:
        return {}


# --------------------------------------------------------------------------- nested orchestration


class ChildInit(BaseModel):
    value: int


class ChildDone(BaseModel):
    result: int


child_contract = create_orchestrator_contract(
    uri="#/test/orchestrator/child",
    name="child",
    versions={"1.0.0": {"init": ChildInit, "complete": ChildDone}},
)


class ChildMachine(ArvoMachine):
    """Adds one to its input through ``com.number.increment`` and completes with the result."""

    contract = child_contract.version("1.0.0")
    services = (INCREMENT,)

    adding = State(initial=True)
    done = State(final=True)
    added = adding.to(done, event="evt.number.increment.success", on="keep")

    def on_enter_adding(self) -> None:
        self.emit("com.number.increment", {"init": self.context["value"], "increment": 1})

    def keep(self, data: dict[str, Any]) -> None:
        self.context["result"] = data["result"]

    def output(self) -> dict[str, Any]:
        return {"result": self.context["result"]}


class ParentInit(BaseModel):
    value: int
    #: ``"self"`` passes the parent's subject as ``parentSubject$$``, ``"none"`` starts a root
    #: child, anything else is passed verbatim (to test invalid parent subjects).
    parent: str = "self"


class ParentDone(BaseModel):
    result: int | None
    error: str | None = None


parent_contract = create_orchestrator_contract(
    uri="#/test/orchestrator/parent",
    name="parent",
    versions={"1.0.0": {"init": ParentInit, "complete": ParentDone}},
)


class ParentMachine(ArvoMachine):
    """Starts ``arvo.orc.child`` and completes with the child's result (or its error)."""

    contract = parent_contract.version("1.0.0")
    services = (child_contract.version("1.0.0"),)

    waiting = State(initial=True)
    done = State(final=True)
    child_done = waiting.to(done, event="arvo.orc.child.done", on="keep")
    child_failed = waiting.to(done, event="sys.arvo.orc.child.error", on="keep_error")

    def init_context(self, data: dict[str, Any]) -> dict[str, Any]:
        # The subject is kept in the context, as Arvo machines do, to pass it to the child.
        return {"value": data["value"], "parent": data["parent"], "subject": self.arvo_event.subject}

    def on_enter_waiting(self) -> None:
        mode = self.context["parent"]
        parent = {"self": self.context["subject"], "none": None}.get(mode, mode)
        self.emit("arvo.orc.child", {"parentSubject$$": parent, "value": self.context["value"]})

    def keep(self, data: dict[str, Any]) -> None:
        self.context["result"] = data["result"]

    def keep_error(self, data: dict[str, Any]) -> None:
        self.context["error"] = data["errorMessage"]

    def output(self) -> dict[str, Any]:
        return {"result": self.context.get("result"), "error": self.context.get("error")}


# --------------------------------------------------------------------------- handler contracts


class HelloInput(BaseModel):
    name: str
    age: int = 0


class HelloOutput(BaseModel):
    greeting: str


hello_contract = create_simple_arvo_contract(
    uri="#/test/ArvoEventHandler",
    type="hello.world",
    versions={
        "0.0.1": {"accepts": HelloInput, "emits": HelloOutput},
        "0.0.2": {"accepts": HelloInput, "emits": HelloOutput},
    },
)
hello_domain_contract = create_simple_arvo_contract(
    uri="#/test/ArvoEventHandler/domained",
    type="hello.domained",
    domain="test.3333",
    versions={"0.0.1": {"accepts": HelloInput, "emits": HelloOutput}},
)


def hello_event(
    data: Mapping[str, Any] | None = None,
    *,
    contract: VersionedArvoContract | None = None,
    subject: str = "test",
    source: str = CLIENT,
    **options: Any,
) -> ArvoEvent:
    """A valid request to the hello handler (a plain, non-orchestration subject by default)."""
    version = contract or hello_contract.version("0.0.1")
    return EventFactory(version).accepts(
        source=source, subject=subject, data=dict(data) if data is not None else {"name": "Ada"}, **options
    )


def hello_handler(function: Any, *, contract: Any = hello_contract, **kwargs: Any) -> ArvoEventHandler:
    """A handler of every version of ``contract`` with the same function."""
    return ArvoEventHandler(contract, dict.fromkeys(contract.versions, function), **kwargs)


# --------------------------------------------------------------------------- trap contracts


class Payload(BaseModel):
    value: int = 0


value_fetch = create_arvo_contract(
    uri="#/test/value/fetch",
    type="com.value.fetch",
    versions={"1.0.0": {"accepts": KeyInit, "emits": {"evt.value.read": Payload}}},
)
"""A service whose reply type, ``evt.value.read``, is a token prefix of ``evt.value.read.success``."""

trap_contract = create_orchestrator_contract(
    uri="#/test/orchestrator/trap", name="trap", versions={"1.0.0": {"init": KeyInit, "complete": Payload}}
)


def root_subject(orchestrator: str, version: str = "1.0.0", **kwargs: Any) -> str:
    """A fresh root subject for ``orchestrator`` initiated by :data:`CLIENT`."""
    return OrchestrationSubject.new(orchestrator=orchestrator, version=version, initiator=CLIENT, **kwargs)


# --------------------------------------------------------------------------- transient failures


class FlakyInit(BaseModel):
    #: How many times the ``nudge`` timer's action fails before it succeeds.
    failures: int = 0
    #: Fail on entering the first state (at the init) this many times.
    init_failures: int = 0


flaky_contract = create_orchestrator_contract(
    uri="#/test/orchestrator/flaky", name="flaky", versions={"1.0.0": {"init": FlakyInit, "complete": Empty}}
)

#: Failures still to raise, by workflow subject: the machine's own state cannot count them (a
#: failed step keeps the last good state), so the test keeps them, as a flaky service would.
FLAKY_FAILURES: dict[str, list[int]] = {}


class FlakyMachine(ArvoMachine):
    """Waits: a ``nudge`` every hour (an internal transition) whose action fails while failures
    remain, and an ``expire`` scheduled at the start for 3 h later, which ends it. A retried
    nudge leaves the expire timer pending: only the re-indexing of a retry makes it fire."""

    contract = flaky_contract.version("1.0.0")
    after = {"waiting": {"nudge": "1h"}}

    waiting = State(initial=True)
    done = State(final=True)
    nudged = waiting.to.itself(event="nudge", internal=True, on="maybe_fail")
    expired = waiting.to(done, event="expire")

    def on_enter_waiting(self) -> None:
        left = FLAKY_FAILURES.setdefault(
            self.arvo_event.subject, [self.context["failures"], self.context["init_failures"]]
        )
        if left[1] > 0:
            left[1] -= 1
            raise RuntimeError("init is flaky")
        if "expire" not in self.context:
            self.context["expire"] = self.schedule("expire", after="3h")

    def maybe_fail(self) -> None:
        left = FLAKY_FAILURES[self.arvo_event.subject]
        if left[0] > 0:
            left[0] -= 1
            raise RuntimeError("nudge is flaky")

    def output(self) -> dict[str, Any]:
        return {}
