"""LocalBroker: in-process event routing by ``to`` for the embedded mode and for tests.

Arvo's SimpleEventBroker pops its queue (LIFO), sleeps 1 ms per event, drops events nobody
subscribes to and leaks subscriptions in ``resolve`` (spec 7.4, 10.19). This broker is a FIFO,
never sleeps, and loses nothing: events with no subscriber are kept in :attr:`undelivered`,
events for another domain in :attr:`domained`, and violations raised by handlers in
:attr:`errors`.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from orchestrator.errors import DefinitionError, OrchestratorError
from orchestrator.event import ArvoEvent

logger = logging.getLogger(__name__)


class EventHandler(Protocol):
    """Anything the broker can route to: service handlers and orchestrators."""

    source: str

    def execute(self, event: ArvoEvent) -> list[ArvoEvent]:
        """Handle one event, returning the events it produces."""
        ...


@dataclass(frozen=True, slots=True)
class FailedDelivery:
    """A violation raised by a handler for an event (Arvo's ``onError``)."""

    event: ArvoEvent
    error: OrchestratorError


class LocalBroker:
    """A FIFO in-process bus; one handler per ``to`` destination.

    Args:
        handlers: service handlers and orchestrators, subscribed at their ``source``.
        on_event: called with every event as it is delivered (or parked), e.g. to print a trace.
        keep_history: keep every event in :attr:`history` (turn off for long runs).
    """

    def __init__(
        self,
        handlers: Iterable[EventHandler] = (),
        *,
        on_event: Callable[[ArvoEvent], None] | None = None,
        keep_history: bool = True,
    ) -> None:
        self._handlers: dict[str, EventHandler] = {}
        self._queue: deque[ArvoEvent] = deque()
        self._draining = False
        self._on_event = on_event
        self._keep_history = keep_history
        self.history: list[ArvoEvent] = []
        self.undelivered: list[ArvoEvent] = []
        self.domained: dict[str, list[ArvoEvent]] = {}
        self.errors: list[FailedDelivery] = []
        for handler in handlers:
            self.subscribe(handler)

    def subscribe(self, handler: EventHandler) -> None:
        """Route events whose ``to`` is ``handler.source`` to ``handler``."""
        if handler.source in self._handlers:
            raise DefinitionError(f"A handler is already subscribed at '{handler.source}'")
        self._handlers[handler.source] = handler

    @property
    def topics(self) -> list[str]:
        """The destinations with a subscriber."""
        return list(self._handlers)

    def publish(self, event: ArvoEvent) -> None:
        """Queue ``event``; drain the queue unless a drain is already running."""
        if not event.to:
            raise ValueError('Event must have a "to" property')
        self._queue.append(event)
        if not self._draining:
            self._drain()

    def _drain(self) -> None:
        self._draining = True
        try:
            while self._queue:
                self._deliver(self._queue.popleft())
        finally:
            self._draining = False

    def _deliver(self, event: ArvoEvent) -> None:
        if self._keep_history:
            self.history.append(event)
        if self._on_event is not None:
            self._on_event(event)
        if event.domain is not None:
            self.domained.setdefault(event.domain, []).append(event)
            return
        handler = self._handlers.get(event.to or "")
        if handler is None:
            self.undelivered.append(event)
            return
        try:
            produced = handler.execute(event)
        except OrchestratorError as error:
            logger.warning("handler %s refused event %s: %s", handler.source, event.id, error)
            self.errors.append(FailedDelivery(event, error))
            return
        self._queue.extend(produced)

    def run(self, init_event: ArvoEvent) -> ArvoEvent | None:
        """Publish an orchestrator init event and return what reaches its initiator.

        Returns the completion (``<type>.done``) or system error (``sys.<type>.error``) event of
        the workflow started by ``init_event`` (taken out of :attr:`undelivered`), or None when
        the workflow did not finish (it waits on another domain, or a handler raised a
        violation: see :attr:`errors`).
        """
        terminal = {f"{init_event.type}.done", f"sys.{init_event.type}.error"}
        start = len(self.undelivered)
        self.publish(init_event)
        for index in range(start, len(self.undelivered)):
            event = self.undelivered[index]
            if event.type in terminal and event.subject == init_event.subject:
                # Returned to the caller is delivered: a long embedded run must not keep it.
                del self.undelivered[index]
                return event
        return None
