"""Subprocesses of the distributed benchmarks: a private redis-server and Celery workers.

Everything started here is stopped by the ``with`` blocks that start it, on success or error:
the server and each worker run in a process group of their own, sent SIGTERM first (a warm
shutdown lets the probe write its samples) and SIGKILL if they linger. The Redis on port 6379 is
never touched: the server here takes a free port and keeps nothing on disk.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import redis

from bench.common import REPO_ROOT
from bench.probe import PROBE_DIR_ENV


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM the process, then SIGKILL its whole group if it is still there after ``timeout``.

    SIGTERM goes to the main process only: for a Celery worker that is a warm shutdown, which
    stops the pool children cleanly (they run ``worker_process_shutdown``); a SIGTERM to the
    whole group would kill a prefork child mid-task instead.
    """
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    # A prefork pool child can outlive its parent for a moment: make sure the group is gone.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


@contextlib.contextmanager
def redis_server(directory: Path, *, replica_of: str | None = None, cluster: bool = False) -> Iterator[str]:
    """A ``redis-server --save "" --appendonly no`` on a free port; yields its URL.

    With ``replica_of`` (the URL of another such server) it starts as that server's replica;
    with ``cluster`` as a cluster node (its bus port, port + 10000, free too), not yet in a cluster.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    directory.mkdir(parents=True, exist_ok=True)
    port = _cluster_port() if cluster else free_port()
    command = [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", str(directory), "--logfile", str(directory / "redis.log"), "--daemonize", "no",
    ]
    if cluster:
        command += ["--cluster-enabled", "yes", "--cluster-config-file", str(directory / "nodes.conf")]
    if replica_of is not None:
        master = urlsplit(replica_of)
        command += ["--replicaof", str(master.hostname), str(master.port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {port} did not start") from None
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        _terminate(process, 10)


def _cluster_port() -> int:
    """A free port below 55536 whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        port = 20000 + free_port() % 30000
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as one, socket.socket(socket.AF_INET, socket.SOCK_STREAM) as bus:
            try:
                one.bind(("127.0.0.1", port))
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


@contextlib.contextmanager
def redis_cluster(directory: Path, primaries: int = 3) -> Iterator[str]:
    """A private Redis Cluster of ``primaries`` nodes (no replicas, nothing on disk); yields its
    ``redis+cluster://`` URL once ``redis-cli --cluster create`` is done and the state is ok."""
    from redis.cluster import ClusterNode, RedisCluster

    with contextlib.ExitStack() as stack:
        urls = [stack.enter_context(redis_server(directory / f"node{n}", cluster=True)) for n in range(primaries)]
        nodes = [f"127.0.0.1:{urlsplit(url).port}" for url in urls]
        done = subprocess.run(
            [shutil.which("redis-cli") or "redis-cli", "--cluster", "create", *nodes, "--cluster-yes"],
            capture_output=True, text=True, timeout=60, check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
        startup = [ClusterNode("127.0.0.1", int(node.rsplit(":", 1)[1])) for node in nodes]  # type: ignore[no-untyped-call]
        deadline = time.monotonic() + 60
        while True:
            try:
                states = []
                for url in urls:
                    with redis.Redis.from_url(url, socket_connect_timeout=1) as node:
                        states.append(b"cluster_state:ok" in node.execute_command("CLUSTER", "INFO"))  # type: ignore[no-untyped-call]
                client = RedisCluster(startup_nodes=startup, socket_connect_timeout=1)  # the slot map is served
                client.close()
                if all(states):
                    break
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the bench cluster did not reach cluster_state:ok")
            time.sleep(0.1)
        yield "redis+cluster://" + ",".join(nodes)


#: The RabbitMQ of ``python -m bench distributed --broker amqp`` unless ``--amqp-url`` says otherwise.
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672"


@contextlib.contextmanager
def rabbitmq_vhost(amqp_url: str) -> Iterator[str]:
    """A fresh virtual host on the RabbitMQ at ``amqp_url`` (no vhost in it); yields its URL.

    Created and deleted with ``rabbitmqctl`` (the bench runs beside the broker), so queues left
    by one run never reach the next.
    """
    vhost = f"bench-{os.getpid()}-{time.monotonic_ns() % 10**9}"
    user = amqp_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[0] if "@" in amqp_url else "guest"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        yield f"{amqp_url.rstrip('/')}/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)


def _rabbitmqctl(*args: str) -> None:
    binary = shutil.which("rabbitmqctl")
    if binary is None:
        raise RuntimeError("rabbitmqctl is not installed (apt-get install rabbitmq-server)")
    done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")


def worker_env(redis_url: str, probe_dir: Path, **settings: str) -> dict[str, str]:
    """The environment of a worker: ours and the raw app both read ``ORCH_*`` settings."""
    env = {key: value for key, value in os.environ.items() if not key.upper().startswith("ORCH_")}
    env.update({"ORCH_BROKER_URL": redis_url, "ORCH_REDIS_URL": redis_url, PROBE_DIR_ENV: str(probe_dir)})
    env.update({f"ORCH_{name.upper()}": value for name, value in settings.items()})
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


@dataclass
class Worker:
    """One ``celery worker`` subprocess."""

    hostname: str
    process: subprocess.Popen[bytes]
    log: Path

    def rss_mb(self) -> dict[str, float]:
        """Current and peak RSS of the worker and its pool children (``/proc``, MB)."""
        current = peak = 0.0
        for pid in [self.process.pid, *_children(self.process.pid)]:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            current += int(fields.get("VmRSS", "0 kB").split()[0]) / 1024
            peak += int(fields.get("VmHWM", "0 kB").split()[0]) / 1024
        return {"rss_mb": round(current, 1), "peak_rss_mb": round(peak, 1)}


def _children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _start_worker(app: str, queues: Sequence[str], hostname: str, pool: str, env: dict[str, str], log: Path) -> Worker:
    command = [
        sys.executable, "-m", "celery", "-A", app, "worker", "-Q", ",".join(queues), "-P", pool, "-c", "1",
        "-n", hostname, "--without-gossip", "--without-mingle", "--loglevel", "WARNING", "--logfile", str(log),
    ]
    out = log.with_suffix(".out")
    with out.open("wb") as sink:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Worker(hostname, process, log)


@contextlib.contextmanager
def workers(
    app: str,
    queue_sets: Sequence[Sequence[str]],
    *,
    pool: str,
    redis_url: str,
    probe_dir: Path,
    settings: dict[str, str] | None = None,
    ready_timeout: float = 60.0,
) -> Iterator[list[Worker]]:
    """Start one worker per queue set and wait until each reported ready (probe marker file).

    On exit every worker gets a warm shutdown (the probe then writes its samples), or is killed.
    """
    probe_dir.mkdir(parents=True, exist_ok=True)
    env = worker_env(redis_url, probe_dir, **(settings or {}))
    started: list[Worker] = []
    try:
        for index, queues in enumerate(queue_sets):
            hostname = f"bench{index}-{os.getpid()}-{time.monotonic_ns() % 10**8}@localhost"
            started.append(_start_worker(app, queues, hostname, pool, env, probe_dir / f"worker{index}.log"))
        deadline = time.monotonic() + ready_timeout
        for worker in started:
            while not (probe_dir / f"ready-{worker.hostname}").exists():
                if worker.process.poll() is not None or time.monotonic() > deadline:
                    tail = worker.log.with_suffix(".out").read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"worker {worker.hostname} did not become ready:\n{tail}")
                time.sleep(0.05)
        yield started
    finally:
        for worker in started:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        for worker in started:
            _terminate(worker.process, 20)
