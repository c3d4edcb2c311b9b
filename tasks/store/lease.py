"""Subject locks on python-redis-lock: the one module that relies on that library's internals.

A lease is python-redis-lock's ``Lock``, acquired once and released by token. Two things the
library does not offer publicly are needed for a step to cost 3 Redis round trips:

* **acquire inside a pipeline** (:meth:`LeaseLock.queue_acquire`): the lock's own ``SET name id
  NX EX expire`` is queued ahead of the step's read, so lock and read are one round trip. It
  needs the lock's key, token and expiry (``_name``, ``id``, ``_expire``).
* **no ownership GET per acquisition** (:attr:`LeaseLock._held`): the library asks Redis whether
  *this instance* already holds the lock before acquiring; a lease is a fresh instance used
  once, so the answer is known.

The release (``scripts/release_lock.lua``) and the fenced write (``scripts/write_record.lua``)
also rely on the library's key layout (``lock:<name>``, ``lock-signal:<name>``, value = token)
and on its release protocol (delete, then push the signal with an expiry). Every one of these
assumptions is pinned by ``tests/integration/test_third_party_contracts.py``, which names the
installed python-redis-lock version when one breaks; pyproject.toml bounds the version.

Checked on python-redis-lock 4.0.0.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import redis
import redis_lock

from tasks.store.connections import STATE_ERRORS

logger = logging.getLogger(__name__)

#: How long python-redis-lock's wake-up signal list lives after a release (its default).
SIGNAL_EXPIRE_MS = 1000


class LeaseLock(redis_lock.Lock):  # type: ignore[misc]
    """python-redis-lock's Lock, acquired once per lease, renewed by a :class:`LeaseKeeper`."""

    @property
    def key(self) -> str:
        """The Redis key holding the owner's token (``lock:<name>``)."""
        name: str = self._name
        return name

    def queue_acquire(self, pipe: redis.client.Pipeline) -> None:
        """Queue on ``pipe`` the command of ``acquire(blocking=False)``: ``SET key id NX EX``.

        Same key, token and expiry as python-redis-lock's own acquisition, so its extend and
        release work on the result; the reply (truthy when taken) tells if it was.
        """
        pipe.set(self._name, self.id, nx=True, ex=self._expire)

    @property
    def _held(self) -> bool:
        # python-redis-lock asks Redis (a GET) whether this *instance* already holds the lock,
        # to refuse a second acquire on it. Every lease here is a fresh instance acquired once,
        # so the answer is known without the round trip.
        return False


def register_lock_scripts(client: redis.Redis | redis.RedisCluster) -> None:
    """Register python-redis-lock's scripts for ``client``'s process.

    The library registers them once per process, on whichever class asks first; registering
    on the base class first keeps ``Lock`` itself usable after a :class:`LeaseLock` exists.
    """
    redis_lock.Lock.register_scripts(client)


class LeaseKeeper:
    """One daemon thread per process that extends every held lease of a memory.

    python-redis-lock's own ``auto_renewal`` starts and joins a thread per acquisition: measured
    at 0.3-0.8 ms per orchestrator step, more than all its Redis round trips, and a source of
    native memory growth (each new thread may get its own malloc arena). A step lasts
    milliseconds, so one thread waking every third of the lease and extending the leases older
    than that does the same job for free. A lost lease stops being renewed with a warning (the
    fenced write refuses the step anyway); a Redis error is retried at the next wake-up.
    """

    def __init__(self, expire_s: int) -> None:
        self._expire_s = expire_s
        self._interval = max(expire_s / 3.0, 0.05)
        self._leases: dict[str, tuple[LeaseLock, float]] = {}
        self._mutex = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(self, lock: LeaseLock) -> None:
        """Keep ``lock`` extended until :meth:`discard`."""
        with self._mutex:
            self._leases[lock.id] = (lock, time.monotonic())
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="orch-lease-keeper", daemon=True)
                self._thread.start()

    def discard(self, token: str) -> None:
        """Stop renewing the lease with ``token`` (idempotent)."""
        with self._mutex:
            self._leases.pop(token, None)

    def _run(self) -> None:
        while True:
            time.sleep(self._interval)
            now = time.monotonic()
            with self._mutex:
                due = [(token, lock) for token, (lock, since) in self._leases.items() if now - since >= self._interval]
            for token, lock in due:
                self._extend(token, lock, now)

    def _extend(self, token: str, lock: LeaseLock, now: float) -> None:
        try:
            lock.extend(expire=self._expire_s)
        except (redis_lock.NotAcquired, redis_lock.NotExpirable):
            logger.warning("Lease on %s was lost; renewal stopped", lock.key)
            self.discard(token)
            return
        except STATE_ERRORS as exc:
            logger.warning("Could not renew %s (%s); retrying", lock.key, exc)
            return
        with self._mutex:
            if token in self._leases:
                self._leases[token] = (lock, now)
