"""Worker-side probe: per-execution timestamps from Celery signals, with no change to the runtime.

Why signals: they measure our tasks and the raw-Celery baseline tasks the same way, cost a few
microseconds per task, and need nothing from ``tasks/`` beyond what Celery already does.

* ``before_task_publish`` (in every publishing process: the benchmark's publisher and the
  workers when a step publishes the next hop) stamps the message header ``bench_sent`` with the
  wall clock just before the message is written to Redis;
* ``task_prerun`` / ``task_postrun`` (in the process running the task) record the start and end
  of each execution with its queue, task name and retry count;
* every request redis-py writes in the worker (``send_packed_command``: a command, a pipeline or
  a script call, to the broker or the state Redis alike) is counted, and each sample carries the
  requests made between its prerun and postrun: the task body's Redis round trips, including
  its publishes but not the consumer's own fetch and acknowledgement around it;
* ``task_retry`` records when a task asked for a retry (lock busy, write conflict, Redis down);
* ``worker_ready`` writes ``ready-<hostname>`` in the probe directory, so a launcher can wait for
  readiness without running workers at ``INFO`` log level;
* at shutdown (``worker_shutdown`` for solo, ``worker_process_shutdown`` for prefork children,
  and ``atexit`` as a fallback) every sample is written to ``samples-<pid>.json``.

Hop latency = execution start - ``bench_sent``: broker queueing, the consumer's fetch and
decode, the (prefork) hand-over to the pool, up to the first line of the task. All processes run
on one machine, so their wall clocks are the same clock.

The probe directory comes from ``BENCH_PROBE_DIR``; without it nothing is recorded or written.
"""

from __future__ import annotations

import atexit
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import signals

#: Environment variable naming the directory of readiness markers and sample files.
PROBE_DIR_ENV = "BENCH_PROBE_DIR"

#: Message header carrying the publish time (seconds since the epoch, float).
SENT_HEADER = "bench_sent"


@dataclass(frozen=True, slots=True)
class Sample:
    """One task execution as seen by the probe."""

    task: str
    queue: str
    sent: float
    start: float
    end: float
    retries: int
    round_trips: int
    pid: int

    @property
    def hop_s(self) -> float:
        """Publish to execution start."""
        return self.start - self.sent

    @property
    def run_s(self) -> float:
        """Execution start to end (the task body, including what it publishes)."""
        return self.end - self.start


_open: dict[str, tuple[float, float, str, str, int, int]] = {}
_samples: list[tuple[str, str, float, float, float, int, int]] = []
_trips: list[int] = [0]
_retries: list[float] = []
_installed: list[bool] = []
_dumped: list[int] = []


def _directory() -> Path | None:
    value = os.environ.get(PROBE_DIR_ENV)
    return Path(value) if value else None


def _stamp(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is not None:
        headers[SENT_HEADER] = time.time()


def _prerun(task_id: str = "", task: Any = None, **_: Any) -> None:
    now = time.time()
    request = task.request
    sent = request.get(SENT_HEADER) or (request.headers or {}).get(SENT_HEADER) or now
    queue = (request.delivery_info or {}).get("routing_key") or ""
    _open[task_id] = (float(sent), now, task.name, queue, int(request.retries or 0), _trips[0])


def _postrun(task_id: str = "", **_: Any) -> None:
    opened = _open.pop(task_id, None)
    if opened is not None:
        sent, start, name, queue, retries, trips = opened
        _samples.append((name, queue, sent, start, time.time(), retries, _trips[0] - trips))


def _count_round_trips() -> None:
    from redis.connection import AbstractConnection

    original: Any = AbstractConnection.send_packed_command

    def counting(connection: Any, command: Any, check_health: bool = True) -> Any:
        _trips[0] += 1
        return original(connection, command, check_health)

    AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]


def _retry(**_: Any) -> None:
    _retries.append(time.time())


def _ready(sender: Any = None, **_: Any) -> None:
    directory = _directory()
    if directory is not None:
        hostname = getattr(sender, "hostname", None) or f"pid{os.getpid()}"
        (directory / f"ready-{hostname}").write_text(str(os.getpid()), encoding="utf-8")


def dump(**_: Any) -> None:
    """Write this process's samples (once per process); a no-op without a probe directory."""
    directory = _directory()
    if directory is None or os.getpid() in _dumped or (not _samples and not _retries):
        return
    _dumped.append(os.getpid())
    payload = {"pid": os.getpid(), "retries": _retries, "samples": _samples}
    (directory / f"samples-{os.getpid()}.json").write_text(json.dumps(payload), encoding="utf-8")


def install() -> None:
    """Connect the probe's signal handlers in this process (idempotent)."""
    if _installed:
        return
    _installed.append(True)
    if _directory() is not None:  # only in the benchmark's workers
        _count_round_trips()
    signals.before_task_publish.connect(_stamp, weak=False, dispatch_uid="bench.probe.stamp")
    signals.task_prerun.connect(_prerun, weak=False, dispatch_uid="bench.probe.prerun")
    signals.task_postrun.connect(_postrun, weak=False, dispatch_uid="bench.probe.postrun")
    signals.task_retry.connect(_retry, weak=False, dispatch_uid="bench.probe.retry")
    signals.worker_ready.connect(_ready, weak=False, dispatch_uid="bench.probe.ready")
    signals.worker_shutdown.connect(dump, weak=False, dispatch_uid="bench.probe.dump")
    signals.worker_process_shutdown.connect(dump, weak=False, dispatch_uid="bench.probe.dump_child")
    atexit.register(dump)


def load(directory: Path) -> tuple[list[Sample], list[float]]:
    """Every sample written under ``directory``, and the times at which a task asked for a retry."""
    samples: list[Sample] = []
    retries: list[float] = []
    for path in sorted(directory.glob("samples-*.json")):
        payload = json.loads(path.read_text(encoding="utf-8"))
        retries.extend(float(at) for at in payload["retries"])
        pid = int(payload["pid"])
        for task, queue, sent, start, end, retried, trips in payload["samples"]:
            samples.append(Sample(task, queue, sent, start, end, retried, trips, pid))
    return samples, retries
