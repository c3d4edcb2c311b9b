"""The Celery application factory, :func:`create_app`.

Every app is built explicitly from a :class:`~config.settings.Settings`; nothing relies on
Celery's ``current_app`` and building an app opens no connection (Celery connects lazily).
``celery -A tasks worker`` gets its app from the lazy ``tasks.app`` attribute, which calls
this factory with ``Settings()`` read from the environment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery import Celery, signals

from config.celery_config import celery_config
from config.logging import quiet_noisy_loggers

if TYPE_CHECKING:
    from config.settings import Settings

#: Name of the Celery app (shown in worker banners and Flower).
APP_NAME = "arvo-orchestrator"


def _quiet_worker_logs(**_: Any) -> None:
    quiet_noisy_loggers()


def create_app(settings: Settings) -> Celery:
    """Build the Celery app of a deployment and register its tasks on it.

    Args:
        settings: the deployment settings; the Celery config is derived from them by
            :func:`config.celery_config.celery_config` only.

    Returns:
        A configured app with the runtime tasks registered (``tasks.ping`` for now).
    """
    from tasks.execute import register

    app = Celery(APP_NAME, set_as_current=False)
    app.conf.update(celery_config(settings))
    # The settings travel with the app (not in app.conf, which `inspect conf` and Flower
    # serialize), so tasks and signal handlers need no global lookup.
    app.orch_settings = settings
    register(app, settings)
    # Celery's worker installs its own log handlers; quiet the lock library's per-contention
    # warnings there too. dispatch_uid makes repeated create_app calls connect it once.
    signals.after_setup_logger.connect(_quiet_worker_logs, weak=False, dispatch_uid="orch.quiet_logs")
    return app


def settings_of(app: Celery) -> Settings:
    """The settings an app was built with by :func:`create_app`.

    Raises:
        LookupError: ``app`` was not built by :func:`create_app`.
    """
    settings: Settings | None = getattr(app, "orch_settings", None)
    if settings is None:
        raise LookupError(f"Celery app {app.main!r} was not built by tasks.app.create_app")
    return settings
