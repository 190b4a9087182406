"""The container deployment, checked without Docker: docker-compose.yml, deploy/Dockerfile,
.dockerignore, and the image's health check run against a real admin port."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
import yaml

from durable_ingest.cli import _parser
from foundation.admin import AdminServer
from foundation.config import RuntimeSettings
from foundation.config_load import connector_settings, load_settings
from foundation.metrics import Metrics
from sink_workers import entry as sink_entry
from source_workers import entry as source_entry
from source_workers.connectors.coinbase.settings import CoinbaseSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$|CREDENTIAL", re.IGNORECASE)
ALLOWED_SECRET_DEFAULT = "${CLICKHOUSE_PASSWORD:-change-me}"


# --- helpers ---------------------------------------------------------------


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def services() -> dict[str, Any]:
    return compose()["services"]


def resolve(value: str, env: dict[str, str] | None = None) -> str:
    """Compose interpolation: ``${VAR:-default}``, ``${VAR}``, and ``$$`` for a literal ``$``."""
    env = env or {}

    def substitute(match: re.Match[str]) -> str:
        return env.get(match.group(1)) or (match.group(2) or "")

    return VARIABLE.sub(substitute, value.replace("$$", "\0")).replace("\0", "$")


def service_env(name: str) -> dict[str, str]:
    """A service's environment as a worker would see it (image ENV, then the compose file)."""
    environment = services()[name].get("environment") or {}
    assert isinstance(environment, dict), f"{name}: use the mapping form of environment"
    return {**image_env(), **{k: resolve(str(v)) for k, v in environment.items()}}


def instructions(text: str) -> list[tuple[str, str]]:
    """Dockerfile instructions as (KEYWORD, arguments), with ``\\`` continuations joined
    and comment lines (also inside continuations) dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        if full:
            keyword, _, arguments = full.partition(" ")
            result.append((keyword.upper(), arguments.strip()))
    assert not pending, "the Dockerfile ends inside a continuation"
    return result


def stages() -> list[tuple[str, list[tuple[str, str]]]]:
    """Each stage's name (its ``AS``, else its index) and instructions, in order."""
    found: list[tuple[str, list[tuple[str, str]]]] = []
    for keyword, arguments in instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            words = arguments.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(found))
            found.append((name, []))
        if found:  # before the first FROM: global ARGs
            found[-1][1].append((keyword, arguments))
    return found


def effective(name: str | None = None) -> list[tuple[str, str]]:
    """What a build target (default: the last stage) runs, following ``FROM <stage>`` to the
    stage it builds on: that stage's instructions first, then its own."""
    named = dict(stages())
    steps = named[name] if name is not None else stages()[-1][1]
    base = steps[0][1].split()[0]
    if base in named:
        return [*effective(base), *steps[1:]]
    return steps


def final_stage() -> list[tuple[str, str]]:
    """The default target, as built: ``docker build -f deploy/Dockerfile .``."""
    return effective()


def only(stage: list[tuple[str, str]], keyword: str) -> str:
    found = [arguments for k, arguments in stage if k == keyword]
    assert len(found) == 1, f"expected one {keyword} in the final stage, found {len(found)}"
    return found[0]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, arguments in final_stage():
        if keyword == "ENV":
            env.update(dict(item.split("=", 1) for item in shlex.split(arguments)))
    return env


def healthcheck_command() -> list[str]:
    arguments = only(final_stage(), "HEALTHCHECK")
    options, _, command = arguments.partition("CMD ")
    assert options.strip().startswith("--") or not options.strip()
    parsed = json.loads(command)
    assert isinstance(parsed, list), "HEALTHCHECK CMD must use the exec (JSON) form"
    return parsed


def health_code() -> str:
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"]
    return command[2]


def exposed_port() -> int:
    return int(only(final_stage(), "EXPOSE").split("/")[0])


def ignored(path: str) -> bool:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return any(fnmatch(path, p) or fnmatch(path, p.removeprefix("**/")) for p in patterns)


# --- docker-compose.yml ----------------------------------------------------


def test_kafka_runs_in_kraft_mode() -> None:
    """Apache Kafka as broker and controller with a controller quorum, and no ZooKeeper."""
    kafka = services()["kafka"]
    env = {k: str(v) for k, v in kafka["environment"].items()}
    assert kafka["image"].startswith("apache/kafka:")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    port = re.search(rf"{controller}://:(\d+)", env["KAFKA_LISTENERS"])
    assert port is not None
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:{port[1]}"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # workers create their topics
    assert "kafka-data:/var/lib/kafka/data" in kafka["volumes"]
    assert env["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"  # the volume holds the data
    for where, value in walk_strings(compose()):  # no service, setting or value
        assert "zookeeper" not in f"{where}={value}".lower(), where


def test_clickhouse_server_matches_the_sink() -> None:
    """The sink's DSN, user and password are the ClickHouse server's."""
    clickhouse = services()["clickhouse"]
    assert clickhouse["image"].startswith("clickhouse/clickhouse-server:")
    sink = services()["sink"]["environment"]
    assert sink["INGEST_CLICKHOUSE_DSN"] == "http://clickhouse:8123"
    assert sink["INGEST_CLICKHOUSE_USERNAME"] == clickhouse["environment"]["CLICKHOUSE_USER"]
    assert sink["INGEST_CLICKHOUSE_PASSWORD"] == clickhouse["environment"]["CLICKHOUSE_PASSWORD"]
    # The entrypoint removes the "default" user once CLICKHOUSE_USER is set.
    assert "--user" in " ".join(clickhouse["healthcheck"]["test"])


def test_the_local_profile_needs_no_clickhouse_server() -> None:
    """Profile "local": one embedded sink (chDB on a volume, never scaled) and an offline
    source; neither needs the clickhouse service, and both are only in that profile."""
    local = {n: s for n, s in services().items() if "local" in s.get("profiles", [])}
    assert set(local) == {"sink-local", "coinbase-replay"}
    sink = local["sink-local"]
    assert sink["image"] == "durable-ingest:embedded" and sink["build"]["target"] == "embedded"
    assert sink["volumes"] == ["warehouse:/var/lib/durable-ingest"]
    assert "deploy" not in sink and "INGEST_CLICKHOUSE_DSN" not in sink["environment"]
    assert local["coinbase-replay"]["command"][:4] == ["source", "run", "coinbase", "--replay"]
    for service in local.values():
        assert set(service["depends_on"]) == {"kafka"}


def test_workers_one_source_and_two_scalable_sinks() -> None:
    """One coinbase source (a source is one connection) and a sink service with 2 replicas
    that `--scale` can change: no fixed container name, no host port."""
    workers_ = {n: s for n, s in services().items() if s.get("image", "").startswith("durable")}
    commands = {n: s["command"][:2] for n, s in workers_.items() if "profiles" not in s}
    assert commands == {"coinbase-source": ["source", "run"], "sink": ["sink", "run"]}
    assert services()["coinbase-source"].get("deploy", {}).get("replicas", 1) == 1
    sink = services()["sink"]
    assert sink["deploy"]["replicas"] == 2
    for service in workers_.values():
        assert "container_name" not in service
        assert "ports" not in service
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]).is_file()


@pytest.mark.parametrize(
    ("name", "handler", "source"),
    [("coinbase-source", source_entry.handle, "coinbase"), ("sink", sink_entry.handle, "coinbase")],
)
def test_worker_commands_parse_with_the_real_cli(name: str, handler: Any, source: str) -> None:
    """The entry points exist: each command is what `ingest` parses, with the admin port
    the health check asks on every interface."""
    service = services()[name]
    args = _parser().parse_args(service["command"])
    assert args.handler is handler
    assert args.source == source
    assert args.admin_host == "0.0.0.0"
    assert args.admin_port == int(service_env(name)["ADMIN_PORT"]) == exposed_port()


def test_worker_environment_is_accepted_by_load_settings() -> None:
    """Every INGEST_* name the image and the compose file set is a setting, and the values
    come through: the workers would not stop on an unknown variable."""
    source = load_settings(ROOT / "ingest.toml", env=service_env("coinbase-source"))
    assert source.kafka.bootstrap == "kafka:9092"
    assert source.data_dir == Path("/var/lib/durable-ingest")
    sink = load_settings(ROOT / "ingest.toml", env=service_env("sink"))
    assert sink.kafka.bootstrap == "kafka:9092"
    assert sink.clickhouse.dsn == "http://clickhouse:8123"
    assert sink.clickhouse.username == "ingest"
    assert sink.clickhouse.password is not None
    assert sink.clickhouse.password.get_secret_value() == "change-me"


def test_connector_environment_is_coinbase_settings() -> None:
    """COINBASE_* variables of the source service are connector settings and validate."""
    env = service_env("coinbase-source")
    names = {n for n in env if n.startswith("COINBASE_")}
    assert names <= {f"COINBASE_{f.upper()}" for f in CoinbaseSettings.model_fields}
    assert connector_settings(CoinbaseSettings, "COINBASE", env).products == ("BTC-USD", "ETH-USD")


def test_every_service_has_a_healthcheck_and_restarts() -> None:
    """Healthchecks everywhere; the workers' is the image's own one-liner."""
    for name, service in services().items():
        assert service["healthcheck"]["test"], name
        assert service["restart"] == "unless-stopped", name
    for name in ("coinbase-source", "sink"):
        assert services()[name]["healthcheck"]["test"] == ["CMD", *healthcheck_command()]


def test_workers_wait_for_healthy_dependencies() -> None:
    """Sources wait for Kafka, sinks for Kafka and ClickHouse, to be healthy."""
    expected = {"coinbase-source": {"kafka"}, "sink": {"kafka", "clickhouse"}}
    for name, dependencies in expected.items():
        depends = services()[name]["depends_on"]
        assert set(depends) == dependencies
        assert all(d["condition"] == "service_healthy" for d in depends.values())


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration))


def test_stop_grace_period_outlasts_a_clean_shutdown() -> None:
    """Docker waits longer than a source's shutdown timeout before SIGKILL; sinks get at
    least 30 s to finish and commit their batch."""
    source_grace = seconds(services()["coinbase-source"]["stop_grace_period"])
    assert source_grace > RuntimeSettings().shutdown_timeout_s
    assert seconds(services()["sink"]["stop_grace_period"]) >= 30


def walk_strings(value: Any, where: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk_strings(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk_strings(item, f"{where}[{index}]")
    elif value is not None:
        yield where, str(value)


def test_no_secret_is_hard_coded_in_compose() -> None:
    """A secret-named variable is the documented `${CLICKHOUSE_PASSWORD:-change-me}`, and a
    command-line password comes from the container's environment."""
    for where, value in walk_strings(compose()):
        key = where.rsplit(".", 1)[-1]
        if SECRET_NAME.search(key):
            assert value == ALLOWED_SECRET_DEFAULT, f"{where} = {value!r}"
        for password in re.findall(r"--password[ =]\"?([^\s\"]+)", value):
            assert password.startswith("$$"), f"{where}: a literal password"


# --- deploy/Dockerfile -----------------------------------------------------


def test_image_is_python_slim_and_installs_the_project_without_embedded() -> None:
    """Python 3.11+ slim; the project is built into a wheel and installed, no [embedded] in
    the default target; the "embedded" target adds it (chDB) to the same image."""
    text = DOCKERFILE.read_text()
    steps = instructions(text)
    names = {name for name, _ in stages()}
    args = dict(a.split("=", 1) for k, a in steps if k == "ARG" and "=" in a)
    for keyword, arguments in steps:
        if keyword == "FROM" and arguments.split()[0] not in names:
            image = resolve(arguments.split()[0], args)
            name, _, tag = image.partition(":")
            assert name == "python" and tag.endswith("-slim"), image
            assert tuple(map(int, tag.removesuffix("-slim").split("."))) >= (3, 11)
    named = dict(stages())
    build = " ".join(a for k, a in named["build"] if k == "RUN")
    assert "pip install ." in build and "embedded" not in build
    copies = [a for k, a in final_stage() if k == "COPY" and a.startswith("--from=")]
    assert copies == ["--from=build /opt/durable-ingest /opt/durable-ingest"]
    assert "pip install '.[embedded]'" in " ".join(
        a for k, a in named["build-embedded"] if k == "RUN"
    )
    embedded = effective("embedded")
    assert embedded[-1] == ("COPY", "--from=build-embedded /opt/durable-ingest /opt/durable-ingest")
    assert [a for k, a in embedded if k == "USER"][-1] == "10001:10001"
    assert image_env()["PATH"].startswith("/opt/durable-ingest/bin:")
    assert image_env()["PYTHONUNBUFFERED"] == "1"


def test_user_is_non_root_and_set_before_the_entrypoint() -> None:
    """A fixed non-zero UID, set before ENTRYPOINT ["ingest"]; a default CMD `ingest` parses."""
    stage = final_stage()
    keywords = [k for k, _ in stage]
    user = only(stage, "USER").split(":")[0]
    assert user.isdigit() and int(user) > 0
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")
    assert json.loads(only(stage, "ENTRYPOINT")) == ["ingest"]
    _parser().parse_args(json.loads(only(stage, "CMD")))


def test_data_dir_and_config_are_where_the_image_says() -> None:
    """WORKDIR is the data directory (owned by the user); INGEST_CONFIG is the copied file."""
    stage = final_stage()
    env = image_env()
    assert only(stage, "WORKDIR") == env["INGEST_DATA_DIR"]
    runs = " ".join(a for k, a in stage if k == "RUN")
    assert f"chown ingest:ingest {env['INGEST_DATA_DIR']}" in runs
    copies = [shlex.split(a) for k, a in stage if k == "COPY" and not a.startswith("--")]
    assert ["ingest.toml", env["INGEST_CONFIG"]] in copies


def test_healthcheck_is_valid_python_on_the_exposed_port() -> None:
    """The one-liner compiles, reads ADMIN_PORT, and defaults to the EXPOSEd port."""
    code = health_code()
    compile(code, "<healthcheck>", "exec")
    default = re.search(r"os\.environ\.get\('ADMIN_PORT', '(\d+)'\)", code)
    assert default is not None
    assert int(default[1]) == exposed_port() == int(image_env()["ADMIN_PORT"])


def test_copied_files_exist_and_are_not_ignored() -> None:
    """Every COPY source (from the build context) exists and .dockerignore keeps it."""
    copies = [
        shlex.split(a)
        for k, a in instructions(DOCKERFILE.read_text())
        if k == "COPY" and "--from" not in a
    ]
    assert copies
    for *sources, _ in copies:
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not ignored(source), f"{source} is excluded by .dockerignore"


def test_dockerignore_keeps_local_state_out() -> None:
    """The virtualenv, data dir, git metadata, caches, tests and bench stay out of the context."""
    for path in (".venv", ".ingest", ".git", ".mypy_cache", "tests", "bench", ".env"):
        assert ignored(path), path
    assert ignored("staging/__pycache__")


def test_no_secret_in_the_image() -> None:
    """No ENV or ARG names a secret."""
    for keyword, arguments in instructions(DOCKERFILE.read_text()):
        if keyword in ("ENV", "ARG"):
            for item in shlex.split(arguments):
                assert not SECRET_NAME.search(item.split("=", 1)[0]), item


# --- the health check against a real admin port ------------------------------


def run_healthcheck(port: int) -> int:
    env = {**os.environ, "ADMIN_PORT": str(port)}
    done = subprocess.run(
        [sys.executable, "-c", health_code()], env=env, capture_output=True, timeout=30
    )
    return done.returncode


def test_healthcheck_passes_when_healthy_and_fails_otherwise() -> None:
    """Exit 0 while /health answers 200; non-zero on 503 and when nothing listens."""
    state = {"healthy": True}
    server = AdminServer(Metrics(), lambda: dict(state), port=0)
    try:
        assert run_healthcheck(server.port) == 0
        state["healthy"] = False
        assert run_healthcheck(server.port) != 0
    finally:
        server.close()
    assert run_healthcheck(server.port) != 0
