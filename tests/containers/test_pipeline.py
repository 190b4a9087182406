"""The workers as containers on one private podman network: a Kafka container (the
stand-in image built from Apache Kafka's jars), a source container fed offline from the
capture the Coinbase connector ships (``source run --replay``), and sink containers. Rows
reach ClickHouse (chDB on a volume, in the image's embedded target); ``podman stop`` is a
clean stop; ``podman kill`` of the sink and a restart of the same container keep every
trade once; the health check tells a stuck worker; three sinks in one group deliver
everything."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from durable_ingest.loopback import free_port
from source_workers.replay_feed import sample_capture
from tests.containers.podman import EMBEDDED, IMAGE, Podman
from tests.helpers import trade_keys
from tests.integration.pipeline import read_topic
from tests.integration.source_helpers import wait_for

pytestmark = pytest.mark.containers
TRADES = trade_keys(sample_capture("coinbase"))
TOKEN = "container-test-token"


@dataclass
class Kafka:
    name: str
    internal: str
    """``<container>:9092``, for the workers on the network."""
    external: str
    """``127.0.0.1:<port>``, for this test."""


def start_kafka(podman: Podman, network: str) -> Kafka:
    """One KRaft node, configured through KAFKA_* variables as the apache/kafka image is."""
    name = podman.name("kafka")
    port = free_port()
    env = {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": "INTERNAL://:9092,EXTERNAL://:9094,CONTROLLER://:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"INTERNAL://{name}:9092,EXTERNAL://127.0.0.1:{port}",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": (
            "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT"
        ),
        "KAFKA_INTER_BROKER_LISTENER_NAME": "INTERNAL",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": f"1@{name}:9093",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
    }
    args = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
    podman.run(
        "kafka",
        "--network",
        network,
        "-p",
        f"127.0.0.1:{port}:9094",
        *args,
        f"docker.io/apache/kafka:{kafka_version()}",
    )
    wait_for(
        lambda: (
            podman(
                "exec",
                name,
                "/opt/kafka/bin/kafka-topics.sh",
                "--bootstrap-server",
                f"{name}:9092",
                "--list",
                check=False,
            ).returncode
            == 0
        ),
        90,
        "the Kafka container",
    )
    return Kafka(name, f"{name}:9092", f"127.0.0.1:{port}")


def kafka_version() -> str:
    from durable_ingest.apache_kafka.jars import kafka_version as pinned

    return pinned()


def worker(
    podman: Podman,
    what: str,
    network: str,
    kafka: Kafka,
    image: str,
    command: list[str],
    *extra: str,
) -> tuple[str, int]:
    """A worker container with its admin port published on 127.0.0.1; (name, port)."""
    port = free_port()
    name = podman.run(
        what,
        "--network",
        network,
        "-p",
        f"127.0.0.1:{port}:8080",
        "-e",
        "ADMIN_PORT=8080",
        "-e",
        f"INGEST_KAFKA_BOOTSTRAP={kafka.internal}",
        *extra,
        image,
        *command,
        "--admin-port",
        "8080",
        "--admin-host",
        "0.0.0.0",
    )
    return name, port


def metric(port: int, name: str) -> float:
    """The sum of a metric's samples on a worker's /metrics (0 when it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(f"ingest_{name}") and not line.startswith("#")
    )


def warehouse(podman: Podman, volume: str, query: str) -> list[list[object]]:
    """A read-only query on the chDB warehouse in ``volume`` (no sink holds it then)."""
    done = podman(
        "run",
        "--rm",
        "-v",
        f"{volume}:/var/lib/durable-ingest",
        EMBEDDED,
        "sql",
        query,
        "--format",
        "json",
    )
    rows: list[list[object]] = json.loads(done.stdout)["rows"]
    return rows


def rss_mib(podman: Podman, container: str) -> float:
    """Resident memory of a container's main process (as the host sees it), in MiB."""
    pid = int(podman.state(container)["Pid"])
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def stop(podman: Podman, container: str, grace_s: int) -> tuple[int, float]:
    """``podman stop`` (SIGTERM, then SIGKILL after ``grace_s``); exit code and seconds."""
    started = time.monotonic()
    podman("stop", "-t", str(grace_s), container, timeout=grace_s + 60)
    return podman.wait_exit(container), time.monotonic() - started


@dataclass
class Running:
    """A Kafka container, an embedded sink writing ``volume`` and a replaying source."""

    kafka: Kafka
    volume: str
    sink: str
    sink_port: int
    source: str
    source_port: int


def post_sql(port: int, query: str, token: str | None = None) -> tuple[int, str]:
    """``POST /sql`` from this host through the published port: inside the container the
    client is the network's gateway, not loopback. (HTTP status, body)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/sql", data=query.encode(), method="POST"
    )
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def start_pipeline(podman: Podman, speed: str, *sink_args: str) -> Running:
    network = podman.network()
    kafka = start_kafka(podman, network)
    volume = podman.volume("warehouse")
    sink, sink_port = worker(
        podman,
        "sink",
        network,
        kafka,
        EMBEDDED,
        ["sink", "run", "--source", "coinbase"],
        "-v",
        f"{volume}:/var/lib/durable-ingest",
        *sink_args,
    )
    source, source_port = worker(
        podman,
        "source",
        network,
        kafka,
        IMAGE,
        ["source", "run", "coinbase", "--replay", "--speed", speed],
    )
    return Running(kafka, volume, sink, sink_port, source, source_port)


def test_source_and_sink_containers_write_every_trade_and_stop_cleanly(podman: Podman) -> None:
    """Rows reach ClickHouse; the health check answers healthy, and unhealthy while the
    sink is stopped (SIGSTOP: stuck); ``podman stop`` ends each worker with exit 0 well
    within its grace period, and every trade of the capture is written once."""
    run = start_pipeline(podman, "5")
    kafka, volume, sink, sink_port, source, source_port = (
        run.kafka,
        run.volume,
        run.sink,
        run.sink_port,
        run.source,
        run.source_port,
    )
    wait_for(
        lambda: metric(sink_port, "sink_rows_written_total") >= len(TRADES),
        180,
        "every trade written",
    )
    assert metric(source_port, "source_records_staged_total") == len(TRADES)
    print(
        f"\nRSS: kafka {rss_mib(podman, kafka.name):.0f} MiB, source {rss_mib(podman, source):.0f} MiB, "
        f"sink (embedded chDB) {rss_mib(podman, sink):.0f} MiB"
    )

    # /sql, with the admin port on 0.0.0.0 and no token: another host is refused, the
    # container itself is served.
    status, body = post_sql(sink_port, "SELECT count() FROM coinbase_matches")
    assert status == 403 and "set INGEST_ADMIN_SQL_TOKEN on the sink" in body
    assert podman.sql(sink, "SELECT 1") == [[1]]

    assert podman("healthcheck", "run", sink, check=False).returncode == 0
    pid = int(podman.state(sink)["Pid"])
    os.kill(pid, signal.SIGSTOP)  # stuck: the process answers nothing, /health included
    try:
        stuck = podman("healthcheck", "run", sink, check=False, timeout=60)
        assert stuck.returncode != 0, stuck.stdout + stuck.stderr
    finally:
        os.kill(pid, signal.SIGCONT)
    assert podman("healthcheck", "run", sink, check=False).returncode == 0

    code, seconds = stop(podman, source, 30)
    assert code == 0, podman.logs(source)[-3000:]
    assert seconds < 20
    code, seconds = stop(podman, sink, 60)
    assert code == 0, podman.logs(sink)[-3000:]
    assert seconds < 30
    ((count, distinct),) = warehouse(
        podman,
        volume,
        "SELECT count(), uniqExact(product_id, trade_id) FROM coinbase_matches FINAL",
    )
    assert count == distinct == len(TRADES)


def test_podman_kill_of_the_sink_and_a_restart_keep_every_trade_once(podman: Podman) -> None:
    """SIGKILL of the sink container mid-stream, then ``podman start`` of the same container
    (its volume, its group): every trade once (distinct and FINAL)."""
    run = start_pipeline(podman, "2", "-e", f"INGEST_ADMIN_SQL_TOKEN={TOKEN}")
    volume, sink, sink_port, source, source_port = (
        run.volume,
        run.sink,
        run.sink_port,
        run.source,
        run.source_port,
    )
    wait_for(lambda: metric(sink_port, "sink_rows_written_total") > 0, 120, "a first insert")
    status, _ = post_sql(sink_port, "SELECT 1", TOKEN)  # another host, with the token
    assert status == 200
    assert post_sql(sink_port, "SELECT 1", "wrong")[0] == 403
    podman("kill", sink)  # SIGKILL
    assert podman.wait_exit(sink) != 0
    podman("start", sink)
    wait_for(
        lambda: metric(source_port, "source_records_staged_total") == len(TRADES),
        120,
        "the whole capture staged",
    )
    wait_for(
        lambda: podman("healthcheck", "run", sink, check=False).returncode == 0,
        60,
        "the restarted sink healthy",
    )
    everything = "SELECT uniqExact(product_id, trade_id) FROM coinbase_matches"
    wait_for(
        lambda: podman.sql(sink, everything, check=False) == [[len(TRADES)]],
        120,
        "the restarted sink caught up",  # its own counters start again at 0
    )
    code, _ = stop(podman, source, 30)
    assert code == 0, podman.logs(source)[-3000:]
    code, _ = stop(podman, sink, 60)
    assert code == 0, podman.logs(sink)[-3000:]
    ((final,),) = warehouse(podman, volume, "SELECT count() FROM coinbase_matches FINAL")
    ((raw, distinct),) = warehouse(
        podman, volume, "SELECT count(), uniqExact(product_id, trade_id) FROM coinbase_matches"
    )
    assert final == distinct == len(TRADES)
    print(f"\n{len(TRADES)} trades; {raw} rows before merges (re-inserts after the kill)")


SCALE_CONFIG = """
[sources.coinbase.resources.matches]
schema_file = "coinbase/matches.avsc"
key = ["product_id"]
id_fields = ["product_id", "trade_id"]
time_field = "time"
partitions = 3
target = "kafka:derived.coinbase.matches"
"""


def test_three_sink_containers_in_one_group_one_killed_deliver_everything(
    podman: Podman, tmp_path: Path
) -> None:
    """Three sink containers re-stage to a stream target in one group; one is killed with
    SIGKILL mid-stream. Every trade reaches the destination; duplicates are counted."""
    network = podman.network()
    kafka = start_kafka(podman, network)
    config = tmp_path / "ingest.toml"
    config.write_text(SCALE_CONFIG)
    config.chmod(0o644)
    mount = ["-v", f"{config}:/etc/durable-ingest/ingest.toml:ro"]
    sinks = [
        worker(
            podman,
            f"sink{i}",
            network,
            kafka,
            IMAGE,
            ["sink", "run", "--source", "coinbase"],
            *mount,
        )
        for i in range(3)
    ]
    _source, source_port = worker(
        podman,
        "source",
        network,
        kafka,
        IMAGE,
        ["source", "run", "coinbase", "--replay", "--speed", "2"],
        *mount,
    )
    wait_for(
        lambda: sum(metric(p, "sink_rows_written_total") for _, p in sinks) > 100, 120, "deliveries"
    )
    podman("kill", sinks[0][0])
    wait_for(
        lambda: metric(source_port, "source_records_staged_total") == len(TRADES),
        120,
        "the whole capture staged",
    )
    delivered = read_topic(kafka.external, "derived.coinbase.matches")
    keys = [(r.product, r.trade_id) for r in delivered]
    deadline = time.monotonic() + 60
    while set(keys) != TRADES and time.monotonic() < deadline:
        delivered = read_topic(kafka.external, "derived.coinbase.matches")
        keys = [(r.product, r.trade_id) for r in delivered]
    assert set(keys) == TRADES
    print(f"\nRSS of a sink with a stream target: {rss_mib(podman, sinks[1][0]):.0f} MiB")
    for name, _ in sinks[1:]:
        code, _ = stop(podman, name, 60)
        assert code == 0, podman.logs(name)[-3000:]
    print(
        f"\n{len(TRADES)} trades, {len(keys)} delivered ({len(keys) - len(set(keys))} duplicates)"
    )
