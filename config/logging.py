"""Process logging setup, called only from entry points (CLI, demo, worker signal hooks).

Library modules only ever call ``logging.getLogger(__name__)``; deciding handlers and levels
belongs to whoever owns the process.
"""

from __future__ import annotations

import logging

#: Format of the root handler installed by :func:`configure_logging`.
LOG_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"

#: Third-party loggers that are too chatty at INFO/WARNING for this workload, and their level.
#: python-redis-lock warns "Failed to acquire Lock" on every busy non-blocking attempt, which
#: is the normal, retried, contention path here (a fan-in produces thousands of them).
NOISY_LOGGERS = {
    "redis_lock.acquire": logging.ERROR,
    "redis_lock.release": logging.WARNING,
    "redis_lock.refresh": logging.WARNING,
}


def quiet_noisy_loggers() -> None:
    """Lower the third-party loggers listed in :data:`NOISY_LOGGERS`."""
    for name, level in NOISY_LOGGERS.items():
        logging.getLogger(name).setLevel(level)


def configure_logging(level: int | str = logging.INFO) -> None:
    """Send log records to stderr at ``level`` and quiet the noisy libraries.

    Args:
        level: a :mod:`logging` level number or name (``"INFO"``).
    """
    logging.basicConfig(level=level, format=LOG_FORMAT, force=True)
    quiet_noisy_loggers()
