"""``celery -A bench.worker_app worker``: the production app with the benchmark probe attached.

The app is exactly ``tasks.app`` (built by :func:`tasks.app.create_app` from the ``ORCH_*``
environment, same tasks, same Celery config); importing this module only connects the
:mod:`bench.probe` signal handlers in the worker process, which is how the benchmark sees when
each hop was published and started without changing the runtime.

With ``BENCH_OURS_WITHOUT_HISTORY=1`` in its environment (``python -m bench distributed
--without-history``) the worker's memory drops every history entry and index row it is given
(:func:`bench.inspect_cost.drop_history`): the same runtime with neither, the baseline of what they
cost a distributed step.
"""

from __future__ import annotations

import os

import tasks
from bench import probe
from bench.inspect_cost import WITHOUT_HISTORY_ENV, drop_history

probe.install()
if os.environ.get(WITHOUT_HISTORY_ENV) == "1":
    drop_history()

#: What ``celery -A bench.worker_app`` loads.
app = tasks.app
