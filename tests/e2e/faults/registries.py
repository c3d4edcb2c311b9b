"""Test-only handler registries for the fault suite (``ORCH_HANDLERS=tests.e2e.faults.registries:<name>``).

Each is the example deployment (:func:`examples.registry.build`) with one thing changed, so a
fault can be injected at a precise point inside a real worker:

* :func:`slow`: the orchestrators' memory sleeps :data:`SLOW_S` just before the compare-and-set
  write of a *marked* event, the first time that event is written (so a step outlives its
  lock), and records what became of the write and of the retry (marker files).
* :func:`intercepted`: only the orchestrators; service calls have no handler in the deployment,
  so the runtime appends them to the external outbox streams, where the test plays the services.
* :func:`tapped`: the orchestrators' memory copies every consumed and produced event of every
  step into a Redis list (:data:`TAP_KEY`), so a test sees each event of a workflow.
* :func:`poisoned`: ``com.number.double`` SIGKILLs the process running it when asked to double
  :data:`POISON_VALUE`: a poison message, fatal to every process that runs it.

Marker files go to the directory named by the ``FAULTS_MARKER_DIR`` environment variable.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from examples.registry import build as build_examples
from orchestrator.errors import TransactionViolation
from orchestrator.handler import ArvoEventHandler, HandlerInput, create_event_handler
from orchestrator.inspection import HistoryEntry
from orchestrator.memory.base import Lease, MachineMemory, ReadResult
from orchestrator.orchestrator import ArvoOrchestrator, create_orchestrator

#: Seconds a marked step sleeps before its write (the tests run with a 1 s lock and no renewal).
SLOW_S = 2.0

#: A fan-out value that marks its workflow's init event and its reply as slow.
SLOW_VALUE = 5000

#: Redis list receiving the events seen by :func:`tapped` (JSON, one entry per event per step).
TAP_KEY = "faults:tap"

#: The value whose ``com.number.double`` call kills the process running it (:func:`poisoned`).
POISON_VALUE = 666


def _marker_dir() -> Path | None:
    directory = os.environ.get("FAULTS_MARKER_DIR")
    return Path(directory) if directory else None


def _mark(name: str, text: str = "") -> bool:
    """Create marker ``name`` once; True if this call created it."""
    directory = _marker_dir()
    if directory is None:
        return False
    try:
        fd = os.open(directory / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as out:
        out.write(text)
    return True


def _is_marked(event: dict[str, Any]) -> bool:
    data = event.get("data") or {}
    if event.get("type") == "arvo.orc.fanout":
        return SLOW_VALUE in (data.get("values") or [])
    return event.get("type") == "evt.number.double.success" and data.get("result") == 2 * SLOW_VALUE


class _Delegating:
    """A MachineMemory that forwards everything to ``inner``."""

    def __init__(self, inner: MachineMemory) -> None:
        self.inner = inner

    def lock(self, subject: str) -> Lease | None:
        return self.inner.lock(subject)

    def unlock(self, lease: Lease, settle: str | None = None, history: HistoryEntry | None = None) -> bool:
        return self.inner.unlock(lease, settle, history)

    def read(self, subject: str, event_id: str | None = None) -> ReadResult:
        return self.inner.read(subject, event_id)

    def write(self, subject: str, record: dict[str, Any], **kwargs: Any) -> int:
        return self.inner.write(subject, record, **kwargs)

    def settle(self, subject: str, event_id: str) -> None:
        self.inner.settle(subject, event_id)


class SlowWriteMemory(_Delegating):
    """Sleeps before the first write of a marked event; records refusals and what retries did.

    Markers (one file each, in ``FAULTS_MARKER_DIR``):
    ``slow-<id>`` the step slept (text: event type, version it read); ``refused-<id>`` its write was refused (the text says why);
    ``noop-<id>`` a later attempt found the event consumed (it changed nothing);
    ``retried-<id>`` a later attempt found it not consumed (text: the version it read);
    ``reapplied-<id>`` that attempt's write succeeded (text: version read and version written).
    """

    def read(self, subject: str, event_id: str | None = None) -> ReadResult:
        result = self.inner.read(subject, event_id)
        directory = _marker_dir()
        if event_id is not None and directory is not None and (directory / f"refused-{event_id}").exists():
            if result.consumed:
                _mark(f"noop-{event_id}")
            else:
                _mark(f"retried-{event_id}", str(result.version))
        return result

    def write(self, subject: str, record: dict[str, Any], **kwargs: Any) -> int:
        event = record.get("events", {}).get("consumed", {})
        event_id = str(event.get("id"))
        if _is_marked(event) and _mark(f"slow-{event_id}", json.dumps({"type": event.get("type"), "prev": kwargs.get("prev_version")})):
            time.sleep(SLOW_S)
            try:
                return self.inner.write(subject, record, **kwargs)
            except TransactionViolation as error:
                _mark(f"refused-{event_id}", str(error))
                raise
        version = self.inner.write(subject, record, **kwargs)
        directory = _marker_dir()
        if directory is not None and (directory / f"retried-{event_id}").exists():
            read = (directory / f"retried-{event_id}").read_text()
            _mark(f"reapplied-{event_id}", json.dumps({"read": int(read), "wrote": version}))
        return version


class TapMemory(_Delegating):
    """Copies the consumed and produced events of every written step into :data:`TAP_KEY`."""

    def write(self, subject: str, record: dict[str, Any], **kwargs: Any) -> int:
        version = self.inner.write(subject, record, **kwargs)
        client = getattr(self.inner, "_client", None)
        if client is not None:
            events = record.get("events", {})
            client.rpush(TAP_KEY, *[json.dumps(e) for e in [events.get("consumed"), *events.get("produced", [])]])
        return version


def _with_memory(memory: MachineMemory) -> list[ArvoEventHandler | ArvoOrchestrator]:
    return build_examples(memory)


def slow(memory: MachineMemory) -> list[ArvoEventHandler | ArvoOrchestrator]:
    """The examples, with :class:`SlowWriteMemory` around the orchestrators' memory."""
    return _with_memory(SlowWriteMemory(memory))  # type: ignore[arg-type]


def tapped(memory: MachineMemory) -> list[ArvoEventHandler | ArvoOrchestrator]:
    """The examples, with :class:`TapMemory` around the orchestrators' memory."""
    return _with_memory(TapMemory(memory))  # type: ignore[arg-type]


def intercepted(memory: MachineMemory) -> list[ArvoEventHandler | ArvoOrchestrator]:
    """Only the example orchestrators: their service calls go to the external outbox streams."""
    from examples.fanout import FanoutMachine
    from examples.increment import IncrementMachine

    return [
        create_orchestrator(machines=[IncrementMachine], memory=memory, executionunits=0.1),
        create_orchestrator(machines=[FanoutMachine], memory=memory, executionunits=0.1),
    ]


def _double_or_die(request: HandlerInput) -> dict[str, Any]:
    if request.data["value"] == POISON_VALUE:
        os.kill(os.getpid(), signal.SIGKILL)
    return {"type": "evt.number.double.success", "data": {"result": 2 * request.data["value"]}}


def poisoned(memory: MachineMemory) -> list[ArvoEventHandler | ArvoOrchestrator]:
    """The examples, with a ``com.number.double`` that dies on :data:`POISON_VALUE`."""
    from examples.fanout import number_double

    handlers = [h for h in build_examples(memory) if h.source != "com.number.double"]
    return [*handlers, create_event_handler(contract=number_double, handlers={"1.0.0": _double_or_die})]
