"""The raw-Celery baseline: no-op tasks chained in the shape of our workflows.

``celery -A bench.raw_celery worker`` runs this app. It is configured by the very function the
runtime uses, :func:`config.celery_config.celery_config` over ``Settings()`` (msgpack, acks_late,
reject on worker lost, prefetch 1, task events, same broker transport options), minus the
settings that plug the project's own classes into Celery (:func:`stock_config`: e.g. a custom
consumer or broker transport). Those are part of what is measured, so the baseline runs stock
Celery and kombu: the limit set by Celery and Redis themselves. Otherwise the only difference
from our workers is what a task does: here nothing but publishing the next hop.

A workflow is a list of stages ``(queue group, width)``, the same hops our system executes
(checked by the distributed part, which counts the executions per workflow of both):

* increment: orchestrator → service → orchestrator → service → orchestrator (5 executions:
  init, ``com.value.read``, its reply, ``com.number.increment``, its reply);
* fan-out: orchestrator → 10 × service → 10 × orchestrator (21 executions: init, 10
  ``com.number.double``, 10 replies).

Each task of stage *k* publishes ``width(k+1) / width(k)`` tasks of stage *k+1* through one
producer, as our runtime does. The last stage ends the workflow as ours does: an ``XADD`` to a
completion stream that the publisher reads (for a width above 1, an ``INCR`` first picks the
last reply: the counterpart of our fan-in).
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

from bench import probe
from config.settings import Settings
from tasks.store.connections import StateRedis, url_client
from tasks.worker.celery_config import celery_config

HOP_TASK = "bench.raw.hop"

#: Completion stream of raw workflows (one entry per finished workflow, field ``subject``).
DONE_STREAM = "bench:raw:done"

#: Queue of each group: the raw tasks never share a queue with the real ones.
QUEUES = {"orch": "bench.raw.orch", "svc": "bench.raw.svc"}

#: The stages of each workflow shape: (queue group, number of parallel tasks).
SHAPES: dict[str, list[tuple[str, int]]] = {
    "increment": [("orch", 1), ("svc", 1), ("orch", 1), ("svc", 1), ("orch", 1)],
    "fanout": [("orch", 1), ("svc", 10), ("orch", 10)],
}

#: Top-level packages of the project: a Celery setting naming a class in them is not stock Celery.
PROJECT_PACKAGES = frozenset({"tasks", "config", "orchestrator", "examples"})


def stock_config(settings: Settings) -> tuple[dict[str, Any], list[str]]:
    """The runtime's Celery config without the settings that name project classes, and their names."""
    config = celery_config(settings)
    stripped = sorted(name for name, value in config.items() if _names_project_code(value))
    for name in stripped:
        del config[name]
    return config, stripped


def _names_project_code(value: Any) -> bool:
    """Whether a Celery setting's value is a class of the project, or a dotted path to one.

    Celery takes a class (``worker_consumer``, ``broker_transport``) as well as its dotted path,
    and the runtime gives classes: both must go, or the baseline runs our transport and
    consumer and is no longer stock Celery.
    """
    if isinstance(value, str):
        module = value.split(":")[0]
    elif isinstance(value, type):
        module = value.__module__
    else:
        return False
    return module.split(".")[0] in PROJECT_PACKAGES


def make_app(settings: Settings) -> Celery:
    """A stock Celery app with the runtime's configuration (see :func:`stock_config`)."""
    raw = Celery("bench-raw", set_as_current=False)
    raw.conf.update(stock_config(settings)[0])
    return raw


probe.install()

app = make_app(Settings())

_client: list[StateRedis] = []


def _redis() -> StateRedis:
    """One client per process, created after the fork."""
    if not _client:
        _client.append(url_client(os.environ.get("ORCH_REDIS_URL", "redis://127.0.0.1:6379/0")))
    return _client[0]


def executions(shape: str) -> int:
    """Task executions per workflow of ``shape``."""
    return sum(width for _, width in SHAPES[shape])


@app.task(name=HOP_TASK, shared=False)  # type: ignore[untyped-decorator]
def hop(workflow: str, shape: str, stage: int) -> None:
    """One hop: publish the next stage, or end the workflow."""
    stages = SHAPES[shape]
    width = stages[stage][1]
    if stage + 1 == len(stages):
        client = _redis()
        if width == 1 or client.incr(f"bench:raw:fanin:{workflow}") == width:
            client.xadd(DONE_STREAM, {"subject": workflow}, maxlen=100_000, approximate=True)
        return
    group, next_width = stages[stage + 1]
    with app.producer_or_acquire() as producer:
        for _ in range(max(1, next_width // width)):
            hop.apply_async((workflow, shape, stage + 1), queue=QUEUES[group], producer=producer)


def start(publisher: Celery, workflow: str, shape: str) -> Any:
    """Publish the first hop of a raw workflow through ``publisher`` (a :func:`make_app` app)."""
    return publisher.send_task(HOP_TASK, args=(workflow, shape, 0), queue=QUEUES[SHAPES[shape][0][0]])
