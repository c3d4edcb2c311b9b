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
* the Dockerfile the services build from exists, and so does everything it copies; it installs
  every package of pyproject.toml, non-editable;
* nothing clashes with or is exposed beyond the host: no service publishes host port 6379 (a
  local Redis may hold it), and every published port is bound to 127.0.0.1;
* broker and state are one Redis database, the one of the README's defaults;
* healthchecks: redis, each worker pool (``celery inspect ping`` of its own node name) and
  flower (its ``/healthcheck`` URL, with python since the image has no curl);
* each pool has its own node name, containing ``%h`` so that replicas differ;
* Redis persists as docs/guarantees.md says: AOF with ``appendfsync always``;
* ``.dockerignore`` (evaluated with Docker's matching rules) keeps ``.venv``, ``.git``,
  ``__pycache__`` and ``bench/results`` out of the build context, and nothing the image copies;
* the README's docker-compose subsection uses the ports the stack publishes.
"""

from __future__ import annotations

import importlib
import os
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from celery.bin.celery import celery as celery_cli
from flower.options import options as flower_options
from flower.urls import handlers as flower_handlers

from config.settings import BROKER_SCHEMES, Settings, parse_redis_url
from orchestrator.memory.in_memory import InMemoryMachineMemory
from orchestrator.orchestrator import ArvoOrchestrator
from tasks.runtime import load_handlers

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
README = ROOT / "README.md"
GUARANTEES = ROOT / "docs" / "guarantees.md"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = ROOT / "pyproject.toml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


#: The deployments of the file: the default one, and each profile's.
DEPLOYMENTS = ("default", "rabbitmq", "cluster")


def deployment(compose: dict[str, Any], name: str) -> dict[str, dict[str, Any]]:
    """The services one deployment runs.

    ``default``: every service without a profile (``docker compose up``). A profile: its own
    services plus the default ones that are not Celery processes (Redis, Jaeger), which is what
    ``docker compose --profile <p> up <its services>`` starts with their dependencies.
    """
    every: dict[str, dict[str, Any]] = compose["services"]
    if name == "default":
        return {n: spec for n, spec in every.items() if not spec.get("profiles")}
    shared = {n: spec for n, spec in every.items() if not spec.get("profiles") and n not in _celery_services(every)}
    return shared | {n: spec for n, spec in every.items() if name in (spec.get("profiles") or ())}


@pytest.fixture(scope="module", params=DEPLOYMENTS)
def services(compose: dict[str, Any], request: pytest.FixtureRequest) -> dict[str, dict[str, Any]]:
    return deployment(compose, request.param)


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
    from tasks.worker.app import create_app

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


#: Flower's host port per deployment (the profile's is another, so both can run side by side).
FLOWER_HOST_PORTS = {"flower": "5555", "flower-amqp": "5556", "flower-cluster": "5557"}


def test_flower_is_published_on_its_documented_port(services: dict[str, dict[str, Any]]) -> None:
    flower = next(
        name for name, argv in _celery_services(services).items() if _split_celery(argv)[1] == "flower"
    )
    _, _, args = _split_celery(_argv(services[flower]))
    assert "--port=5555" in args
    assert ("127.0.0.1", FLOWER_HOST_PORTS[flower], "5555") in _published_ports(services[flower])


def test_jaeger_receives_otlp(services: dict[str, dict[str, Any]]) -> None:
    jaeger = services["jaeger"]
    assert "jaeger" in jaeger["image"]
    assert str(_worker_env(jaeger).get("COLLECTOR_OTLP_ENABLED")).lower() == "true"
    published = {(host, target) for _, host, target in _published_ports(jaeger)}
    assert {("4318", "4318"), ("16686", "16686")} <= published


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


# --- published ports ----------------------------------------------------------------------------


def _published_ports(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(host ip, host port, container port) of each published port; host ip "" means all interfaces.

    Both compose syntaxes: short (``"[ip:][host:]container[/proto]"``) and long (a mapping with
    ``host_ip``, ``published`` and ``target``). A bare container port is published on a random host
    port of every interface: (``""``, ``""``, container).
    """
    found = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            found.append((str(port.get("host_ip", "")), str(port.get("published", "")), str(port["target"])))
            continue
        spec = str(port).split("/", 1)[0]
        ip = ""
        if spec.startswith("["):  # [ipv6]:host:container
            ip, _, spec = spec[1:].partition("]:")
        parts = spec.split(":")
        if len(parts) == 3:
            ip, parts = parts[0], parts[1:]
        host, container = parts if len(parts) == 2 else ("", parts[0])
        found.append((ip, host, container))
    return found


def test_parsing_of_published_ports() -> None:
    ports = {"ports": ["6379", "6380:6379", "127.0.0.1:5555:5555/tcp", {"target": 1, "published": 2}]}
    assert _published_ports(ports) == [
        ("", "", "6379"),
        ("", "6380", "6379"),
        ("127.0.0.1", "5555", "5555"),
        ("", "2", "1"),
    ]


def test_no_service_publishes_host_port_6379(services: dict[str, dict[str, Any]]) -> None:
    """A Redis already running on the host owns 6379; the stack's Redis uses another host port."""
    for name, spec in services.items():
        for ip, host, container in _published_ports(spec):
            assert host != "6379", f"{name} publishes {ip}:{host}:{container}, clashing with a local Redis"
            assert host, f"{name} publishes {container} on a random host port"
    assert _published_ports(services["redis"]), "redis is not reachable from the host"


def test_every_published_port_is_bound_to_localhost(services: dict[str, dict[str, Any]]) -> None:
    published = [(name, port) for name, spec in services.items() for port in _published_ports(spec)]
    assert published
    for name, (ip, host, container) in published:
        assert ip == "127.0.0.1", f"{name} publishes {host}:{container} on {ip or 'every interface'}"


# --- broker and state -----------------------------------------------------------------------------


def _readme_default(variable: str) -> str:
    """The default of ``variable`` in the README's settings table."""
    match = re.search(
        rf"^\| `{variable}` \| `([^`]+)` \|", README.read_text(encoding="utf-8"), flags=re.MULTILINE
    )
    assert match, f"README documents no default for {variable}"
    return match.group(1)


def test_broker_and_state_are_the_readme_defaults_database(services: dict[str, dict[str, Any]]) -> None:
    broker_default = parse_redis_url(_readme_default("ORCH_BROKER_URL"), schemes=BROKER_SCHEMES)
    state_default = parse_redis_url(_readme_default("ORCH_REDIS_URL"))
    # The README's single-Redis default: one server, one database for both.
    assert (broker_default.port, broker_default.db) == (state_default.port, state_default.db)
    for name in _celery_services(services):
        env = _worker_env(services[name])
        broker = parse_redis_url(env["ORCH_BROKER_URL"], schemes=BROKER_SCHEMES)
        state = parse_redis_url(env["ORCH_REDIS_URL"])
        assert state.db == state_default.db, f"{name}: state database {state.db}"
        assert broker.host in services, f"{name}: {broker.host} is no service of the stack"
        if state.is_cluster:
            _check_cluster_state(services, name, state.nodes)
            assert not broker.is_amqp, f"{name}: the cluster profile keeps the Redis broker"
            assert broker.host not in {host for host, _ in state.nodes}, f"{name}: the broker is a cluster node"
            continue
        assert str(broker.port) in {c for _, _, c in _published_ports(services[broker.host])} | {"6379", "5672"}
        if broker.is_amqp:
            # RabbitMQ as the broker: a service of its own, and every pool of the deployment on it.
            assert broker.host != state.host, f"{name}: an AMQP broker is not the state Redis"
            assert "rabbitmq-diagnostics" in _healthcheck_argv(services[broker.host]), f"{broker.host}: no healthcheck"
            depends = services[name].get("depends_on") or {}
            assert depends.get(broker.host, {}).get("condition") == "service_healthy", f"{name}: starts before {broker.host}"
            continue
        assert broker.db == broker_default.db, f"{name}: broker database {broker.db}"
        assert (broker.host, broker.port) == (state.host, state.port), f"{name}: broker and state differ"


def _check_cluster_state(services: dict[str, dict[str, Any]], name: str, nodes: tuple[tuple[str, int], ...]) -> None:
    """A ``redis+cluster://`` state: its nodes are cluster-enabled services, created by a
    one-shot ``redis-cli --cluster create`` of 6 nodes (one replica each) the pool waits for."""
    for host, port in nodes:
        assert host in services, f"{name}: cluster node {host} is no service of the stack"
        argv = " ".join(_argv(services[host]))
        assert "--cluster-enabled yes" in argv, f"{host}: not a cluster node"
        assert port == 6379, f"{name}: {host}:{port}"
        assert "--appendfsync always" in argv, f"{host}: no appendfsync always"
    creators = [n for n, spec in services.items() if "--cluster create" in " ".join(_argv(spec))]
    assert len(creators) == 1, f"one service creates the cluster, got {creators}"
    create = " ".join(_argv(services[creators[0]]))
    assert "--cluster-replicas 1" in create
    members = sorted(n for n, spec in services.items() if "--cluster-enabled yes" in " ".join(_argv(spec)))
    assert len(members) == 6, members
    assert set(services[creators[0]]["depends_on"]) == set(members)
    depends = services[name].get("depends_on") or {}
    assert depends.get(creators[0], {}).get("condition") == "service_completed_successfully", f"{name}: starts before the cluster"


# --- healthchecks ---------------------------------------------------------------------------------


def _duration_s(value: str) -> float:
    """A compose duration (``"1m30s"``, ``"500ms"``) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s|us)", str(value))
    assert parts, f"not a duration: {value}"
    assert "".join(n + u for n, u in parts) == str(value), f"not a duration: {value}"
    return sum(float(number) * units[unit] for number, unit in parts)


def _healthcheck_argv(service: dict[str, Any]) -> list[str]:
    """The command a healthcheck runs, after compose's ``$$`` unescaping; [] if there is none."""
    check = service.get("healthcheck") or {}
    if check.get("disable"):
        return []
    test = check.get("test", [])
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    test = [str(part).replace("$$", "$") for part in test]
    if not test or test[0] == "NONE":
        return []
    if test[0] == "CMD-SHELL":
        return shlex.split(" ".join(test[1:]))
    assert test[0] == "CMD", f"healthcheck test must start with CMD, CMD-SHELL or NONE: {test}"
    return test[1:]


def _worker_nodes(services: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Service name → the node name (``-n``) of each worker pool."""
    nodes = {}
    for name, argv in _celery_services(services).items():
        _, subcommand, args = _split_celery(argv)
        if subcommand == "worker":
            nodes[name] = _worker_options(args).get("hostname", "")
    return nodes


def test_redis_and_flower_and_every_pool_have_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    flower = [name for name, argv in _celery_services(services).items() if _split_celery(argv)[1] == "flower"]
    checked = ["redis", *_worker_nodes(services), *flower]
    assert len(checked) >= 4
    for name in checked:
        assert _healthcheck_argv(services[name]), f"{name} has no healthcheck"
        check = services[name]["healthcheck"]
        for key in ("interval", "timeout", "start_period"):
            if key in check:
                assert _duration_s(check[key]) > 0, f"{name}: {key}"
    assert _healthcheck_argv(services["redis"])[:2] == ["redis-cli", "ping"]


def test_each_pool_healthcheck_pings_its_own_node(services: dict[str, dict[str, Any]]) -> None:
    inspect = celery_cli.commands["inspect"]
    inspect_options = {opt: param for param in inspect.params for opt in param.opts}
    nodes = _worker_nodes(services)
    assert nodes
    for name, node in nodes.items():
        argv = _healthcheck_argv(services[name])
        app = _split_celery(_argv(services[name]))[0].get("-A")
        global_opts, subcommand, args = _split_celery(argv)
        assert global_opts.get("-A") == app, f"{name}: the healthcheck loads another app"
        assert (subcommand, args[:1]) == ("inspect", ["ping"]), f"{name}: {argv}"
        options: dict[str, str] = {}
        rest = args[1:]
        while rest:
            option = rest.pop(0)
            assert option in inspect_options, f"{name}: celery inspect has no option {option}"
            options[inspect_options[option].name] = rest.pop(0)
        # %h is the container's hostname, which is $HOSTNAME in the container's shell.
        assert options.get("destination", "").replace("$HOSTNAME", "%h") == node, (
            f"{name}: the healthcheck pings {options.get('destination')}, the worker is {node}"
        )
        assert "timeout" in options, f"{name}: inspect ping without --timeout"
        assert float(options["timeout"]) < _duration_s(services[name]["healthcheck"]["timeout"]), (
            f"{name}: the healthcheck is killed before inspect ping gives up"
        )


def test_flower_healthcheck_fetches_its_healthcheck_url(services: dict[str, dict[str, Any]]) -> None:
    flower = next(
        name for name, argv in _celery_services(services).items() if _split_celery(argv)[1] == "flower"
    )
    _, _, args = _split_celery(_argv(services[flower]))
    port = next(arg.partition("=")[2] for arg in args if arg.startswith("--port="))
    argv = _healthcheck_argv(services[flower])
    assert argv[:2] == ["python", "-c"], f"the image has python, not curl: {argv}"
    urls = re.findall(r"urlopen\(['\"]([^'\"]+)['\"]", argv[2])
    assert urls == [f"http://127.0.0.1:{port}/healthcheck"], argv[2]
    # Flower's routes are URLSpecs or (pattern, handler) tuples.
    patterns = [route.regex.pattern if hasattr(route, "regex") else route[0] for route in flower_handlers]
    assert any(re.fullmatch(pattern.rstrip("$"), "/healthcheck") for pattern in patterns), "no /healthcheck"
    compile(argv[2], "healthcheck", "exec")


# --- node names -----------------------------------------------------------------------------------


def test_each_pool_has_its_own_node_name(services: dict[str, dict[str, Any]]) -> None:
    nodes = _worker_nodes(services)
    assert len(nodes) >= 2
    for name, node in nodes.items():
        assert re.fullmatch(r"[\w.-]+@%h", node), f"{name}: node name {node!r} is not <pool>@%h"
    pools = [node.split("@")[0] for node in nodes.values()]
    assert len(set(pools)) == len(pools), f"pools share a node name: {sorted(nodes.values())}"


# --- persistence ----------------------------------------------------------------------------------


def test_redis_fsyncs_as_the_guarantees_promise(services: dict[str, dict[str, Any]]) -> None:
    assert "`appendfsync always`" in GUARANTEES.read_text(encoding="utf-8")
    argv = _argv(services["redis"])
    assert argv[argv.index("--appendonly") + 1] == "yes"
    assert argv[argv.index("--appendfsync") + 1] == "always"
    if "--maxmemory-policy" in argv:
        assert argv[argv.index("--maxmemory-policy") + 1] == "noeviction"


# --- .dockerignore --------------------------------------------------------------------------------


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    """Docker's (moby/patternmatcher) translation of one pattern: ``**`` spans directories,
    ``*`` and ``?`` stay within one, ``[...]`` is a class and ``\\`` escapes."""
    out, index = "", 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            out, index = out + "(.*/)?", index + 3
            continue
        if pattern.startswith("**", index):
            out, index = out + ".*", index + 2
            continue
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[":
            end = pattern.index("]", index + 1)
            out += "[" + pattern[index + 1 : end].replace("\\", "\\\\") + "]"
            index = end
        elif char == "\\" and index + 1 < len(pattern):
            index += 1
            out += re.escape(pattern[index])
        else:
            out += re.escape(char)
        index += 1
    return re.compile(out + r"\Z")


def _dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(is an exception ``!``, regex) for each rule of .dockerignore, in order."""
    rules = []
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line[1:].strip() if negate else line).lstrip("/")
        rules.append((negate, _dockerignore_regex(pattern)))
    return rules


def _ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether Docker leaves ``path`` (relative to the context) out: the last rule matching it or
    one of its parent directories decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for negate, regex in rules:
        if any(regex.match(prefix) for prefix in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_matching_follows_docker() -> None:
    rules = [
        (False, _dockerignore_regex(p)) for p in (".venv", "**/__pycache__", "bench/results", "*.egg-info")
    ]
    assert _ignored(".venv/lib/site.py", rules)
    assert _ignored("__pycache__/a.pyc", rules)
    assert _ignored("tasks/sub/__pycache__/a.pyc", rules)
    assert _ignored("bench/results/run.json", rules)
    assert _ignored("x.egg-info/PKG-INFO", rules)
    assert not _ignored("tasks/.venv", rules[2:])
    assert not _ignored("bench/results.py", rules)
    assert not _ignored("tasks/app.py", rules)
    assert not _ignored("src/x.egg-info", rules)
    assert not _ignored(
        "bench/results/baseline.json", [*rules, (True, _dockerignore_regex("bench/results/baseline*"))]
    )


def _dockerfile_copies(services: dict[str, dict[str, Any]]) -> list[tuple[Path, str, Path, list[str]]]:
    """(context, Dockerfile text, Dockerfile, COPY sources) of every service's build."""
    found = []
    for build in [spec["build"] for spec in services.values() if "build" in spec]:
        context = ROOT / (build.get("context", ".") if isinstance(build, dict) else build)
        dockerfile = context / (
            build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
        )
        text = dockerfile.read_text(encoding="utf-8")
        sources = [
            source
            for line in text.splitlines()
            if (parts := line.split())
            and parts[0].upper() == "COPY"
            and not any(p.startswith("--") for p in parts[1:])
            for source in parts[1:-1]
        ]
        found.append((context, text, dockerfile, sources))
    return found


def test_dockerignore_keeps_junk_out_and_what_the_image_copies_in(
    services: dict[str, dict[str, Any]],
) -> None:
    assert DOCKERIGNORE.is_file(), ".dockerignore is missing: .venv and .git go into every build"
    rules = _dockerignore_rules()
    for path in (
        ".venv",
        ".venv/bin/python",
        ".git",
        ".git/HEAD",
        "__pycache__",
        "tasks/__pycache__/app.pyc",
        "orchestrator/memory/__pycache__/x.pyc",
        "bench/results",
        "bench/results/distributed.json",
    ):
        assert _ignored(path, rules), f".dockerignore lets {path} into the build context"
    for context, _, dockerfile, sources in _dockerfile_copies(services):
        assert context == ROOT, "the rules are checked against the repository root as context"
        assert sources
        for source in sources:
            assert not _ignored(source, rules), (
                f".dockerignore excludes {source}, which {dockerfile.name} copies"
            )
            files = (
                [source]
                if (ROOT / source).is_file()
                else [
                    str(p.relative_to(ROOT))
                    for p in (ROOT / source).rglob("*")
                    if p.suffix in (".py", ".lua") and "__pycache__" not in p.parts
                ]
            )
            for path in files:
                assert not _ignored(path, rules), f".dockerignore excludes {path}, which the image needs"


def test_the_image_installs_every_package_non_editable(services: dict[str, dict[str, Any]]) -> None:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    includes = project["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*").rstrip(".") for pattern in includes}
    assert packages
    for _, text, dockerfile, sources in _dockerfile_copies(services):
        copied = {source.rstrip("/") for source in sources}
        assert packages <= copied, f"{dockerfile.name} does not copy {sorted(packages - copied)}"
        assert {"pyproject.toml", project["project"]["readme"]} <= copied
        installs = [line for line in text.splitlines() if re.search(r"\bpip install\b", line)]
        assert installs, f"{dockerfile.name} installs nothing"
        for line in installs:
            assert not re.search(r"\s(-e|--editable)\b", line), f"editable install in the image: {line}"


# --- README ---------------------------------------------------------------------------------------


def test_readme_compose_section_uses_the_published_ports(services: dict[str, dict[str, Any]]) -> None:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^### With docker-compose\n(.*?)(?=^##)", text, flags=re.MULTILINE | re.DOTALL)
    assert match, "README has no '### With docker-compose' subsection"
    section = match.group(1)
    assert "docker compose up --build" in section
    redis_port = next(host for _, host, target in _published_ports(services["redis"]) if target == "6379")
    default_db = parse_redis_url(_readme_default("ORCH_REDIS_URL")).db
    urls = re.findall(r"(ORCH_\w+)=(redis://\S+)", section)
    assert {name for name, _ in urls} == {"ORCH_BROKER_URL", "ORCH_REDIS_URL"}, urls
    for _, url in urls:
        endpoint = parse_redis_url(url)
        assert (endpoint.host, endpoint.port, endpoint.db) == ("127.0.0.1", int(redis_port), default_db), url
    for name, spec in services.items():
        for _, host, _ in _published_ports(spec):
            assert re.search(rf"\b{host}\b", section), (
                f"README does not say that {name} uses host port {host}"
            )


def _package_data_glob(pattern: str) -> re.Pattern[str]:
    """A setuptools package-data glob: ``**`` spans directories, ``*`` and ``?`` stay in one."""
    out = ""
    for token in re.split(r"(\*\*/|\*\*|\*|\?)", pattern):
        out += {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(token, re.escape(token))
    return re.compile(out + r"\Z")


def _carried_as_package_data(path: Path) -> bool:
    """Whether a non-editable install copies ``path``: package-data of its package or one above."""
    setuptools = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["setuptools"]
    package_data: dict[str, list[str]] = setuptools.get("package-data", {})
    relative = path.relative_to(ROOT)
    for depth in range(1, len(relative.parts)):
        package = ".".join(relative.parts[:depth])
        inside = "/".join(relative.parts[depth:])
        for pattern in [*package_data.get(package, []), *package_data.get("*", [])]:
            if _package_data_glob(pattern).match(inside):
                return True
    return False


def test_the_installed_packages_carry_their_lua_scripts() -> None:
    """A non-editable install copies only .py files and package-data: every Lua script the runtime
    loads must be package data of its package (or of a package above it)."""
    setuptools = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["setuptools"]
    packages = {pattern.rstrip("*").rstrip(".") for pattern in setuptools["packages"]["find"]["include"]}
    scripts = [path for package in packages for path in (ROOT / package).rglob("*.lua")]
    assert scripts, "no Lua scripts found: the check has nothing to check"
    for script in scripts:
        assert _carried_as_package_data(script), (
            f"{script.relative_to(ROOT)} is not package-data in pyproject.toml: the image would lack it"
        )


def test_the_installed_dashboard_carries_its_templates_and_static_files() -> None:
    """``python -m cli ui`` reads its templates, script, stylesheet and the vendored Mermaid from
    its package folder: all of them must be package data, or an installed dashboard has no pages."""
    dashboard = ROOT / "cli" / "dashboard"
    files = [path for folder in ("templates", "static") for path in (dashboard / folder).rglob("*") if path.is_file()]
    assert any(path.name == "mermaid.min.js" for path in files), "the vendored Mermaid is missing"
    for path in files:
        assert _carried_as_package_data(path), (
            f"{path.relative_to(ROOT)} is not package-data in pyproject.toml: an installed dashboard would lack it"
        )
