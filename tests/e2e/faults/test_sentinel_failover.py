"""Scenario: the state Redis fails over under Sentinel while workflows run, with WAIT 1.

The workflow state lives behind Redis Sentinel (a master, one replica, 3 Sentinels:
:mod:`tests.helpers.sentinel`), named by ``ORCH_REDIS_URL=redis+sentinel://.../orchtest/0``;
the Celery broker is a separate plain Redis. 2 prefork workers run 120 increment and 30 fan-out
workflows with ``ORCH_REDIS_WAIT_REPLICAS=1``. Once 40 have completed, the master is SIGKILLed;
the Sentinels agree it is down (``down-after-milliseconds`` 1000) and promote the replica. The
killed master is then started again (empty: no persistence) and Sentinel makes it a replica of
the new master, so ``WAIT 1`` can be satisfied again. Meanwhile steps fail retryably: while no
master is elected (``MasterNotFoundError``), and while the promoted master has no replica
(``WAIT`` answers 0: the step's events are not published, its retry re-publishes them once a
replica holds the write). The workers get no help: no restart, no signal.

Proven: every workflow completes with the correct output, applies exactly the transitions its
shape needs (record version and consumed-id set), sends one completion id, and nothing is
dead-lettered.

Without WAIT (``ORCH_REDIS_WAIT_REPLICAS=0``) the same run may show ``lost`` > 0 and
``duplicated`` = 0. Replication is asynchronous: a step acknowledged by the master and not yet
on the replica when the master dies is gone after the promotion (record, consumed id, outbox
and the settling of the outbox), yet its input message was acknowledged and its events were
published. Its replies then reach a workflow still in the previous state, which ignores them:
the workflow stalls without a completion, or (a lost final step) the client has the completion
while the record shows one transition fewer. Nothing is applied twice, because the emitted ids
are deterministic and every re-run produces the same ones. On this machine the replica lags by
well under a millisecond, so most such runs still print ``lost=0``: the window is small, not
closed. ``tests/integration/test_sentinel_state.py`` forces it: it shows an acknowledged write
without WAIT lost by a failover, and the same write with WAIT refused before publication.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tasks.store.connections import url_client
from tests.helpers.chaos import FAILOVER_SETTINGS, Cluster, run_through_failover
from tests.helpers.redis_server import RedisServer, start_or_fail
from tests.helpers.sentinel import start_sentinel_or_fail


@pytest.mark.timeout(480)
def test_a_sentinel_failover_of_the_state_redis_loses_and_doubles_nothing_with_wait(
    tmp_path: Path, cluster_factory: Callable[..., Cluster]
) -> None:
    deployment = start_sentinel_or_fail(tmp_path / "sentinel", "The Sentinel failover scenario")
    broker = start_or_fail(RedisServer(tmp_path / "broker"), "The Sentinel failover scenario")
    client = url_client(deployment.url())  # follows the failover, like the workers' clients
    cluster = cluster_factory(deployment.url(), broker_url=broker.url(), **FAILOVER_SETTINGS)
    old_master, new_master = deployment.master, deployment.replica

    def fail() -> str:
        killed_at = time.monotonic()
        old_master.kill()
        promotion_s = deployment.wait_failover(new_master)
        old_master.start()  # back empty; Sentinel turns it into a replica of the new master
        deployment.wait_replica_in_sync(new_master, old_master)
        replica_back_s = time.monotonic() - killed_at
        return f"master-sigkill+promotion-in-{promotion_s:.1f}s+replica-back-after-{replica_back_s:.0f}s wait=1"

    try:
        run_through_failover(cluster, client, "sentinel-failover", fail, seed=61)
        assert deployment.master_port() == new_master.port
    finally:
        client.close()
        cluster.close()  # before the Redis servers go, so the workers shut down warmly
        print(deployment.log_tails())
        deployment.stop()
        broker.stop()
