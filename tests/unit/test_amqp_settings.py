"""A RabbitMQ broker URL: how it is read, and the Celery configuration it gives.

The URL parser is checked by example and by property (any user, password and virtual host
quoted into a URL come back out unchanged), and the configuration by what it must and must not
contain: publisher confirms, no Redis-only transport or options.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kombu.transport import pyamqp
from kombu.utils.imports import symbol_by_name
from pydantic import ValidationError

from config.settings import AMQP_PORT, AMQPS_PORT, BROKER_SCHEMES, Settings, parse_redis_url
from tasks.worker import kombu_amqp
from tasks.worker.celery_config import celery_config


@pytest.mark.parametrize(
    ("url", "host", "port", "vhost"),
    [
        ("amqp://guest:guest@127.0.0.1:5672//", "127.0.0.1", 5672, "/"),
        ("amqp://guest:guest@127.0.0.1:5672/", "127.0.0.1", 5672, "/"),
        ("amqp://rabbit", "rabbit", AMQP_PORT, "/"),
        ("amqps://rabbit/prod", "rabbit", AMQPS_PORT, "prod"),
        ("pyamqp://u:p@rabbit:5673/team%2Fa", "rabbit", 5673, "team/a"),
    ],
)
def test_an_amqp_broker_url_is_read_as_kombu_reads_it(url: str, host: str, port: int, vhost: str) -> None:
    endpoint = Settings(broker_url=url).broker
    assert endpoint.is_amqp
    assert (endpoint.host, endpoint.port, endpoint.path) == (host, port, vhost)


def test_an_amqp_url_names_a_broker_never_the_state() -> None:
    with pytest.raises(ValidationError, match="redis_url"):
        Settings(redis_url="amqp://guest:guest@127.0.0.1:5672//")


def test_an_amqp_url_without_a_host_is_refused_with_an_example() -> None:
    with pytest.raises(ValidationError, match="needs a host"):
        Settings(broker_url="amqp:///vhost")


_name = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20)


@given(user=_name, password=_name, vhost=_name)
def test_any_quoted_user_password_and_vhost_come_back_unchanged(user: str, password: str, vhost: str) -> None:
    url = f"amqp://{quote(user, safe='')}:{quote(password, safe='')}@rabbit:5672/{quote(vhost, safe='')}"
    endpoint = parse_redis_url(url, schemes=BROKER_SCHEMES)
    assert (endpoint.username, endpoint.password, endpoint.path) == (user, password, vhost)
    assert endpoint.redacted.startswith(f"amqp://{quote(user, safe='')}:***@rabbit:5672/")


def test_celery_config_for_rabbitmq_confirms_publishes_and_drops_redis_only_options() -> None:
    config = celery_config(Settings(broker_url="amqp://guest:guest@127.0.0.1:5672//"))
    assert config["broker_transport_options"] == {"confirm_publish": True}
    # kombu's py-amqp transport with batched confirms, not the Redis fork.
    assert symbol_by_name(config["broker_transport"]) is kombu_amqp.Transport
    assert issubclass(kombu_amqp.Transport, pyamqp.Transport)
    assert config["task_acks_late"] is True
    assert config["task_reject_on_worker_lost"] is True
    assert config["task_create_missing_queues"] is True
    assert set(config["accept_content"]) == {"msgpack", "json"}
    assert config["worker_prefetch_multiplier"] == 4  # amqp_prefetch_multiplier, see its docstring
