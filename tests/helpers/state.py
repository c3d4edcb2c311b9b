"""Where the tests' workers keep state: the test Redis itself (default) or a Redis Cluster.

``ARVO_TEST_STATE=cluster`` runs the same end-to-end tests with the state on a Redis Cluster
the module starts (3 primaries, :mod:`tests.helpers.cluster`) and the broker on the module's
plain Redis (kombu has no cluster transport). The module fixture registers its cluster under
the broker Redis's URL, so every helper that derives a deployment from that URL
(:func:`tests.helpers.worker.orch_env`, :func:`tests.helpers.e2e.settings_for`) points the state
at the cluster.
"""

from __future__ import annotations

import os

from config.settings import Settings
from tasks.store.keys import KeySpace

#: Environment variable choosing where the tests keep state: ``redis`` (default) or ``cluster``.
TEST_STATE_ENV = "ARVO_TEST_STATE"
STATES = ("redis", "cluster")

#: The cluster URL of each module's broker Redis URL (cluster mode only).
_clusters: dict[str, str] = {}


def chosen_state() -> str:
    """``redis`` or ``cluster``, from :data:`TEST_STATE_ENV`; anything else is an error."""
    value = os.environ.get(TEST_STATE_ENV, "redis").strip().lower() or "redis"
    if value not in STATES:
        raise RuntimeError(f"{TEST_STATE_ENV} must be one of {', '.join(STATES)}, got {value!r}")
    return value


def register_cluster(redis_url: str, cluster_url: str) -> None:
    """State of the deployment whose broker is ``redis_url`` lives on ``cluster_url``."""
    _clusters[redis_url] = cluster_url


def forget_cluster(redis_url: str) -> None:
    """Undo :func:`register_cluster`."""
    _clusters.pop(redis_url, None)


def state_url_for(redis_url: str) -> str:
    """The state URL of the deployment whose broker is the Redis at ``redis_url``."""
    return _clusters.get(redis_url, redis_url)


def key_space_for_url(redis_url: str) -> KeySpace:
    """The key layout the workers of that deployment use (the settings' default shard count)."""
    return KeySpace(Settings(redis_url=state_url_for(redis_url)).redis_shard_count)
