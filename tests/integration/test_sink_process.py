"""``ingest sink run`` as users run it: a separate process, the real broker, chDB on disk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition

from foundation.config import ClickHouseSettings, KafkaSettings
from sink_workers.clickhouse.warehouse import open_warehouse
from sink_workers.stream import stream_resource
from staging.checkpoints import partition_entries, resume_point
from staging.envelope import EnvelopeEncoder
from staging.kafka import KafkaCheckpointStore, KafkaStagingProvider
from staging.protocol import StagingContext
from staging.resource import TopicSpec
from staging.schemas import SchemaCatalog
from tests.helpers import cli_process, trade_resource, trades, unique
from tests.integration.conftest import Spawn

ROOT = Path(__file__).resolve().parents[2]

COUNT = textwrap.dedent(
    """
    import json, sys
    from foundation.config import settings_from
    from sink_workers.clickhouse.warehouse import open_warehouse
    client = open_warehouse(settings_from({"data_dir": sys.argv[1]}).clickhouse)
    table = sys.argv[2]
    if not client.command(f"EXISTS TABLE default.{table}"):
        print(json.dumps(None))  # a sink killed before it created its table
        sys.exit()
    rows = client.query(f"SELECT count(), uniqExact(trade_id) FROM default.{table}").result_rows[0]
    final = client.command(f"SELECT count() FROM default.{table} FINAL")
    ids = [r[0] for r in client.query(f"SELECT DISTINCT trade_id FROM default.{table}").result_rows]
    print(json.dumps({"count": rows[0], "distinct": rows[1], "final": final, "ids": ids}))
    """
)


class Setup:
    def __init__(self, tmp_path: Path, kafka: KafkaSettings, spawn: Spawn) -> None:
        self.spawn = spawn
        self.tmp = tmp_path
        self.kafka = kafka
        self.source = unique("src")
        self.group = f"ingest.sink.{self.source}"
        self.config = self.config_for(tmp_path)
        catalog = SchemaCatalog.default()
        self.resource = trade_resource(catalog, source=self.source, name="matches")
        self.provider = KafkaStagingProvider(kafka, catalog=catalog, max_record_bytes=1_000_000)

    def config_for(self, data_dir: Path, target: str = "clickhouse") -> Path:
        """A configuration for one sink process whose embedded warehouse is ``data_dir``."""
        data_dir.mkdir(parents=True, exist_ok=True)
        config = data_dir / "ingest.toml"
        config.write_text(
            textwrap.dedent(
                f"""
                data_dir = "{data_dir}"
                [kafka]
                bootstrap = "{self.kafka.bootstrap}"
                session_timeout_ms = 6000
                heartbeat_interval_ms = 1000
                [sources.{self.source}.resources.matches]
                schema_file = "coinbase/matches.avsc"
                key = ["product_id"]
                id_fields = ["product_id", "trade_id"]
                time_field = "time"
                partitions = 3
                target = "{target}"
                """
            )
        )
        return config

    def stage(self, n: int, chunk: int = 2_000) -> None:
        context = StagingContext(source=self.source, resources=(self.resource,))
        rows = trades(n)
        with self.provider.allocate_session(context) as session:
            for start in range(0, n, chunk):
                part = rows[start : start + chunk]
                session.writer().write_batch(part, checkpoint={"trade_id": part[-1]["trade_id"]})

    def sink(
        self,
        *args: str,
        data_dir: Path | None = None,
        extra_env: dict[str, str] | None = None,
        target: str = "clickhouse",
        module: tuple[str, ...] = ("sink_workers",),
    ) -> subprocess.Popen[str]:
        config = (
            self.config
            if data_dir is None and target == "clickhouse"
            else self.config_for(data_dir or self.tmp, target)
        )
        env = {**os.environ, "INGEST_CONFIG": str(config)}
        env.pop("INGEST_KAFKA_BOOTSTRAP", None)
        env.pop("INGEST_CLICKHOUSE_DSN", None)
        env.update(extra_env or {})
        return self.spawn([sys.executable, "-m", *module, *args], cwd=ROOT, env=env)

    def committed(self) -> int:
        consumer = Consumer({"bootstrap.servers": self.kafka.bootstrap, "group.id": self.group})
        deadline = time.monotonic() + 20
        try:
            while True:
                try:
                    parts = consumer.committed(
                        [TopicPartition(self.resource.topic.name, p) for p in range(3)], timeout=10
                    )
                    break
                except KafkaException:  # e.g. NOT_COORDINATOR while the broker loads groups
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        finally:
            consumer.close()
        return sum(max(tp.offset, 0) for tp in parts)

    def wait_committed(self, at_least: int, timeout_s: float = 60) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = self.committed()
            if got >= at_least:
                return got
            time.sleep(0.2)
        raise AssertionError(f"committed offsets stayed below {at_least}")

    def resume_point(self) -> dict[str, Any] | None:
        settings = KafkaSettings(bootstrap=self.kafka.bootstrap)
        store = KafkaCheckpointStore(
            settings,
            TopicSpec("ingest._checkpoints", partitions=1, retention_ms=-1, compacted=True),
        )
        try:
            return resume_point(partition_entries(store, self.source, "matches"))
        finally:
            store.close()

    def table(self, data_dir: Path | None = None, *, missing_ok: bool = False) -> dict[str, Any]:
        """Count, distinct, FINAL count and ids of the sink's table; with ``missing_ok``, a
        table never created (its sink killed first) holds nothing."""
        done = subprocess.run(
            [sys.executable, "-c", COUNT, str(data_dir or self.tmp), f"{self.source}_matches"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        result: dict[str, Any] | None = json.loads(done.stdout.strip().splitlines()[-1])
        if result is None:
            assert missing_ok, f"no table {self.source}_matches in {data_dir or self.tmp}"
            return {"count": 0, "distinct": 0, "final": 0, "ids": []}
        return result


def finished(process: subprocess.Popen[str], timeout_s: float = 120) -> tuple[int, str]:
    _, err = process.communicate(timeout=timeout_s)
    return process.returncode, err


def test_sink_writes_every_staged_row_then_commits(
    tmp_path: Path, kafka: KafkaSettings, spawn: Spawn
) -> None:
    """Written rows equal staged rows, and the group's offsets cover all of them."""
    setup = Setup(tmp_path, kafka, spawn)
    setup.stage(3_000)
    code, err = finished(setup.sink("--idle-exit", "2", "--chunk-size", "700"))
    assert code == 0, err
    table = setup.table()
    assert (table["count"], table["distinct"], table["final"]) == (3_000, 3_000, 3_000)
    assert setup.committed() == 3_000
    assert setup.resume_point() == {"trade_id": trades(3_000)[-1]["trade_id"]}


@pytest.mark.one_broker("apache")
def test_kill_9_at_any_moment_then_restart_writes_every_row_once(
    tmp_path: Path, kafka: KafkaSettings, spawn: Spawn
) -> None:
    """kill -9 of the sink, three times mid-stream, then a restart: every row once (by natural key)."""
    setup = Setup(tmp_path, kafka, spawn)
    n = 30_000
    setup.stage(n)
    progress = 0
    for _ in range(3):
        process = setup.sink("--chunk-size", "500")
        progress = setup.wait_committed(progress + 1)
        time.sleep(0.15)  # land somewhere between an insert and its commit, or within either
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
    code, err = finished(setup.sink("--idle-exit", "2", "--chunk-size", "500"))
    assert code == 0, err
    table = setup.table()
    assert table["distinct"] == n and table["final"] == n
    assert table["count"] >= n  # repeats after a crash are absorbed, never lost
    assert setup.committed() == n
    assert setup.resume_point() == {"trade_id": trades(n)[-1]["trade_id"]}


def admin_port(process: subprocess.Popen[str], timeout_s: float = 60) -> int:
    """Read the sink's log until it names its admin port."""
    assert process.stderr is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if "admin port: http://127.0.0.1:" in line:
            return int(line.rsplit(":", 1)[1].split()[0])
        if not line and process.poll() is not None:
            break
    raise AssertionError("the sink never named its admin port")


@pytest.mark.one_broker("apache")
@pytest.mark.parametrize("when", ["before", "after"])
def test_kill_9_before_or_after_an_insert_then_restart_writes_every_row_once(
    tmp_path: Path, kafka: KafkaSettings, spawn: Spawn, when: str
) -> None:
    """kill -9 just before the 3rd insert, or after it and before its commit; a restart
    leaves every staged row in the table exactly once by natural key."""
    setup = Setup(tmp_path, kafka, spawn)
    n = 5_000
    setup.stage(n)
    crashed = setup.sink("--chunk-size", "500", module=("tests.integration.sink_crash", when, "3"))
    code, _ = finished(crashed)
    assert code == -signal.SIGKILL
    before_restart = setup.committed()
    assert before_restart < n
    code, err = finished(setup.sink("--idle-exit", "2", "--chunk-size", "500"))
    assert code == 0, err
    table = setup.table()
    assert table["distinct"] == n and table["final"] == n
    # No merge was needed: the raw row count is exact. "before": the 3rd batch never reached
    # the table. "after": the restarted sink read the same offsets again, so the retried
    # insert carried the same token, and ClickHouse dropped it as a repeat.
    assert table["count"] == n, table
    assert setup.committed() == n
    assert setup.resume_point() == {"trade_id": trades(n)[-1]["trade_id"]}


def test_sigterm_finishes_commits_and_exits_zero(
    tmp_path: Path, kafka: KafkaSettings, spawn: Spawn
) -> None:
    """SIGTERM: the sink stops fetching, commits what it wrote, leaves the group, exits 0.

    While it runs, its admin port reports health and metrics.
    """
    setup = Setup(tmp_path, kafka, spawn)
    setup.stage(2_000)
    process = setup.sink("--chunk-size", "400", "--admin-port", "0")
    port = admin_port(process)
    setup.wait_committed(2_000)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
        health = json.loads(response.read())
    assert health["healthy"] is True and health["rows_written"] == 2_000
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        metrics = response.read().decode()
    assert 'ingest_sink_rows_written_total{resource="matches"} 2000' in metrics
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code, err = finished(process, timeout_s=30)
    assert code == 0, err
    assert time.monotonic() - started < 20
    assert "sink stopped: 2000 rows" in err
    assert setup.committed() == 2_000


def test_a_second_embedded_sink_is_refused_clearly(
    tmp_path: Path, kafka: KafkaSettings, spawn: Spawn
) -> None:
    """Two sinks on one embedded warehouse directory: the second says why and exits 2."""
    setup = Setup(tmp_path, kafka, spawn)
    setup.stage(100)
    first = setup.sink()
    setup.wait_committed(100)
    code, err = finished(setup.sink("--idle-exit", "1"), timeout_s=60)
    assert code == 2
    assert "already open in another process" in err and "Traceback" not in err
    first.send_signal(signal.SIGTERM)
    assert finished(first)[0] == 0
    code, err = finished(setup.sink("--admin-port", "70000"), timeout_s=60)
    assert code == 2 and "ingest: error: cannot serve the admin port 127.0.0.1:70000" in err


@pytest.mark.one_broker("apache")
def test_two_sinks_in_one_group_split_partitions_and_survive_a_kill(
    tmp_path: Path, kafka: KafkaSettings, spawn: Spawn
) -> None:
    """Two sink processes share the partitions; after one is killed the other takes them all.

    Each has its own embedded warehouse, so together (union of both tables)
    they must hold every staged row.
    """
    setup = Setup(tmp_path, kafka, spawn)
    n = 12_000
    setup.stage(n)
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a = setup.sink("--chunk-size", "300", data_dir=a_dir)
    b = setup.sink("--chunk-size", "300", data_dir=b_dir)
    setup.wait_committed(n // 4)
    a.send_signal(signal.SIGKILL)
    a.communicate(timeout=30)
    # B takes A's partitions once the group notices A is gone (session timeout 6 s), and
    # commits every row; then it is stopped as an operator would stop it.
    setup.wait_committed(n, timeout_s=120)
    b.send_signal(signal.SIGTERM)
    code, err = finished(b)
    assert code == 0, err
    # A may be killed before it created its table (under load it can still be starting).
    rows_a = (
        set(setup.table(a_dir, missing_ok=True)["ids"]) if (a_dir / "warehouse").exists() else set()
    )
    rows_b = set(setup.table(b_dir)["ids"])
    assert rows_a | rows_b == {r["trade_id"] for r in trades(n)}
    assert rows_b, "the surviving sink wrote rows"


def test_sink_into_a_clickhouse_server(
    tmp_path: Path, kafka: KafkaSettings, spawn: Spawn, clickhouse: ClickHouseSettings
) -> None:
    """The same sink against a ClickHouse server (testcontainers or INGEST_CLICKHOUSE_DSN)."""
    if clickhouse.embedded_path is not None:
        pytest.skip(
            "no ClickHouse server: no Docker daemon answered and INGEST_CLICKHOUSE_DSN is unset"
        )
    setup = Setup(tmp_path, kafka, spawn)
    setup.stage(2_000)
    env = {
        "INGEST_CLICKHOUSE_DSN": clickhouse.dsn,
        "INGEST_CLICKHOUSE_USERNAME": clickhouse.username or "",
    }
    if clickhouse.password is not None:
        env["INGEST_CLICKHOUSE_PASSWORD"] = clickhouse.password.get_secret_value()
    code, err = finished(setup.sink("--idle-exit", "2", extra_env=env))
    assert code == 0, err
    client = open_warehouse(clickhouse)
    try:
        table = f"`{clickhouse.database}`.`{setup.source}_matches`"
        assert client.command(f"SELECT uniqExact(trade_id) FROM {table}") == 2_000
    finally:
        client.close()
    assert setup.committed() == 2_000


@pytest.mark.one_broker("apache")
def test_two_sinks_with_a_stream_target_deliver_every_record(
    tmp_path: Path, kafka: KafkaSettings, spawn: Spawn
) -> None:
    """Two sink processes re-staging into another topic split the partitions, one is killed,
    and together they deliver every record (event ids kept, so duplicates are recognisable)."""
    setup = Setup(tmp_path, kafka, spawn)
    n = 8_000
    setup.stage(n)
    destination = f"derived.{setup.source}.matches"
    a = setup.sink("--chunk-size", "300", target=f"kafka:{destination}")
    b = setup.sink("--chunk-size", "300", target=f"kafka:{destination}")
    setup.wait_committed(n // 4)
    a.send_signal(signal.SIGKILL)
    a.communicate(timeout=30)
    setup.wait_committed(n, timeout_s=120)  # B has taken over A's partitions and finished
    b.send_signal(signal.SIGTERM)
    code, err = finished(b)
    assert code == 0, err
    assert setup.committed() == n
    out = stream_resource(setup.resource, destination)
    context = StagingContext(source=setup.source, resources=(out,), group_id=unique("check"))
    seen: dict[int, str | None] = {}
    with setup.provider.allocate_session(context) as session:
        reader = session.reader()
        deadline = time.monotonic() + 60
        while len(seen) < n and time.monotonic() < deadline:
            for batch in reader.iter_batches(2_000, poll_timeout_s=0.2, idle_timeout_s=2):
                for record in batch.records:
                    seen[record.record["trade_id"]] = record.event_id
    assert set(seen) == {r["trade_id"] for r in trades(n)}
    staged_ids = (
        EnvelopeEncoder(setup.resource, max_record_bytes=1_000_000)
        .encode_batch(trades(n), ingest_time_us=0)
        .event_ids
    )
    assert set(seen.values()) == set(staged_ids)  # the same deterministic event ids


def test_the_owning_sink_answers_ingest_sql_on_its_socket_with_no_flag(
    tmp_path: Path, kafka: KafkaSettings, spawn: Spawn
) -> None:
    """A sink without --admin-port owns the embedded warehouse: ingest sql on the same data
    directory goes through <data_dir>/sink.sock, and chDB's "Cannot lock file" line never
    shows; a write is still refused, and the socket goes with the sink."""
    setup = Setup(tmp_path, kafka, spawn)
    setup.stage(100)
    sink = setup.sink()
    socket_path = tmp_path / "sink.sock"
    wait_for_path = time.monotonic() + 60
    while not socket_path.exists() and time.monotonic() < wait_for_path:
        time.sleep(0.1)
    if not socket_path.exists():
        sink.kill()
        raise AssertionError(f"no socket: {sink.communicate(timeout=10)[1][-3000:]}")
    assert oct(socket_path.stat().st_mode & 0o777) == oct(0o600)

    def sql(query: str) -> subprocess.CompletedProcess[str]:
        return cli_process("--config", str(setup.config), "sql", query, "--format", "json")

    table = f"{setup.source}_matches"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = sql(f"SELECT count() FROM {table} FINAL")
        if done.returncode == 0 and json.loads(done.stdout)["rows"] == [[100]]:
            break
        time.sleep(0.5)
    assert done.returncode == 0 and json.loads(done.stdout)["rows"] == [[100]], done.stderr
    assert "Cannot lock" not in done.stderr and "Code: 76" not in done.stderr
    refused = sql(f"INSERT INTO {table} (trade_id) VALUES (1)")
    assert refused.returncode == 2 and "INSERT statements are refused" in refused.stderr
    sink.send_signal(signal.SIGTERM)
    code, err = finished(sink)
    assert code == 0, err
    assert not socket_path.exists()
