"""Every worker fires due timers: a Celery worker bootstep running one poller thread.

Timers live in Redis (:mod:`tasks.store.keys`: each shard's ``orch:{<t>}:timers``), written by
the step that set them. Each worker's main process runs one thread that, every ``timer_resolution_s``, claims the
due timers of any workflow (one atomic script per shard: each timer is handed to one worker), publishes
their events like any other event, and releases the claims. No worker is special and a
deployment runs no extra process; with several workers, each timer still fires once (and a
second firing would be a no-op: the event id is fixed).

The same thread sweeps the search index of expired workflows every :data:`SWEEP_INTERVAL_S`
(:meth:`tasks.store.index.RedisIndex.sweep`: capped, and a no-op when nothing expired).

Every error is caught and retried at the next tick: a Redis outage, and on a Redis Cluster a
failover's errors too (``CLUSTERDOWN``, ``MOVED``, a node refusing connections): the poll reads
every shard in one pipeline, so while a failed primary's slots are not yet re-routed (a few
seconds) every shard's timers wait, and fire late rather than never.

Not Celery's ``countdown``/``eta``: with a Redis broker those wait in the worker's memory and
are redelivered after the visibility timeout, so a timer due in three days would come back
every ``visibility_timeout_s`` and could not be cancelled.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import bootsteps

from tasks.worker.task import EXECUTE_TASK

logger = logging.getLogger(__name__)

#: Seconds between two sweeps of the search index by one worker.
SWEEP_INTERVAL_S = 60.0


class TimerPoller(bootsteps.StartStopStep):  # type: ignore[misc]
    """The worker bootstep that fires due timers from a thread of the worker's main process."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, worker: Any) -> None:
        """Start polling, unless ``timer_poller`` is off for this worker."""
        task = worker.app.tasks[EXECUTE_TASK]
        settings = task.settings()
        if not settings.timer_poller:
            return
        # Built here, in the main thread, not first in the poller thread: the pool forks its
        # children around now, and a fork while the thread held an import lock (loading the
        # handlers module) or the runtime's lock left the child's first task waiting forever.
        task.runtime  # noqa: B018
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._poll, args=(task, settings.timer_resolution_s), name="orch-timers", daemon=True
        )
        self._thread.start()

    def stop(self, worker: Any) -> None:
        """Stop polling (at worker shutdown)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _poll(self, task: Any, resolution_s: float) -> None:
        next_sweep = time.monotonic()
        while not self._stop.wait(resolution_s):
            try:
                while task.runtime.fire_due_timers() and not self._stop.is_set():
                    pass  # a full batch may mean more are due: look again at once
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + SWEEP_INTERVAL_S
                    task.runtime.index.sweep()
            except Exception:  # Redis or the broker down: the timers wait, and fire on recovery
                logger.warning("could not fire due timers; retrying", exc_info=True)
