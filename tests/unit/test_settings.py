"""Settings from the environment, URL parsing, and the Celery configuration derived from them."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest
from kombu.utils.imports import symbol_by_name
from pydantic import ValidationError

from config.settings import BROKER_SCHEMES, Settings, parse_redis_url, redact_url
from tasks.store import keys
from tasks.worker.celery_config import celery_config
from tasks.worker.consumer import DeadLetteringConsumer
from tasks.worker.kombu_redis import Transport as ReliableRedisTransport

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clean_orch_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests set exactly the ORCH_* variables they need."""
    for name in list(os.environ):
        if name.upper().startswith("ORCH_"):
            monkeypatch.delenv(name)


def test_defaults_are_valid_and_local() -> None:
    settings = Settings()
    assert settings.broker_url == "redis://127.0.0.1:6379/0"
    assert settings.redis_url == settings.broker_url
    assert settings.handlers == "examples.registry:build"
    assert settings.max_event_bytes == 1024 * 1024
    assert settings.lock_auto_renewal is True
    assert settings.result_backend is None


def test_env_prefix_reads_every_kind_of_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_LOCK_EXPIRE_S", "7")
    monkeypatch.setenv("ORCH_LOCK_AUTO_RENEWAL", "false")
    monkeypatch.setenv("orch_record_ttl_s", "60")  # case-insensitive, like pydantic-settings
    monkeypatch.setenv("ORCH_QUEUE_OVERRIDES", '{"com.value.read": "services"}')
    monkeypatch.setenv("ORCH_OTEL_EXPORTER", "file:/tmp/spans.jsonl")
    settings = Settings()
    assert settings.lock_expire_s == 7
    assert settings.lock_auto_renewal is False
    assert settings.record_ttl_s == 60
    assert settings.queue_for("com.value.read") == "services"
    assert settings.queue_for("arvo.orc.inc") == "arvo.orc.inc"
    assert str(settings.otel_file) == "/tmp/spans.jsonl"


def test_variables_without_the_prefix_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCK_EXPIRE_S", "9")
    assert Settings().lock_expire_s == 30


def test_unknown_orch_env_var_is_an_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_LOCK_EXPIRES", "5")
    with pytest.raises(ValidationError) as info:
        Settings()
    message = str(info.value)
    assert "Unknown environment variable(s) ORCH_LOCK_EXPIRES" in message
    assert "did you mean ORCH_LOCK_EXPIRE_S?" in message


def test_unknown_constructor_argument_is_an_error() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Settings(lock_expires=5)  # type: ignore[call-arg]


def test_url_with_password_and_tls_is_parsed_in_one_place() -> None:
    endpoint = parse_redis_url("rediss://app:s%40cret@cache.example:6380/3?ssl_cert_reqs=required")
    assert endpoint.scheme == "rediss"
    assert endpoint.tls is True
    assert (endpoint.host, endpoint.port, endpoint.db) == ("cache.example", 6380, 3)
    assert (endpoint.username, endpoint.password) == ("app", "s@cret")
    assert endpoint.query == {"ssl_cert_reqs": "required"}
    assert "s%40cret" not in endpoint.redacted
    assert "***" in endpoint.redacted

    bare = parse_redis_url("redis://:pw@10.0.0.5")
    assert (bare.host, bare.port, bare.db, bare.username, bare.password) == ("10.0.0.5", 6379, 0, None, "pw")
    assert bare.tls is False

    sock = parse_redis_url("unix:///run/redis.sock?db=2")
    assert (sock.path, sock.db, sock.host) == ("/run/redis.sock", 2, None)


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("http://localhost:6379/0", "scheme"),
        ("redis://localhost:notaport/0", "port"),
        ("redis://localhost:6379/zero", "database"),
        ("redis:///0", "host"),
    ],
)
def test_bad_urls_are_rejected(url: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_redis_url(url)


def test_memory_broker_is_allowed_for_the_broker_only() -> None:
    assert parse_redis_url("memory://", schemes=BROKER_SCHEMES).scheme == "memory"
    assert Settings(broker_url="memory://").broker.scheme == "memory"
    with pytest.raises(ValidationError, match="scheme"):
        Settings(redis_url="memory://")


def test_repr_never_shows_a_password() -> None:
    settings = Settings(
        broker_url="redis://:topsecret@h:1/0",
        redis_url="rediss://u:topsecret@h:2/1",
        result_backend="redis://:topsecret@h:3/2",
    )
    assert "topsecret" not in repr(settings)
    assert "topsecret" not in str(settings)
    assert redact_url("redis://:pw@h/0") == "redis://:***@h/0"


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"retry_backoff_min_s": 2.0, "retry_backoff_max_s": 1.0}, "retry_backoff_min_s"),
        ({"visibility_timeout_s": 5, "retry_backoff_max_s": 5.0}, "visibility_timeout_s"),
        ({"handlers": "examples.registry"}, "module:callable"),
        ({"otel_exporter": "jaeger"}, "otel_exporter"),
        ({"otel_exporter": "file:"}, "otel_exporter"),
        ({"prefetch_multiplier": 0}, "prefetch_multiplier"),
        ({"lock_expire_s": 0}, "lock_expire_s"),
        ({"queue_overrides": {"com.x": ""}}, "queue_overrides"),
        ({"log_level": "LOUD"}, "log_level"),
    ],
)
def test_inconsistent_values_are_rejected(overrides: dict[str, object], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        Settings(**overrides)  # type: ignore[arg-type]


def test_celery_config_never_accepts_pickle() -> None:
    config = celery_config(Settings(result_backend="redis://127.0.0.1:6379/1"))
    assert config["task_serializer"] == "msgpack"
    assert config["result_serializer"] == "msgpack"
    for key in ("accept_content", "result_accept_content"):
        assert sorted(config[key]) == ["json", "msgpack"]
    assert "pickle" not in repr(config)


def test_celery_config_delivers_at_least_once_and_stores_no_results() -> None:
    settings = Settings(
        visibility_timeout_s=120,
        unacked_restore_interval_s=3,
        unacked_restore_throttle=2,
        unacked_restore_mutex_s=7,
    )
    config = celery_config(settings)
    assert config["task_acks_late"] is True
    assert config["task_reject_on_worker_lost"] is True
    assert config["worker_prefetch_multiplier"] == 1
    assert config["worker_cancel_long_running_tasks_on_connection_loss"] is True
    assert config["broker_connection_retry_on_startup"] is True
    assert config["task_ignore_result"] is True
    assert "result_backend" not in config
    assert config["worker_send_task_events"] is True
    assert config["task_send_sent_event"] is True
    assert config["broker_transport_options"] == {
        "visibility_timeout": 120,
        "unacked_restore_interval": 3,
        "unacked_restore_throttle": 2,
        "unacked_mutex_expire": 7,
        "dead_letter_stream": keys.DEAD_LETTER_STREAM,
        "dead_letter_maxlen": settings.stream_maxlen,
    }
    assert symbol_by_name(config["broker_transport"]) is ReliableRedisTransport  # reserves atomically


@pytest.mark.parametrize("broker_url", ["redis://127.0.0.1:6379/0", "amqp://guest:guest@127.0.0.1:5672//"])
def test_celery_config_is_data_that_inspect_conf_and_flower_can_send(broker_url: str) -> None:
    # `celery inspect conf` and Flower's Config tab send the configuration in msgpack: a class
    # in it (the consumer, the transport) made both fail with an EncodeError.
    config = celery_config(Settings(broker_url=broker_url))
    assert msgpack.unpackb(msgpack.packb(config)) == config
    assert symbol_by_name(config["worker_consumer"]) is DeadLetteringConsumer


def test_celery_config_is_a_fresh_dict_each_time() -> None:
    settings = Settings()
    first = celery_config(settings)
    first["broker_transport_options"]["visibility_timeout"] = 1
    assert celery_config(settings)["broker_transport_options"]["visibility_timeout"] == 300


def test_tls_broker_and_backend_verify_certificates() -> None:
    config = celery_config(Settings(broker_url="rediss://h:6380/0", result_backend="rediss://h:6380/1"))
    assert config["broker_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert config["redis_backend_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    explicit = celery_config(Settings(broker_url="rediss://h:6380/0?ssl_cert_reqs=none"))
    assert "broker_use_ssl" not in explicit


def test_create_app_uses_only_the_derived_config() -> None:
    from tasks.worker.app import create_app, settings_of

    settings = Settings(broker_url="redis://127.0.0.1:1/0")
    app = create_app(settings)
    assert settings_of(app) is settings
    for key, value in celery_config(settings).items():
        assert app.conf[key] == value
    assert "tasks.ping" in app.tasks
    assert app.tasks["tasks.ping"].app is app


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("ORCH_")}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **env, "PYTHONPATH": str(REPO_ROOT)},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_importing_the_packages_reads_no_settings() -> None:
    # An unknown ORCH_ variable makes Settings() fail, so any import-time read would show; the
    # first use of the app's configuration reads them (and fails, naming the variable).
    result = _run(
        "import tasks, tasks.celery, tasks.runtime, tasks.client, tasks.store.memory, tasks.worker.app\n"
        "import config, config.logging, tasks.worker.celery_config\n"
        "print('imported')\n"
        "try:\n    tasks.app.conf.broker_url\nexcept Exception as exc:\n    print(type(exc).__name__)\n",
        ORCH_NOT_A_SETTING="1",
    )
    assert result.stdout.split() == ["imported", "ValidationError"], result.stderr


def test_celery_finds_tasks_app_and_execute_is_its_task() -> None:
    result = _run(
        "import tasks\n"
        "from tasks import app, execute\n"
        "from celery import Celery\n"
        "from celery.app.utils import find_app\n"
        "print(isinstance(app, Celery), find_app('tasks') is app, execute.name, execute.app is app,\n"
        "      'tasks.ping' in app.tasks)\n",
        ORCH_BROKER_URL="redis://127.0.0.1:1/0",
    )
    assert result.stdout.split() == ["True", "True", "tasks.execute", "True", "True"], result.stderr
