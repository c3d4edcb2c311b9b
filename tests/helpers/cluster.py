"""A local Redis Cluster: 3 primaries (and optionally one replica each) on free ports.

Every node is a :class:`~tests.helpers.redis_server.RedisServer` started with
``--cluster-enabled yes`` and a node timeout of :data:`NODE_TIMEOUT_MS` (a failover within a
couple of seconds), then ``redis-cli --cluster create`` assigns the slots evenly and
:meth:`RedisCluster.start` waits until every node reports ``cluster_state:ok``. A cluster node
also listens on its port + 10000 (the cluster bus), so ports are picked with both free.

Anything that does not start or does not converge raises :class:`ClusterError`;
:func:`start_cluster_or_fail` turns that into a failed test, never a skip.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis
from redis.cluster import ClusterNode
from redis.cluster import RedisCluster as ClusterClient
from redis.crc import key_slot

from tests.helpers.redis_server import RedisServer, RedisServerError

#: Milliseconds a node may be unreachable before the others fail it over.
NODE_TIMEOUT_MS = 1000

#: Seconds allowed for the cluster to reach ``cluster_state:ok`` (the machine is shared).
CONVERGE_TIMEOUT_S = 60.0

#: Offset of the cluster bus port from the client port (fixed by Redis).
BUS_PORT_OFFSET = 10000


class ClusterError(RuntimeError):
    """The cluster did not start or did not converge: the test must fail."""


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_port(taken: set[int]) -> int:
    """A port free on 127.0.0.1 whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + BUS_PORT_OFFSET > 65535 or port in taken or port + BUS_PORT_OFFSET in taken:
            # Ephemeral ports are high: fold into the lower range and probe there.
            port = 20000 + port % 30000
        if port not in taken and _port_free(port) and _port_free(port + BUS_PORT_OFFSET):
            return port
    raise ClusterError("no free port pair (port, port+10000) found for a cluster node")


class ClusterNodeServer(RedisServer):
    """A :class:`RedisServer` with cluster mode on (its node config file in its directory)."""

    def command(self) -> list[str]:
        """The base command plus the cluster options."""
        return [
            *super().command(),
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            str(self.directory / f"nodes-{self.port}.conf"),
            "--cluster-node-timeout",
            str(NODE_TIMEOUT_MS),
            # A replica may always take over, however long it was cut off (tests kill primaries).
            "--cluster-replica-validity-factor",
            "0",
        ]


class RedisCluster:
    """A test cluster of 3 primaries (plus ``replicas`` per primary), started and stopped together.

    Args:
        directory: where every node keeps its config, log and node file.
        replicas: replicas per primary (0, or 1 for a failover test).
    """

    def __init__(self, directory: Path, replicas: int = 0) -> None:
        self.directory = directory
        self.replicas = replicas
        taken: set[int] = set()
        self.nodes: list[ClusterNodeServer] = []
        for index in range(3 * (1 + replicas)):
            port = free_cluster_port(taken)
            taken |= {port, port + BUS_PORT_OFFSET}
            self.nodes.append(ClusterNodeServer(directory / f"node{index}", port=port))

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:<p1>,...``: every node, as ``ORCH_REDIS_URL``."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def client(self, decode_responses: bool = False) -> ClusterClient:
        """A new cluster client of every node."""
        return ClusterClient(
            startup_nodes=[ClusterNode("127.0.0.1", node.port) for node in self.nodes],
            decode_responses=decode_responses,
            socket_timeout=5,
            socket_connect_timeout=2,
        )

    def start(self) -> RedisCluster:
        """Start every node, create the cluster and wait for ``cluster_state:ok`` everywhere.

        Raises:
            ClusterError: a node did not start, ``redis-cli --cluster create`` failed, or the
                cluster did not converge within :data:`CONVERGE_TIMEOUT_S`.
        """
        try:
            for node in self.nodes:
                node.start()
        except RedisServerError as exc:
            self.stop()
            raise ClusterError(f"a cluster node did not start: {exc}") from exc
        binary = shutil.which("redis-cli") or "redis-cli"
        command = [
            binary,
            "--cluster",
            "create",
            *(f"127.0.0.1:{node.port}" for node in self.nodes),
            "--cluster-replicas",
            str(self.replicas),
            "--cluster-yes",
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.stop()
            raise ClusterError(f"{binary} --cluster create failed: {exc}") from exc
        if done.returncode != 0:
            self.stop()
            raise ClusterError(f"redis-cli --cluster create exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        self.wait_ok()
        self.wait_replicas_synced()
        return self

    def wait_replicas_synced(self) -> None:
        """Wait until every replica has finished its first sync (``master_link_status:up``).

        ``cluster_state:ok`` says every slot has a primary, not that the replicas hold a copy:
        a write right after it may find no replica to acknowledge a ``WAIT``.
        """
        deadline = time.monotonic() + CONVERGE_TIMEOUT_S
        while True:
            links = [self._link_status(node) for node in self.nodes if node.running]
            if links.count("up") >= self.replicas * (len(self.nodes) // (self.replicas + 1)):
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"the replicas did not sync in {CONVERGE_TIMEOUT_S}s: {links}")
            time.sleep(0.1)

    @staticmethod
    def _link_status(node: ClusterNodeServer) -> str:
        """A replica's ``master_link_status`` ("up" once synced); "" for a primary or an error."""
        client = node.client()
        try:
            info = client.info("replication")
            return str(info.get("master_link_status", "")) if info.get("role") == "slave" else ""
        except redis.RedisError:
            return ""
        finally:
            client.close()

    def wait_ok(self, nodes: list[ClusterNodeServer] | None = None) -> None:
        """Wait until every running node (or ``nodes``) reports ``cluster_state:ok`` and agrees
        on the slot owners."""
        deadline = time.monotonic() + CONVERGE_TIMEOUT_S
        waiting = [node for node in (nodes or self.nodes) if node.running]
        while True:
            states = [self._state(node) for node in waiting]
            if all(state == "ok" for state in states) and self._primaries_agree(waiting):
                return
            if time.monotonic() > deadline:
                tails = "\n".join(f"port {node.port}: {state}\n{node.log_tail(5)}" for node, state in zip(waiting, states, strict=True))
                raise ClusterError(f"the cluster did not reach cluster_state:ok in {CONVERGE_TIMEOUT_S}s:\n{tails}")
            time.sleep(0.1)

    @staticmethod
    def _state(node: ClusterNodeServer) -> str:
        client = node.client()
        try:
            info = client.execute_command("CLUSTER", "INFO")
            text = info.decode() if isinstance(info, bytes) else str(info)
            for line in text.splitlines():
                if line.startswith("cluster_state:"):
                    return line.split(":", 1)[1].strip()
            return "unknown"
        except redis.RedisError as exc:
            return f"error: {exc}"
        finally:
            client.close()

    @staticmethod
    def _primaries_agree(nodes: list[ClusterNodeServer]) -> bool:
        """Every node sees the same slot ranges with the same owners (CLUSTER SLOTS)."""
        views = set()
        for node in nodes:
            client = node.client()
            try:
                slots = client.execute_command("CLUSTER", "SLOTS")
            except redis.RedisError:
                return False
            finally:
                client.close()
            views.add(tuple(sorted((int(item[0]), int(item[1]), int(item[2][1])) for item in slots)))
        return len(views) == 1

    def primary_of(self, key: str) -> ClusterNodeServer:
        """The node serving ``key``'s slot now."""
        client = self.client()
        try:
            node = client.get_node_from_key(key)
            return next(server for server in self.nodes if server.port == node.port)
        finally:
            client.close()

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_cluster_or_fail(cluster: RedisCluster, needed_by: str) -> RedisCluster:
    """Start ``cluster``; when it cannot, fail the test (never a skip) saying why."""
    import pytest

    try:
        return cluster.start()
    except ClusterError as exc:
        pytest.fail(f"{needed_by} cannot start a Redis Cluster: {exc}", pytrace=False)


def wait_failover(cluster: RedisCluster, killed: ClusterNodeServer, slot_key: str) -> float:
    """Seconds until a node other than ``killed`` serves ``slot_key``'s slot and the cluster is ok.

    Raises:
        ClusterError: no replica took over within :data:`CONVERGE_TIMEOUT_S`.
    """
    started = time.monotonic()
    deadline = started + CONVERGE_TIMEOUT_S
    survivors = [node for node in cluster.nodes if node.running and node is not killed]
    while time.monotonic() < deadline:
        client = survivors[0].client()
        try:
            slots = client.execute_command("CLUSTER", "SLOTS")
        except redis.RedisError:
            slots = []
        finally:
            client.close()
        slot = key_slot(slot_key.encode())
        ports = [int(item[2][1]) for item in slots if int(item[0]) <= slot <= int(item[1])]
        if ports and ports[0] != killed.port:
            cluster.wait_ok(survivors)
            return time.monotonic() - started
        time.sleep(0.1)
    raise ClusterError(f"no replica took over the slots of port {killed.port} in {CONVERGE_TIMEOUT_S}s")


def wait_replica_online(primary: ClusterNodeServer) -> None:
    """Wait until ``primary`` has a replica whose link is up and in sync (``INFO replication``)."""
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while time.monotonic() < deadline:
        client = primary.client()
        try:
            info = client.info("replication")
        except redis.RedisError:
            info = {}
        finally:
            client.close()
        replica = info.get("slave0")
        if isinstance(replica, dict) and replica.get("state") == "online":
            return
        time.sleep(0.1)
    raise ClusterError(f"no replica of port {primary.port} came online in {CONVERGE_TIMEOUT_S}s")

