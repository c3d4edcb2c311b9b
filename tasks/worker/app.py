"""Building a Celery app of the deployment: :func:`create_app` and :func:`build_app`.

An app is ``Celery(...)`` configured with ``config_from_object`` from a
:class:`~tasks.worker.celery_config.LazyCeleryConfig`, the ``tasks.execute`` and ``tasks.ping``
tasks, and the worker signal hooks (start-up check, tracing, dead letters for refused
messages). Building one reads no environment and opens no connection: the settings are read
(or taken as given) the first time the app or its task needs them.

``tasks.app`` (:mod:`tasks.celery`) is built by :func:`build_app` with the settings of the
``ORCH_*`` environment; tests and the demo build their own with explicit settings.
"""

from __future__ import annotations

import threading
from typing import Any

from celery import Celery, Task, current_app, signals

from config.logging import quiet_noisy_loggers
from config.settings import Settings
from tasks.tracing import configure_tracing, flush_tracing
from tasks.worker.celery_config import LazyCeleryConfig
from tasks.worker.consumer import connect_refusal_signals
from tasks.worker.startup import connect_startup_check
from tasks.worker.task import EXECUTE_TASK, PING_TASK, EventTask, execute_event
from tasks.worker.task_messages import TaskMessages
from tasks.worker.timer_poller import TimerPoller

#: Name of the Celery app (shown in worker banners and Flower).
APP_NAME = "arvo-orchestrator"


class SettingsSource:
    """The settings of one app: the ones given, or ``Settings()`` read once, on first use.

    Args:
        settings: explicit settings; None reads the ``ORCH_*`` environment when first needed.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings
        self._mutex = threading.Lock()

    def __call__(self) -> Settings:
        """The settings (read from the environment the first time, if none were given)."""
        if self._settings is None:
            with self._mutex:
                if self._settings is None:
                    self._settings = Settings()
        return self._settings


def build_app(settings: Settings | None = None) -> tuple[Celery, Task]:
    """Build an app and return it with its ``tasks.execute`` task.

    Args:
        settings: the deployment settings; None reads ``ORCH_*`` when first needed.

    Returns:
        The app and its execute task (Celery's lazy task proxy until the app is finalized).
    """
    source = SettingsSource(settings)
    # TaskMessages: Flower's task-sent events carry the display name too (see its module).
    app = Celery(APP_NAME, set_as_current=False, amqp=TaskMessages)
    app.config_from_object(LazyCeleryConfig(source))
    execute = app.task(
        name=EXECUTE_TASK, shared=False, bind=True, base=EventTask, max_retries=None, settings=source
    )(execute_event)

    @app.task(name=PING_TASK, shared=False)
    def ping() -> str:
        """Answer ``"pong"``: proves a worker consumes, decodes and runs tasks."""
        return "pong"

    _connect_signals(app, source)
    app.steps["worker"].add(TimerPoller)
    return app, execute


def create_app(settings: Settings | None = None) -> Celery:
    """Build an app of the deployment (see :func:`build_app`)."""
    return build_app(settings)[0]


def _connect_signals(app: Celery, settings: SettingsSource) -> None:
    """Hook the app's workers: start-up check, dead letters for refusals, tracing, logging.

    Celery's signals are process-wide; every handler here acts only for a sender of ``app``.
    """
    connect_startup_check(app, settings)
    connect_refusal_signals(app)

    def in_child(**_: Any) -> None:
        # The signal names no app; a worker process's current app is the one it runs.
        if current_app == app:
            configure_tracing(settings())

    def in_worker(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is not app:
            return
        pool = getattr(getattr(sender, "pool_cls", None), "__module__", "") or ""
        if "prefork" not in pool:  # solo / threads: tasks run in this very process
            configure_tracing(settings())

    def on_exit(**_: Any) -> None:
        flush_tracing()

    def quiet_logs(**_: Any) -> None:
        # Celery's worker installs its own log handlers; quiet the lock library's
        # per-contention warnings there too.
        quiet_noisy_loggers()

    uid = f"orch.{id(app)}"
    signals.worker_process_init.connect(in_child, weak=False, dispatch_uid=uid + ".tracing.child")
    signals.worker_init.connect(in_worker, weak=False, dispatch_uid=uid + ".tracing.worker")
    signals.worker_process_shutdown.connect(on_exit, weak=False, dispatch_uid=uid + ".tracing.exit")
    signals.worker_shutdown.connect(on_exit, weak=False, dispatch_uid=uid + ".tracing.shutdown")
    signals.after_setup_logger.connect(quiet_logs, weak=False, dispatch_uid="orch.quiet_logs")


def settings_of(app: Celery) -> Settings:
    """The settings an app built by :func:`build_app` runs with (read now if not yet)."""
    settings: Settings = app.tasks[EXECUTE_TASK].settings()
    return settings
