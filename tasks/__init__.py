"""The Celery runtime of the orchestrator: app factory, tasks, Redis memory and keys.

Importing ``tasks`` has no side effect: no settings are read and no app exists until the
attribute ``tasks.app`` is first used (``celery -A tasks worker`` does exactly that). Then the
app is built once per process from ``Settings()`` (the ``ORCH_*`` environment) and kept.
``tasks.execute`` is that app's ``tasks.execute`` task, for ``execute.delay(event)``.

Code that builds its own app (tests, embedded mode) calls :func:`tasks.app.create_app` and never
touches these attributes.

Why a module subclass: ``app`` and ``execute`` are also the names of the submodules
``tasks/app.py`` and ``tasks/execute.py``, and importing a submodule makes Python set it as an
attribute of the package, which would hide a lazily created value of the same name (and a
module ``__getattr__`` is only consulted for missing attributes). Properties on the module's
class win over such assignments, so ``tasks.app`` is always the Celery app, whatever was
imported before. Import the factory as ``from tasks.app import create_app``.
"""

from __future__ import annotations

import sys
import threading
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery
    from celery.app.task import Task

    app: Celery
    execute: Task

__all__ = ["app", "execute"]

_default_app: list[Any] = []
_default_app_mutex = threading.Lock()


def _get_default_app() -> Celery:
    with _default_app_mutex:
        if not _default_app:
            from config.settings import Settings
            from tasks.app import create_app

            _default_app.append(create_app(Settings()))
        return _default_app[0]  # type: ignore[no-any-return]


class _TasksPackage(types.ModuleType):
    """The ``tasks`` package, with ``app`` and ``execute`` computed on first use."""

    @property
    def app(self) -> Celery:
        """The process-wide app built from ``Settings()`` on first access."""
        return _get_default_app()

    @app.setter
    def app(self, value: Any) -> None:
        # The import system assigns the submodule ``tasks.app`` here: keep it reachable through
        # sys.modules only. Anything else (a test patching the app) replaces the default app.
        if isinstance(value, types.ModuleType):
            return
        with _default_app_mutex:
            _default_app[:] = [value]

    @property
    def execute(self) -> Task:
        """The ``tasks.execute`` task of :attr:`app`."""
        tasks = _get_default_app().tasks
        if "tasks.execute" not in tasks:
            raise AttributeError("The app has no 'tasks.execute' task registered")
        return tasks["tasks.execute"]

    @execute.setter
    def execute(self, value: Any) -> None:
        # Same reason as for ``app``: ignore the submodule ``tasks.execute`` being assigned.
        if not isinstance(value, types.ModuleType):
            raise AttributeError("tasks.execute is the app's task and cannot be replaced")


sys.modules[__name__].__class__ = _TasksPackage
