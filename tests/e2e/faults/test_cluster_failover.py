"""Scenario: a Redis Cluster primary holding some shards is SIGKILLed while workflows run.

The workflow state lives on a Redis Cluster of 3 primaries with one replica each
(:mod:`tests.helpers.cluster`, node timeout 1 s), named by ``ORCH_REDIS_URL=redis+cluster://...``
and split into 16 shards (``ORCH_REDIS_SHARDS`` default on a cluster), about 5 per primary; the
Celery broker is a separate plain Redis (kombu has no cluster transport). 2 prefork workers run
120 increment and 30 fan-out workflows with ``ORCH_REDIS_WAIT_REPLICAS=1``. Once 40 have
completed, the primary of shard 0's slot is SIGKILLed; the other primaries agree it failed and
its replica takes its slots over. The killed node is started again (empty: no persistence; its
node file makes it rejoin) and becomes a replica of the promoted one, so ``WAIT 1`` can be met
again on those shards. Meanwhile steps of the failed shards fail retryably (connection refused,
``CLUSTERDOWN``, ``MOVED``; then ``WAIT`` answering 0 while the promoted primary has no replica)
and steps of the other shards go on. The workers get no help: no restart, no signal.

Proven: every workflow completes with the correct output, applies exactly the transitions its
shape needs (record version and consumed-id set), sends one completion id, and nothing is
dead-lettered.

``WAIT`` is what makes ``lost=0`` an honest result rather than luck: replication in a cluster is
asynchronous as under Sentinel, and a step acknowledged by the killed primary but not yet on its
replica would be gone after the promotion (``docs/guarantees.md``, "With Redis Cluster for state").
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tasks.store.connections import url_client
from tasks.store.keys import KeySpace
from tests.helpers.chaos import FAILOVER_SETTINGS, Cluster, run_through_failover
from tests.helpers.cluster import RedisCluster, start_cluster_or_fail, wait_failover, wait_replica_online
from tests.helpers.redis_server import RedisServer, start_or_fail


@pytest.mark.timeout(480)
def test_a_cluster_primary_failover_loses_and_doubles_nothing_with_wait(
    tmp_path: Path, cluster_factory: Callable[..., Cluster]
) -> None:
    state = start_cluster_or_fail(RedisCluster(tmp_path / "cluster", replicas=1), "The cluster failover scenario")
    broker = start_or_fail(RedisServer(tmp_path / "broker"), "The cluster failover scenario")
    client = url_client(state.url)  # follows the failover, like the workers' clients
    workers = cluster_factory(state.url, broker_url=broker.url(), **FAILOVER_SETTINGS)
    space = KeySpace(16)
    shard_key = space.index_all(0)
    victim = state.primary_of(shard_key)

    def fail() -> str:
        shards_hit = sum(1 for shard in space.all_shards if state.primary_of(space.index_all(shard)) is victim)
        killed_at = time.monotonic()
        victim.kill()
        promotion_s = wait_failover(state, victim, shard_key)
        promoted = state.primary_of(shard_key)
        assert promoted is not victim
        victim.start()  # back empty; its node file makes it rejoin, as a replica of the promoted node
        wait_replica_online(promoted)
        replica_back_s = time.monotonic() - killed_at
        return (
            f"primary-sigkill({shards_hit}-of-16-shards)+promotion-in-{promotion_s:.1f}s"
            f"+replica-back-after-{replica_back_s:.0f}s wait=1"
        )

    try:
        run_through_failover(workers, client, "cluster-failover", fail, seed=67)
    finally:
        client.close()
        workers.close()  # before the Redis servers go, so the workers shut down warmly
        state.stop()
        broker.stop()
