"""Deployment configuration: settings from the environment, and logging.

A leaf package: it imports neither the core (``orchestrator``) nor the runtime (``tasks``), which
both read it. Nothing here reads the environment or touches logging at import time; entry
points build one :class:`~config.settings.Settings` and pass it down. The Celery configuration
derived from it is the runtime's (``tasks.worker.celery_config``).
"""

from __future__ import annotations

from config.settings import RedisEndpoint, Settings, parse_redis_url

__all__ = ["RedisEndpoint", "Settings", "parse_redis_url"]
