"""``celery -A bench.worker_app worker``: the production app with the benchmark probe attached.

The app is exactly ``tasks.app`` (built by :func:`tasks.app.create_app` from the ``ORCH_*``
environment, same tasks, same Celery config); importing this module only connects the
:mod:`bench.probe` signal handlers in the worker process, which is how the benchmark sees when
each hop was published and started without changing the runtime.

With ``BENCH_OURS_WITHOUT_HISTORY=1`` in its environment (``python -m bench distributed
--without-history``) the worker's memory drops every history entry and index row it is given
(:class:`bench.inspect_cost.NoHistory`): the same runtime with neither, the baseline of what they
cost a distributed step.
"""

from __future__ import annotations

import os
from typing import Any

import tasks
from bench import probe

#: Environment variable that makes the workers store no history entry or index row.
WITHOUT_HISTORY_ENV = "BENCH_OURS_WITHOUT_HISTORY"


def _drop_history() -> None:
    """Make every runtime of this process build its memory wrapped in :class:`NoHistory`."""
    from bench.inspect_cost import NoHistory
    from tasks import runtime
    from tasks.store.memory import RedisMachineMemory

    class _Factory:
        @staticmethod
        def from_settings(*args: Any, **kwargs: Any) -> Any:
            return NoHistory(RedisMachineMemory.from_settings(*args, **kwargs))

    setattr(runtime, "RedisMachineMemory", _Factory)  # noqa: B010 (the name the runtime looks up)


probe.install()
if os.environ.get(WITHOUT_HISTORY_ENV) == "1":
    _drop_history()

#: What ``celery -A bench.worker_app`` loads.
app = tasks.app
