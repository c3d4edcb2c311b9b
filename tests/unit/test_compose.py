"""docker-compose.yml describes the documented stack and every command in it is real.

There is no Docker engine here, so the file is parsed (PyYAML) and checked against the code:

* services: ``redis`` with append-only persistence on a volume, an orchestrator worker pool, a
  service worker pool, ``flower`` on port 5555 and ``jaeger`` receiving OTLP (the workers'
  ``ORCH_OTEL_ENDPOINT`` points at it);
* every command that runs ``celery``: its ``-A`` module imports (importlib), its subcommand is a
  registered celery subcommand (``flower`` comes from the flower package), every option of a
  ``worker`` command is an option of ``celery worker`` and every option of ``flower`` a Flower
  option; the ``-Q`` queues of the pools are destinations of ``examples.registry.build(...)``
  handlers (built over an ``InMemoryMachineMemory``): orchestrators in one pool, services in the
  other, every destination served by some pool;
* the workers' environment is valid :class:`~config.settings.Settings` (unknown ``ORCH_*`` keys
  are errors) and the Celery app builds from it (no connection is opened);
* the Dockerfile the services build from exists, and so does everything it copies.
"""

from __future__ import annotations

import importlib
import os
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from celery.bin.celery import celery as celery_cli
from flower.options import options as flower_options

from config.settings import Settings
from orchestrator.memory.in_memory import InMemoryMachineMemory
from orchestrator.orchestrator import ArvoOrchestrator
from tasks.runtime import load_handlers

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]  # type: ignore[no-any-return]


def _argv(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def _celery_services(services: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    return {name: argv for name, spec in services.items() if (argv := _argv(spec)) and argv[0] == "celery"}


def _split_celery(argv: list[str]) -> tuple[dict[str, str], str, list[str]]:
    """``celery <global options> <subcommand> <args>`` → (global options, subcommand, args)."""
    global_opts: dict[str, str] = {}
    takes_value = {
        opt for param in celery_cli.params if not getattr(param, "is_flag", False) for opt in param.opts
    }
    index = 1
    while index < len(argv) and argv[index].startswith("-"):
        name, eq, value = argv[index].partition("=")
        if not eq and name in takes_value:
            index += 1
            value = argv[index]
        global_opts[name] = value
        index += 1
    assert index < len(argv), f"no subcommand in {argv}"
    return global_opts, argv[index], argv[index + 1 :]


def _worker_options(args: list[str]) -> dict[str, str]:
    """Options of a ``celery worker`` command, checked against the real click command."""
    command = celery_cli.commands["worker"]
    params = {opt: param for param in command.params for opt in param.opts}
    found: dict[str, str] = {}
    index = 0
    while index < len(args):
        name, eq, value = args[index].partition("=")
        assert name in params, f"celery worker has no option {name}"
        param = params[name]
        if not eq and not getattr(param, "is_flag", False):
            index += 1
            value = args[index]
        found[param.name] = value
        index += 1
    return found


def _worker_env(spec: dict[str, Any]) -> dict[str, str]:
    env = spec.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


@pytest.fixture(scope="module")
def destinations() -> tuple[set[str], set[str]]:
    """(orchestrator destinations, service destinations) of the examples' registry."""
    handlers = load_handlers("examples.registry:build")(InMemoryMachineMemory())
    orchestrators = {h.source for h in handlers if isinstance(h, ArvoOrchestrator)}
    return orchestrators, {h.source for h in handlers} - orchestrators


def test_the_stack_has_the_documented_services(services: dict[str, dict[str, Any]]) -> None:
    celery_services = _celery_services(services)
    subcommands = {name: _split_celery(argv)[1] for name, argv in celery_services.items()}
    assert sorted(subcommands.values()).count("worker") >= 2
    assert "flower" in subcommands.values()
    assert {"redis", "jaeger"} <= set(services)


def test_redis_persists_to_a_volume(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    redis_service = services["redis"]
    argv = _argv(redis_service)
    assert argv[0] == "redis-server"
    assert argv[argv.index("--appendonly") + 1] == "yes"
    volumes = [str(v) for v in redis_service.get("volumes", [])]
    assert any(v.endswith(":/data") for v in volumes)
    for source in (v.split(":", 1)[0] for v in volumes):
        if not source.startswith((".", "/")):
            assert source in (compose.get("volumes") or {}), f"volume {source} is not declared"


def test_every_celery_command_refers_to_real_modules(services: dict[str, dict[str, Any]]) -> None:
    celery_services = _celery_services(services)
    assert celery_services
    for name, argv in celery_services.items():
        global_opts, subcommand, args = _split_celery(argv)
        app_module = global_opts.get("-A", global_opts.get("--app"))
        assert app_module, f"{name}: no -A"
        module = importlib.import_module(app_module.split(":")[0])
        assert hasattr(type(module), "app") or hasattr(module, "app"), f"{name}: {app_module} has no app"
        assert subcommand in celery_cli.commands, f"{name}: celery has no subcommand {subcommand}"
        if subcommand == "worker":
            _worker_options(args)
        if subcommand == "flower":
            assert celery_cli.commands["flower"].callback.__module__.startswith("flower.")
            known = set(flower_options.as_dict())
            for arg in args:
                assert arg.startswith("--"), f"{name}: flower takes --name=value options, got {arg}"
                option = arg[2:].partition("=")[0].replace("-", "_")
                assert option in known, f"{name}: flower has no option --{option}"


def test_worker_pools_serve_the_registry_destinations(
    services: dict[str, dict[str, Any]], destinations: tuple[set[str], set[str]]
) -> None:
    orchestrators, handlers = destinations
    pools: dict[str, set[str]] = {}
    for name, argv in _celery_services(services).items():
        _, subcommand, args = _split_celery(argv)
        if subcommand == "worker":
            queues = _worker_options(args).get("queues")
            assert queues, f"{name}: a worker pool must name its queues (-Q)"
            pools[name] = set(queues.split(","))
    assert pools
    for name, queues in pools.items():
        assert queues <= orchestrators | handlers, f"{name} consumes queues nobody publishes to"
    assert any(queues <= orchestrators for queues in pools.values()), "no orchestrator pool"
    assert any(queues <= handlers for queues in pools.values()), "no service pool"
    assert set().union(*pools.values()) == orchestrators | handlers, "a destination has no pool"


def test_worker_environment_is_valid_settings(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.app import create_app

    for name, argv in _celery_services(services).items():
        env = _worker_env(services[name])
        for key in [k for k in os.environ if k.upper().startswith("ORCH_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = Settings()
        app = create_app(settings)
        try:
            assert "tasks.execute" in app.tasks, name
        finally:
            app.close()
        load_handlers(settings.handlers)
        if settings.otel_exporter == "otlp":
            assert settings.otel_endpoint is not None, f"{name}: otlp without an endpoint"
            endpoint = urlsplit(settings.otel_endpoint)
            assert endpoint.hostname == "jaeger", name
            assert endpoint.port == 4318, name
        assert _split_celery(argv)[1] in celery_cli.commands


def test_flower_is_published_on_5555(services: dict[str, dict[str, Any]]) -> None:
    flower = next(
        name for name, argv in _celery_services(services).items() if _split_celery(argv)[1] == "flower"
    )
    _, _, args = _split_celery(_argv(services[flower]))
    assert "--port=5555" in args
    assert "5555:5555" in [str(p) for p in services[flower].get("ports", [])]


def test_jaeger_receives_otlp(services: dict[str, dict[str, Any]]) -> None:
    jaeger = services["jaeger"]
    assert "jaeger" in jaeger["image"]
    assert str(_worker_env(jaeger).get("COLLECTOR_OTLP_ENABLED")).lower() == "true"
    assert "4318:4318" in [str(p) for p in jaeger.get("ports", [])]


def test_builds_use_an_existing_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    builds = [spec["build"] for spec in services.values() if "build" in spec]
    assert builds
    for build in builds:
        context = ROOT / (build.get("context", ".") if isinstance(build, dict) else build)
        dockerfile = context / (
            build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
        )
        assert dockerfile.is_file(), dockerfile
        for line in dockerfile.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if parts and parts[0].upper() == "COPY" and not any(p.startswith("--") for p in parts[1:]):
                for source in parts[1:-1]:
                    assert (context / source).exists(), f"{dockerfile.name} copies missing {source}"
