"""A local Redis Sentinel deployment: a master, a replica and 3 Sentinels on free ports.

Every process is ``redis-server`` (a Sentinel is ``redis-server <config> --sentinel``, so nothing
beyond the Debian ``redis-server`` package is needed). The data nodes are
:class:`~tests.helpers.redis_server.RedisServer`\\ s; each Sentinel gets a config file of its own
in the deployment's directory (Sentinels rewrite it as they learn the topology). Timings are
short so a failover happens within seconds (``down-after-milliseconds`` 1000,
``failover-timeout`` 5000), and every wait is generous because the test machine is shared.

Anything that does not start or does not converge raises :class:`SentinelError`;
:func:`start_sentinel_or_fail` turns that into a failed test, never a skip.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis

from tests.helpers.redis_server import RedisServer, RedisServerError, free_port

#: The Sentinel service (master name) of the test deployment.
SERVICE = "orchtest"

#: Sentinels that must agree the master is down before one of them fails it over.
QUORUM = 2

#: Milliseconds without a valid reply before a Sentinel deems the master down.
DOWN_AFTER_MS = 1000

#: Milliseconds a Sentinel gives one failover before another may try.
FAILOVER_TIMEOUT_MS = 5000

#: Seconds allowed for the deployment to converge (replica in sync, Sentinels aware of each other).
CONVERGE_TIMEOUT_S = 60.0


class SentinelError(RuntimeError):
    """The Sentinel deployment did not start or did not converge: the test must fail."""


class ReplicaServer(RedisServer):
    """A :class:`RedisServer` started as a replica of the master on ``master_port``."""

    def __init__(self, directory: Path, master_port: int, **kwargs: object) -> None:
        super().__init__(directory, **kwargs)  # type: ignore[arg-type]
        self.master_port = master_port

    def command(self) -> list[str]:
        """The base command plus ``--replicaof``."""
        return [*super().command(), "--replicaof", "127.0.0.1", str(self.master_port)]


class SentinelProcess:
    """One ``redis-server --sentinel`` process watching :data:`SERVICE`.

    Args:
        directory: where its config file and log go.
        master_port: the port of the master to monitor at start.
    """

    def __init__(self, directory: Path, master_port: int) -> None:
        self.directory = directory
        self.port = free_port()
        self.master_port = master_port
        self.config_path = directory / f"sentinel-{self.port}.conf"
        self.log_path = directory / f"sentinel-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        """The initial config file."""
        return "\n".join(
            [
                f"port {self.port}",
                "bind 127.0.0.1",
                "protected-mode no",
                "daemonize no",
                f"dir {self.directory}",
                f"logfile {self.log_path}",
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.master_port} {QUORUM}",
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
                f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}",
                f"sentinel parallel-syncs {SERVICE} 1",
                "",
            ]
        )

    def client(self) -> redis.Redis:
        """A client of this Sentinel (decoded replies)."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, socket_connect_timeout=2, decode_responses=True)

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self) -> SentinelProcess:
        """Write the config and start the process (readiness: :meth:`SentinelDeployment.start`)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config())
        binary = shutil.which("redis-server") or "redis-server"
        try:
            self.process = subprocess.Popen(
                [binary, str(self.config_path), "--sentinel"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise SentinelError(f"Cannot run {binary!r} --sentinel: {exc}") from exc
        return self

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log_tail(self, lines: int = 20) -> str:
        """The end of the Sentinel's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"


class SentinelDeployment:
    """A master, one replica and three Sentinels, started and stopped together.

    Args:
        directory: where every process keeps its config, log and data.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.master = RedisServer(directory / "master")
        self.replica = ReplicaServer(directory / "replica", self.master.port)
        self.sentinels = [SentinelProcess(directory / f"sentinel{index}", self.master.port) for index in range(3)]

    def url(self, db: int = 0) -> str:
        """The ``redis+sentinel://`` URL of the service."""
        hosts = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/{db}"

    def start(self) -> SentinelDeployment:
        """Start everything and wait until the replica is in sync and the Sentinels know it all.

        Raises:
            SentinelError: a process did not start, or the deployment did not converge in
                :data:`CONVERGE_TIMEOUT_S`.
        """
        try:
            self.master.start()
            self.replica.start()
        except RedisServerError as exc:
            self.stop()
            raise SentinelError(str(exc)) from exc
        for sentinel in self.sentinels:
            sentinel.start()
        try:
            self.wait_replica_in_sync(self.master, self.replica)
            self.wait_converged(self.master.port, replicas=1)
        except SentinelError:
            self.stop()
            raise
        return self

    def wait_replica_in_sync(self, master: RedisServer, replica: RedisServer, timeout: float = CONVERGE_TIMEOUT_S) -> None:
        """Wait until ``replica``'s link to ``master`` is up."""
        client = replica.client()
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    info = client.info("replication")
                    if info.get("master_link_status") == "up" and int(info.get("master_port", 0)) == master.port:
                        return
                except redis.RedisError:
                    info = {}
                if time.monotonic() > deadline:
                    raise SentinelError(f"replica on port {replica.port} not in sync with {master.port}: {info}\n{replica.log_tail()}")
                time.sleep(0.1)
        finally:
            client.close()

    def wait_converged(self, master_port: int, *, replicas: int, timeout: float = CONVERGE_TIMEOUT_S) -> None:
        """Wait until every running Sentinel names ``master_port`` as the master, sees the other
        Sentinels and ``replicas`` healthy replicas (so a quorum can fail it over)."""
        deadline = time.monotonic() + timeout
        running = [sentinel for sentinel in self.sentinels if sentinel.running]
        last: dict[int, object] = {}
        while True:
            ready = 0
            for sentinel in running:
                if not sentinel.running:
                    raise SentinelError(f"sentinel on port {sentinel.port} exited:\n{sentinel.log_tail()}")
                client = sentinel.client()
                try:
                    state = client.sentinel_master(SERVICE)
                    last[sentinel.port] = {k: state.get(k) for k in ("port", "num-other-sentinels", "num-slaves", "flags")}
                    if (
                        int(state["port"]) == master_port
                        and int(state["num-other-sentinels"]) >= len(running) - 1
                        and self._healthy_replicas(client) >= replicas
                        and state.get("is_master") and not state.get("is_sdown") and not state.get("is_odown")
                    ):
                        ready += 1
                except (redis.RedisError, KeyError, ValueError) as exc:
                    last[sentinel.port] = repr(exc)
                finally:
                    client.close()
            if ready == len(running):
                return
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- sentinel {s.port} ---\n{s.log_tail()}" for s in running)
                raise SentinelError(f"Sentinels did not converge on master {master_port} in {timeout}s: {last}\n{tails}")
            time.sleep(0.2)

    @staticmethod
    def _healthy_replicas(client: redis.Redis) -> int:
        replicas = client.sentinel_slaves(SERVICE)
        return sum(1 for r in replicas if not r.get("is_sdown") and not r.get("is_odown") and r.get("master-link-status") == "ok")

    def named_masters(self) -> set[int | None]:
        """The master port each running Sentinel names (None: it named none or did not answer)."""
        ports: set[int | None] = set()
        for sentinel in self.sentinels:
            if not sentinel.running:
                continue
            client = sentinel.client()
            try:
                address = client.sentinel_get_master_addr_by_name(SERVICE)
                ports.add(int(address[1]) if address else None)
            except redis.RedisError:
                ports.add(None)
            finally:
                client.close()
        return ports

    def master_port(self) -> int:
        """The master's port, when every running Sentinel names the same one."""
        ports = self.named_masters()
        if len(ports) != 1 or None in ports:
            raise SentinelError(f"the Sentinels do not agree on a master: {ports}")
        return int(ports.pop())  # type: ignore[arg-type]

    def wait_failover(self, to: RedisServer, timeout: float = CONVERGE_TIMEOUT_S) -> float:
        """Wait until every running Sentinel names ``to`` as the master; the seconds it took."""
        started = time.monotonic()
        while (ports := self.named_masters()) != {to.port}:
            if time.monotonic() - started > timeout:
                raise SentinelError(f"no failover to port {to.port} within {timeout}s (Sentinels name {ports})\n{self.log_tails()}")
            time.sleep(0.1)
        return time.monotonic() - started

    def stop(self) -> None:
        """Stop the Sentinels first (so they start no failover), then the data nodes."""
        for sentinel in self.sentinels:
            sentinel.stop()
        self.replica.stop()
        self.master.stop()

    def log_tails(self) -> str:
        """The end of every log, for failure messages."""
        parts = [f"--- master {self.master.port} ---\n{self.master.log_tail()}", f"--- replica {self.replica.port} ---\n{self.replica.log_tail()}"]
        parts += [f"--- sentinel {s.port} ---\n{s.log_tail()}" for s in self.sentinels]
        return "\n".join(parts)


def start_sentinel_or_fail(directory: Path, needed_by: str) -> SentinelDeployment:
    """Start a :class:`SentinelDeployment`; when it cannot start, fail the test (never a skip)."""
    import pytest

    try:
        return SentinelDeployment(directory).start()
    except SentinelError as exc:
        pytest.fail(f"{needed_by} cannot start a Redis Sentinel deployment: {exc}", pytrace=False)
