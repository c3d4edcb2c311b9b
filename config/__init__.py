"""Deployment configuration: settings from the environment, the Celery config, logging.

Nothing here reads the environment or touches logging at import time; entry points build one
:class:`~config.settings.Settings` and pass it down.
"""

from __future__ import annotations

from config.celery_config import celery_config
from config.settings import RedisEndpoint, Settings, parse_redis_url

__all__ = ["RedisEndpoint", "Settings", "celery_config", "parse_redis_url"]
