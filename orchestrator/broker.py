"""LocalBroker: in-process event routing by ``to`` for the embedded mode and for tests.

Arvo's SimpleEventBroker pops its queue (LIFO), sleeps 1 ms per event, drops events nobody
subscribes to and leaks subscriptions in ``resolve`` (spec 7.4, 10.19). This broker is a FIFO,
never sleeps, and loses nothing: events with no subscriber are kept in :attr:`undelivered`,
events for another domain in :attr:`domained`, and violations raised by handlers in
:attr:`errors`: the broker's dead letters, each with an id, which can be read, replayed (the
event is published again and its entry removed; a new failure is stored anew) or purged.

Time: the broker fires the durable timers of its orchestrators' memories when they come due.
Given a :class:`~orchestrator.timers.VirtualClock`, it skips waits: :meth:`LocalBroker.advance`
moves time forward firing what comes due on the way, :meth:`LocalBroker.run_until_idle` jumps
from one due timer to the next until nothing is pending, and :meth:`LocalBroker.run` does that
until the workflow it started ends, so a workflow that waits three days runs in milliseconds.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator.errors import DeadLetterNotFound, DefinitionError, OrchestratorError
from orchestrator.event import ArvoEvent
from orchestrator.memory.base import TimerIndex
from orchestrator.orchestrator import ArvoOrchestrator
from orchestrator.subject import OrchestrationSubject
from orchestrator.timers import Duration, VirtualClock, cancel_event, cancellable, parse_duration

#: Timers claimed per index and round when firing.
FIRE_BATCH = 1000

logger = logging.getLogger(__name__)


class EventHandler(Protocol):
    """Anything the broker can route to: service handlers and orchestrators."""

    source: str

    def execute(self, event: ArvoEvent) -> list[ArvoEvent]:
        """Handle one event, returning the events it produces."""
        ...


@dataclass(frozen=True, slots=True)
class FailedDelivery:
    """A violation raised by a handler for an event (Arvo's ``onError``): a dead letter.

    Attributes:
        event: the event the handler refused.
        error: what it raised.
        id: the dead letter's id (to show, replay or purge it).
        at_ms: when it failed, on the broker's clock (epoch ms).
        replays: how many replays of this event failed before this one.
    """

    event: ArvoEvent
    error: OrchestratorError
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    at_ms: int = 0
    replays: int = 0


class LocalBroker:
    """A FIFO in-process bus; one handler per ``to`` destination.

    Args:
        handlers: service handlers and orchestrators, subscribed at their ``source``.
        on_event: called with every event as it is delivered (or parked), e.g. to print a trace.
        keep_history: keep every event in :attr:`history` (turn off for long runs).
        clock: epoch seconds now; a :class:`~orchestrator.timers.VirtualClock` lets waits be
            skipped. Given, it becomes the clock of every orchestrator subscribed.
    """

    def __init__(
        self,
        handlers: Iterable[EventHandler] = (),
        *,
        on_event: Callable[[ArvoEvent], None] | None = None,
        keep_history: bool = True,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._clock = clock
        self._indexes: list[TimerIndex] = []
        self._handlers: dict[str, EventHandler] = {}
        self._queue: deque[ArvoEvent] = deque()
        self._draining = False
        self._on_event = on_event
        self._keep_history = keep_history
        self.history: list[ArvoEvent] = []
        self.undelivered: list[ArvoEvent] = []
        self.domained: dict[str, list[ArvoEvent]] = {}
        self.errors: list[FailedDelivery] = []
        #: Replays in flight: event id -> replays of it so far (stamped on a new failure).
        self._replaying: dict[str, int] = {}
        for handler in handlers:
            self.subscribe(handler)

    def subscribe(self, handler: EventHandler) -> None:
        """Route events whose ``to`` is ``handler.source`` to ``handler``."""
        if handler.source in self._handlers:
            raise DefinitionError(f"A handler is already subscribed at '{handler.source}'")
        self._handlers[handler.source] = handler
        if isinstance(handler, ArvoOrchestrator):
            if self._clock is not None:
                handler.clock = self._clock
            memory = handler.memory
            if isinstance(memory, TimerIndex) and all(index is not memory for index in self._indexes):
                self._indexes.append(memory)

    @property
    def clock(self) -> Callable[[], float]:
        """Epoch seconds now, as the broker's orchestrators see it."""
        return self._clock or time.time

    @property
    def orchestrators(self) -> list[ArvoOrchestrator]:
        """The orchestrators subscribed (whose memories hold the workflows)."""
        return [handler for handler in self._handlers.values() if isinstance(handler, ArvoOrchestrator)]

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
            at_ms = int(self.clock() * 1000)
            self.errors.append(FailedDelivery(event, error, at_ms=at_ms, replays=self._replaying.get(event.id, 0)))
            return
        self._queue.extend(produced)

    def run(self, init_event: ArvoEvent) -> ArvoEvent | None:
        """Publish an orchestrator init event and return what reaches its initiator.

        Returns the completion (``<type>.done``) or system error (``sys.<type>.error``) event of
        the workflow started by ``init_event`` (taken out of :attr:`undelivered`), or None when
        the workflow did not finish (it waits on another domain, or a handler raised a
        violation: see :attr:`errors`). With a virtual clock, timers are fired as time is
        skipped until the workflow ends or nothing is pending; with the real clock, only what
        happens without waiting is run.
        """
        start = len(self.undelivered)
        self.publish(init_event)
        found = self._take_terminal(init_event, start)
        if found is None and isinstance(self._clock, VirtualClock):
            while found is None and self._skip_to_next_timer():
                found = self._take_terminal(init_event, start)
        return found

    def run_terminal(self, init_event: ArvoEvent) -> ArvoEvent | None:
        """The completion or system error of a workflow already started, if it has arrived."""
        return self._take_terminal(init_event, 0)

    def _take_terminal(self, init_event: ArvoEvent, start: int) -> ArvoEvent | None:
        terminal = {f"{init_event.type}.done", f"sys.{init_event.type}.error"}
        for index in range(start, len(self.undelivered)):
            event = self.undelivered[index]
            if event.type in terminal and event.subject == init_event.subject:
                # Returned to the caller is delivered: a long embedded run must not keep it.
                del self.undelivered[index]
                return event
        return None

    # -- dead letters ------------------------------------------------------------------------------

    def dead_letter(self, entry_id: str) -> FailedDelivery:
        """The dead letter ``entry_id``. Raises ``DeadLetterNotFound``."""
        for failed in self.errors:
            if failed.id == entry_id:
                return failed
        raise DeadLetterNotFound(f"no dead letter with id '{entry_id}' (never stored, replayed or purged)")

    def replay_dead_letter(self, entry_id: str) -> FailedDelivery:
        """Publish the dead letter's event again, then remove its entry; the entry replayed.

        A replay that fails again is stored as a new entry (with its new error and one more
        replay counted) before the old one is removed. Raises ``DeadLetterNotFound``.
        """
        failed = self.dead_letter(entry_id)
        self._replaying[failed.event.id] = failed.replays + 1
        try:
            self.publish(failed.event)
        finally:
            del self._replaying[failed.event.id]
        self.errors[:] = [entry for entry in self.errors if entry.id != entry_id]
        return failed

    def purge_dead_letters(self, entry_ids: Iterable[str] | None = None) -> int:
        """Remove the given dead letters (all when None); how many were removed."""
        before = len(self.errors)
        if entry_ids is None:
            self.errors.clear()
        else:
            gone = set(entry_ids)
            self.errors[:] = [entry for entry in self.errors if entry.id not in gone]
        return before - len(self.errors)

    # -- time ------------------------------------------------------------------------------------

    def fire_due_timers(self) -> int:
        """Publish the event of every timer due now; return how many fired."""
        now_ms = int(self.clock() * 1000)
        fired = 0
        for index in list(self._indexes):
            while due := index.claim_due_timers(now_ms, FIRE_BATCH):
                for timer in due:
                    self.publish(ArvoEvent.model_validate(timer.event))
                fired += len(due)
        return fired

    def next_timer_due(self) -> float | None:
        """Epoch seconds of the earliest pending timer of any orchestrator, or None."""
        dues = [due for index in self._indexes if (due := index.next_timer_due_ms()) is not None]
        return min(dues) / 1000 if dues else None

    def advance(self, duration: Duration) -> int:
        """Move the virtual clock forward, firing every timer that comes due on the way.

        Returns:
            How many timers fired.

        Raises:
            DefinitionError: the broker has no virtual clock.
        """
        clock = self._virtual_clock("advance")
        target = clock() + parse_duration(duration)
        fired = self.fire_due_timers()
        while (due := self.next_timer_due()) is not None and due <= target:
            clock.move_to(due)
            fired += self.fire_due_timers()
        clock.move_to(target)
        return fired + self.fire_due_timers()

    def run_until_idle(self, limit: Duration | None = None) -> int:
        """Fire timers as they come due until none is pending (or ``limit`` has passed).

        With a virtual clock waits are skipped; with the real clock this sleeps until each
        timer is due. Returns how many timers fired.
        """
        end = None if limit is None else self.clock() + parse_duration(limit)
        fired = self.fire_due_timers()
        while (due := self.next_timer_due()) is not None and (end is None or due <= end):
            if isinstance(self._clock, VirtualClock):
                self._clock.move_to(due)
            else:
                time.sleep(max(0.0, due - self.clock()))
            fired += self.fire_due_timers()
        if end is not None and isinstance(self._clock, VirtualClock):
            self._clock.move_to(end)
        return fired

    def _skip_to_next_timer(self) -> bool:
        due = self.next_timer_due()
        if due is None:
            return False
        self._virtual_clock("skip").move_to(due)
        self.fire_due_timers()
        return True

    def _virtual_clock(self, doing: str) -> VirtualClock:
        if not isinstance(self._clock, VirtualClock):
            raise DefinitionError(f"LocalBroker.{doing} needs a VirtualClock: LocalBroker(..., clock=VirtualClock())")
        return self._clock

    # -- cancellation ----------------------------------------------------------------------------

    def cancel(self, subject: str, reason: str, *, source: str = "com.local.client") -> None:
        """Cancel the running workflow ``subject``, saying why.

        Raises:
            WorkflowNotFound: no orchestrator of this broker has a workflow with that subject.
            WorkflowFinished: the workflow already ended (done, failed or cancelled).
            ValueError: the reason is empty.
        """
        def read(target: str) -> dict[str, Any] | None:
            handler = self._handlers.get(OrchestrationSubject.parse(target).orchestrator.name)
            return handler.memory.read(target).record if isinstance(handler, ArvoOrchestrator) else None

        orchestrator = cancellable(subject, read)
        self.publish(cancel_event(subject=subject, orchestrator=orchestrator, reason=reason, source=source))
