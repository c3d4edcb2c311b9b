"""``celery -A bench.worker_app worker``: the production app with the benchmark probe attached.

The app is exactly ``tasks.app`` (built by :func:`tasks.app.create_app` from the ``ORCH_*``
environment, same tasks, same Celery config); importing this module only connects the
:mod:`bench.probe` signal handlers in the worker process, which is how the benchmark sees when
each hop was published and started without changing the runtime.
"""

from __future__ import annotations

import tasks
from bench import probe

probe.install()

#: What ``celery -A bench.worker_app`` loads.
app = tasks.app
