"""Benchmarks of the orchestrator, each side by side with its baseline measured in the same run.

``python -m bench`` runs every part (each in its own process) and writes ``bench/results/``:

* ``inprocess``: the example workflows on the LocalBroker, against the TypeScript original's figures;
* ``distributed``: the same workflows through Celery + Redis, against raw Celery chains of the
  same shape (:mod:`bench.raw_celery`) on the same workers;
* ``contention``: a fan-in of 50 parallel replies to one subject across two workers;
* ``redis-cost``: Redis round trips and bytes per orchestrator step, and the stored record size.

See ``python -m bench --help`` and the module docstrings for how each figure is measured.
"""
