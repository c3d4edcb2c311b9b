"""Real ``celery -A tasks worker`` subprocesses for integration, end-to-end and crash tests.

A worker here is exactly what production runs: a separate process (with its own pool
processes), configured only through ``ORCH_*`` environment variables, consuming named queues
from the test Redis. :func:`start_worker` returns once the worker logged that it is ready;
:class:`WorkerProcess` stops it warmly (SIGTERM), or crashes it (SIGKILL of the whole process
group, or of one pool child). Every worker logs to files in the test's directory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers.broker import broker_url_for
from tests.helpers.state import state_url_for

#: The repository root, put on the worker's PYTHONPATH so ``-A tasks`` and the examples import.
REPO_ROOT = Path(__file__).resolve().parents[2]

#: Seconds a worker may take to log that it is ready.
READY_TIMEOUT_S = 60.0


def orch_env(redis_url: str, **settings: Any) -> dict[str, str]:
    """``ORCH_*`` variables pointing state (and broker) at ``redis_url``, plus ``settings``.

    The broker is that Redis too, or, under ``ARVO_TEST_BROKER=amqp``, a RabbitMQ virtual host
    of its own (:func:`tests.helpers.broker.broker_url_for`).

    Args:
        redis_url: the test Redis (``redis://127.0.0.1:<port>/0``).
        **settings: :class:`config.settings.Settings` field names and values; mappings and
            lists are JSON-encoded, booleans become ``true``/``false``.

    Returns:
        The environment variables, ready for :func:`start_worker`.
    """
    values: dict[str, Any] = {"broker_url": broker_url_for(redis_url), "redis_url": state_url_for(redis_url), **settings}
    env: dict[str, str] = {}
    for name, value in values.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, Mapping | list | tuple):
            text = json.dumps(value)
        else:
            text = str(value)
        env[f"ORCH_{name.upper()}"] = text
    return env


@dataclass
class WorkerProcess:
    """A running ``celery worker`` subprocess (the leader of its own process group).

    Attributes:
        hostname: the worker's node name (``-n``), as shown by ``inspect`` and Flower.
        queues: the queues it consumes (``-Q``).
        process: the subprocess handle of the worker's main process.
        log_path: Celery's log file (``--logfile``).
        out_path: the process's stdout and stderr (tracebacks before logging is set up).
    """

    hostname: str
    queues: tuple[str, ...]
    process: subprocess.Popen[bytes]
    log_path: Path
    out_path: Path
    env: dict[str, str] = field(repr=False)

    @property
    def pid(self) -> int:
        """Pid of the main process."""
        return self.process.pid

    @property
    def running(self) -> bool:
        """Whether the main process is alive."""
        return self.process.poll() is None

    def log_text(self) -> str:
        """Everything the worker wrote so far: stdout/stderr (banner, early tracebacks), then its log.

        The log comes last so that :meth:`log_tail` shows the latest log lines, not the banner.
        """
        parts = []
        for path in (self.out_path, self.log_path):
            try:
                parts.append(path.read_text(errors="replace"))
            except OSError:
                pass
        return "\n".join(parts)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of :meth:`log_text`, for failure messages."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_for_log(self, text: str, timeout: float = 30.0) -> None:
        """Wait until ``text`` appears in the worker's output.

        Raises:
            RuntimeError: the worker died first.
            TimeoutError: the text did not appear in time.
        """
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            if not self.running:
                raise RuntimeError(
                    f"Worker {self.hostname} exited with {self.process.returncode} before logging "
                    f"{text!r}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"Worker {self.hostname} did not log {text!r}:\n{self.log_tail()}")
            time.sleep(0.05)

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> WorkerProcess:
        """Wait for Celery's ``<hostname> ready.`` line (consumer started, queues bound)."""
        self.wait_for_log(f"{self.hostname} ready.", timeout)
        return self

    def child_pids(self) -> list[int]:
        """Pids of the main process's children (the prefork pool processes)."""
        try:
            text = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        except OSError:
            return []
        return [int(pid) for pid in text.split()]

    def stop(self, timeout: float = 20.0) -> int | None:
        """Warm shutdown: SIGTERM to the main process, SIGKILL to the group if it lingers.

        A warm shutdown lets the running task finish and puts prefetched messages back.

        Returns:
            The exit code (negative for a signal), or None if it had to be killed.
        """
        if self.running:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        return self.process.returncode

    def kill(self, *, group: bool = True) -> None:
        """Crash: SIGKILL the whole process group (main and pool), or only the main process.

        Killing only the main process leaves its pool children orphaned until they notice;
        messages they held stay unacknowledged in Redis and are redelivered after the
        visibility timeout.
        """
        try:
            if group:
                os.killpg(self.pid, signal.SIGKILL)
            else:
                self.process.kill()
        except ProcessLookupError:
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
            pass

    def kill_child(self, index: int = 0) -> int:
        """SIGKILL one pool process (the worker itself survives and replaces it).

        Returns:
            The pid that was killed.

        Raises:
            LookupError: the worker has no child process (solo or threads pool).
        """
        children = self.child_pids()
        if not children:
            raise LookupError(f"Worker {self.hostname} has no pool processes")
        pid = children[index]
        os.kill(pid, signal.SIGKILL)
        return pid


def start_worker(
    directory: Path,
    env: Mapping[str, str],
    *,
    queues: Iterable[str] = ("celery",),
    concurrency: int = 1,
    pool: str = "prefork",
    name: str = "worker",
    hostname: str | None = None,
    loglevel: str = "INFO",
    without_mingle: bool = True,
    without_gossip: bool = True,
    extra_args: Iterable[str] = (),
    wait: bool = True,
    ready_timeout: float = READY_TIMEOUT_S,
) -> WorkerProcess:
    """Start ``python -m celery -A tasks worker`` with events on (``-E``).

    Args:
        directory: where the log files go.
        env: the ``ORCH_*`` variables (see :func:`orch_env`); inherited ``ORCH_*`` variables
            are dropped so only these configure the worker.
        queues: queues to consume.
        concurrency: pool size (``-c``).
        pool: ``prefork``, ``threads`` or ``solo`` (``-P``).
        name: prefix of the generated hostname and of the log file names.
        hostname: the node name; a unique ``<name>-<hex>@pytest`` by default.
        loglevel: Celery log level.
        without_mingle: skip the startup sync with other workers (saves about a second).
        without_gossip: skip gossip between workers. Heartbeats stay on (Flower needs them).
        extra_args: more ``celery worker`` arguments.
        wait: wait until the worker is ready.
        ready_timeout: seconds to wait for readiness.

    Returns:
        The running worker.
    """
    hostname = hostname or f"{name}-{uuid.uuid4().hex[:8]}@pytest"
    stem = hostname.split("@", 1)[0]
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / f"{stem}.log"
    out_path = directory / f"{stem}.out"
    queue_list = tuple(queues)
    child_env = {k: v for k, v in os.environ.items() if not k.upper().startswith("ORCH_")}
    child_env.update(env)
    child_env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    child_env["PYTHONUNBUFFERED"] = "1"
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tasks",
        "worker",
        "-Q",
        ",".join(queue_list),
        "-c",
        str(concurrency),
        "-P",
        pool,
        "-n",
        hostname,
        "-E",
        "--loglevel",
        loglevel,
        "--logfile",
        str(log_path),
    ]
    if without_mingle:
        command.append("--without-mingle")
    if without_gossip:
        command.append("--without-gossip")
    command += list(extra_args)
    with out_path.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = WorkerProcess(hostname, queue_list, process, log_path, out_path, dict(env))
    if wait:
        try:
            worker.wait_ready(ready_timeout)
        except BaseException:
            worker.kill()
            raise
    return worker
