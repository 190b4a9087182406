"""``ingest replay`` on the real broker and the real ClickHouse engine.

The live sink runs in this process (a SinkWorker in the group
``ingest.sink.<source>``) against the session's warehouse, which the replay
then opens too: one chDB path per process, shared the way the other suites
share it.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from confluent_kafka import Producer

from durable_ingest.cli import main
from durable_ingest.operations.replay import ReplayRequest, run_replay
from durable_ingest.operations.replay_keys import KeyColumns
from durable_ingest.operations.replay_plan import ReplayReport, format_ms, parse_bound
from foundation.config import (
    ClickHouseSettings,
    KafkaSettings,
    ResourceSettings,
    Settings,
    SourceSettings,
)
from foundation.errors import ConfigError
from sink_workers.clickhouse.query import ReadOnlyQuery
from sink_workers.clickhouse.warehouse import open_warehouse
from sink_workers.clickhouse.writer import ClickHouseTableWriter
from sink_workers.tables import Column, TableSpec, table_spec
from sink_workers.targets import TableTarget
from sink_workers.worker import SinkWorker
from staging.kafka.provider import KafkaStagingProvider
from staging.kafka.scan import TopicScanner
from staging.protocol import StagingContext
from staging.schemas import SchemaCatalog
from tests.helpers import trade_resource, trades, unique
from tests.integration.conftest import Spawn

ROOT = Path(__file__).resolve().parents[2]
HALF = 1_500


@pytest.fixture
def client(clickhouse: ClickHouseSettings) -> Iterator[Client]:
    warehouse = open_warehouse(clickhouse)
    yield warehouse
    warehouse.close()


def test_the_key_check_binds_every_key_type_and_finds_it_in_the_engine(
    client: Client, clickhouse: ClickHouseSettings
) -> None:
    """Every natural-key column type the replay compares, with a hostile string and raw
    bytes, goes to the engine as a bound parameter and finds its row; a key that differs
    in one column finds nothing."""
    types = {
        "s": "String",
        "b": "String",
        "f": "FixedString(3)",
        "u": "UUID",
        "t6": "DateTime64(6, 'UTC')",
        "t3": "DateTime64(3, 'UTC')",
        "d": "Date32",
        "dec": "Decimal(18, 8)",
        "fl": "Float64",
        "bo": "Bool",
        "lc": "LowCardinality(String)",
        "i": "Int64",
    }
    row = {
        "s": "x\\' OR 1=1 -- tab\there\nnul\x00\x7f ünï €",
        "b": b"\x00a'\xff",
        "f": b"a\x00c",
        "u": uuid.UUID(int=7),
        "t6": datetime(2026, 11, 22, 3, 0, 0, 137, tzinfo=UTC),
        "t3": datetime(2026, 11, 22, 3, 0, 0, 5000, tzinfo=UTC),
        "d": date(2026, 1, 2),
        "dec": Decimal("0.00123400"),
        "fl": 1.5,
        "bo": True,
        "lc": "UPDATE",
        "i": -7,
    }
    spec = TableSpec(
        clickhouse.database,
        unique("keys"),
        tuple(Column(name, kind, False) for name, kind in types.items()),
        tuple(types),
    )
    columns = ", ".join(f"{name} {kind}" for name, kind in types.items())
    client.command(
        f"CREATE TABLE {spec.qualified} ({columns}) "
        f"ENGINE = ReplacingMergeTree ORDER BY ({', '.join(types)})"
    )
    client.insert(spec.qualified.replace("`", ""), [list(row.values())], column_names=list(row))
    keys = KeyColumns.of(spec)
    here = keys.prepare(row)
    others = [keys.prepare({**row, name: value}) for name, value in (("i", 8), ("s", "x"))]
    query = ReadOnlyQuery(client)
    found = set()
    for check in keys.queries([here, *others]):
        assert "OR 1=1" not in check.sql
        answer = query(check.sql, check.parameters, strings_as_bytes=True)
        found |= {keys.row_key(r) for r in answer["rows"]}
    assert found == {here.key}


class Staged:
    """One source with a trades resource: ``HALF`` trades staged, a mark, ``HALF`` more."""

    def __init__(
        self,
        kafka: KafkaSettings,
        clickhouse: ClickHouseSettings,
        tmp: Path,
        *,
        avro_input: bool = True,
    ) -> None:
        self.kafka, self.clickhouse = kafka, clickhouse
        self.catalog = SchemaCatalog.default()
        self.source = unique("src")
        self.resource = trade_resource(self.catalog, source=self.source, name="matches")
        self.topic = self.resource.topic.name
        self.group = f"ingest.sink.{self.source}"
        self.table = f"`{clickhouse.database}`.`{self.source}_matches`"
        self.settings = Settings(
            data_dir=tmp,
            kafka=kafka,
            clickhouse=clickhouse.model_copy(update={"avro_input": avro_input}),
            sources={
                self.source: SourceSettings(
                    resources={
                        "matches": ResourceSettings(
                            schema_file="coinbase/matches.avsc",
                            key=["product_id"],
                            id_fields=["product_id", "trade_id"],
                            time_field="time",
                        )
                    }
                )
            },
        )
        self.provider = KafkaStagingProvider(
            kafka, catalog=self.catalog, max_record_bytes=1_000_000
        )
        self.provider.ensure_topics([self.resource])
        self.stage(trades(HALF))
        time.sleep(0.05)
        self.middle_ms = int(time.time() * 1000)
        time.sleep(0.05)
        self.stage(trades(HALF, start=HALF))

    def stage(self, rows: list[dict[str, Any]]) -> None:
        context = StagingContext(source=self.source, resources=(self.resource,))
        with self.provider.allocate_session(context) as session:
            session.writer().write_batch(rows)

    def run_live_sink(self) -> None:
        """The live sink, in its group, until idle: the live table holds every staged row."""
        spec = table_spec(
            self.resource.schema.parsed["fields"],
            database=self.clickhouse.database,
            table=f"{self.source}_matches",
            order_by=self.resource.id_fields,
        )
        warehouse = open_warehouse(self.clickhouse)
        try:
            writer = ClickHouseTableWriter(warehouse, spec)
            writer.ensure()
            context = StagingContext(source=self.source, resources=(self.resource,))
            with self.provider.allocate_session(context) as session:
                worker = SinkWorker(session, {self.topic: TableTarget(writer)}, chunk_size=700)
                worker.run(idle_timeout_s=2)
        finally:
            warehouse.close()

    def committed(self) -> dict[int, int]:
        scanner = TopicScanner(self.kafka)
        try:
            return scanner.committed(self.group, self.topic)
        finally:
            scanner.close()

    def replay(
        self, start: str, stop: str | None = None, **kwargs: Any
    ) -> tuple[ReplayReport, list[str]]:
        warnings: list[str] = []
        request = ReplayRequest(
            resource="matches",
            start=parse_bound(start),
            stop=None if stop is None else parse_bound(stop, "--to"),
            idle_s=1.0,
            **kwargs,
        )
        return run_replay(self.settings, request, warn=warnings.append), warnings


def counts(client: Client, table: str) -> tuple[int, int]:
    row = client.query(f"SELECT count(), uniqExact(product_id, trade_id) FROM {table}").result_rows
    return int(row[0][0]), int(row[0][1])


def ids(client: Client, table: str) -> list[int]:
    return [
        r[0] for r in client.query(f"SELECT trade_id FROM {table} ORDER BY trade_id").result_rows
    ]


def test_replay_into_the_live_table_keeps_every_key_once_and_leaves_the_group_alone(
    kafka: KafkaSettings, clickhouse: ClickHouseSettings, client: Client, tmp_path: Path
) -> None:
    """From a time in the middle back into the live table: every natural key exactly once
    (without FINAL), all of the range deduplicated, the live group's offsets unchanged."""
    staged = Staged(kafka, clickhouse, tmp_path)
    staged.run_live_sink()
    assert counts(client, staged.table) == (2 * HALF, 2 * HALF)
    before = staged.committed()
    assert sum(before.values()) == 2 * HALF

    report, warnings = staged.replay(format_ms(staged.middle_ms))

    totals = report.as_json()["totals"]
    assert (totals["read"], totals["written"], totals["deduplicated"], totals["corrupt"]) == (
        HALF,
        0,
        HALF,
        0,
    )
    assert report.live and report.table == f"{clickhouse.database}.{staged.source}_matches"
    assert counts(client, staged.table) == (2 * HALF, 2 * HALF)
    assert staged.committed() == before
    assert len(warnings) == 1
    assert "already written and committed by the live sink" in warnings[0]
    assert f"group {staged.group}" in warnings[0] and "FINAL" in warnings[0]


# The key check through ClickHouse (the default), or decoded records and keys in Python.
KEY_CHECKS = pytest.mark.parametrize("avro_input", [True, False], ids=["in-clickhouse", "python"])


@KEY_CHECKS
def test_replay_writes_the_keys_the_live_table_lacks(
    kafka: KafkaSettings,
    clickhouse: ClickHouseSettings,
    client: Client,
    tmp_path: Path,
    avro_input: bool,
) -> None:
    """Rows deleted from the live table come back once; a second run writes nothing."""
    staged = Staged(kafka, clickhouse, tmp_path, avro_input=avro_input)
    staged.run_live_sink()
    client.command(f"DELETE FROM {staged.table} WHERE trade_id % 10 = 0")
    assert counts(client, staged.table) == (2 * HALF - 300, 2 * HALF - 300)

    report, _ = staged.replay("earliest")

    totals = report.as_json()["totals"]
    assert (totals["read"], totals["written"], totals["deduplicated"]) == (
        2 * HALF,
        300,
        2 * HALF - 300,
    )
    assert counts(client, staged.table) == (2 * HALF, 2 * HALF)
    again, _ = staged.replay("earliest")
    assert again.as_json()["totals"]["written"] == 0
    assert counts(client, staged.table) == (2 * HALF, 2 * HALF)


@KEY_CHECKS
def test_replay_into_a_shadow_table_copies_exactly_the_range(
    kafka: KafkaSettings,
    clickhouse: ClickHouseSettings,
    client: Client,
    tmp_path: Path,
    avro_input: bool,
) -> None:
    """A shadow table gets the live table's spec and exactly the range's keys, once each:
    staged duplicates collapse, corrupt records (not an envelope; a body that is not its
    schema, which ClickHouse refuses on the default path) are counted and skipped, no
    warning."""
    staged = Staged(kafka, clickhouse, tmp_path, avro_input=avro_input)
    time.sleep(0.05)
    end_ms = int(time.time() * 1000)
    time.sleep(0.05)
    staged.stage(trades(200, start=2_000))  # at-least-once: the same trades staged again
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    producer.produce(staged.topic, value=b"not an envelope", partition=0)
    producer.produce(staged.topic, value=staged.resource.schema.header + b"\xff" * 9, partition=1)
    assert producer.flush(10) == 0
    staged.run_live_sink()  # the live table, to compare the shadow's spec with
    shadow = unique("shadow")

    report, warnings = staged.replay(format_ms(staged.middle_ms), into=shadow)

    assert warnings == [] and not report.live
    totals = report.as_json()["totals"]
    assert (totals["read"], totals["written"], totals["deduplicated"], totals["corrupt"]) == (
        HALF + 200 + 2,
        HALF,
        200,
        2,
    )
    target = f"`{clickhouse.database}`.`{shadow}`"
    assert counts(client, target) == (HALF, HALF)
    assert ids(client, target) == [t["trade_id"] for t in trades(HALF, start=HALF)]
    describe = "SELECT engine, sorting_key, primary_key FROM system.tables WHERE name = {t:String}"
    live = client.query(describe, parameters={"t": f"{staged.source}_matches"}).result_rows
    copy = client.query(describe, parameters={"t": shadow}).result_rows
    assert live == copy == [("ReplacingMergeTree", "product_id, trade_id", "product_id, trade_id")]
    columns = "SELECT name, type FROM system.columns WHERE table = {t:String} ORDER BY position"
    assert (
        client.query(columns, parameters={"t": shadow}).result_rows
        == client.query(columns, parameters={"t": f"{staged.source}_matches"}).result_rows
    )

    # A bounded range: up to a time, into another shadow table.
    bounded, _ = staged.replay(format_ms(staged.middle_ms), format_ms(end_ms), into=shadow + "_b")
    assert bounded.as_json()["totals"]["written"] == HALF
    assert ids(client, f"`{clickhouse.database}`.`{shadow}_b`") == ids(client, target)

    # Everything deleted from the shadow table, then the same replay: the server drops the
    # identical inserts as repeats, the replay notices and sends them again.
    client.command(f"DELETE FROM {target} WHERE 1")
    again, _ = staged.replay(format_ms(staged.middle_ms), into=shadow)
    assert again.as_json()["totals"]["written"] == HALF
    assert counts(client, target) == (HALF, HALF)


def test_dry_run_counts_the_range_and_writes_nothing(
    kafka: KafkaSettings, clickhouse: ClickHouseSettings, client: Client, tmp_path: Path
) -> None:
    """--dry-run resolves the range and counts it; no table is created."""
    staged = Staged(kafka, clickhouse, tmp_path)
    shadow = unique("dry")
    partition, size = fullest_partition(kafka, staged.topic)
    report, warnings = staged.replay(f"{partition}:0", into=shadow, dry_run=True)
    data = report.as_json()
    assert [p["partition"] for p in data["partitions"]] == [partition]
    assert data["totals"]["read"] == size and data["totals"]["written"] is None
    assert warnings == []
    exists = "SELECT count() FROM system.tables WHERE name = {t:String}"
    assert client.query(exists, parameters={"t": shadow}).result_rows[0][0] == 0


class Truncated(TopicScanner):
    """The topic as it looks once retention deleted the first ``KEEP_FROM`` records of
    ``PARTITION`` (the embedded broker supports no DeleteRecords)."""

    PARTITION = 0
    KEEP_FROM = 5

    def watermarks(self, topic: str) -> dict[int, tuple[int, int]]:
        found = super().watermarks(topic)
        return {
            p: (self.KEEP_FROM if p == self.PARTITION else low, high)
            for p, (low, high) in found.items()
        }


def fullest_partition(kafka: KafkaSettings, topic: str) -> tuple[int, int]:
    """The partition holding the most records, and how many it holds."""
    scanner = TopicScanner(kafka)
    try:
        sizes = Counter(r.partition for chunk in scanner.scan(topic, idle_s=1.0) for r in chunk)
    finally:
        scanner.close()
    partition = max(sizes, key=lambda p: sizes[p])
    return partition, sizes[partition]


def write_config(tmp_path: Path, staged: Staged) -> Path:
    clickhouse = staged.clickhouse
    config = tmp_path / "ingest.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            data_dir = "{tmp_path}"
            [kafka]
            bootstrap = "{staged.kafka.bootstrap}"
            session_timeout_ms = 6000
            heartbeat_interval_ms = 1000
            [clickhouse]
            dsn = "{clickhouse.dsn}"
            database = "{clickhouse.database}"
            [sources.{staged.source}.resources.matches]
            schema_file = "coinbase/matches.avsc"
            key = ["product_id"]
            id_fields = ["product_id", "trade_id"]
            time_field = "time"
            """
        )
    )
    return config


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, clickhouse: ClickHouseSettings) -> None:
    for name in list(os.environ):
        if name.startswith("INGEST_"):
            monkeypatch.delenv(name)
    if clickhouse.username is not None:
        monkeypatch.setenv("INGEST_CLICKHOUSE_USERNAME", clickhouse.username)
    if clickhouse.password is not None:
        monkeypatch.setenv("INGEST_CLICKHOUSE_PASSWORD", clickhouse.password.get_secret_value())


def one_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("ingest: error:")]
    assert len(errors) == 1, err
    assert "Traceback" not in err
    return errors[0]


@pytest.mark.usefixtures("cli_env")
def test_bad_input_is_one_line_each(
    kafka: KafkaSettings,
    clickhouse: ClickHouseSettings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Unknown resource, malformed --from, --from after --to, a bad --into, a malformed
    config and a time before retention: one line `ingest: error: ...` each, exit 2."""
    staged = Staged(kafka, clickhouse, tmp_path)
    config = str(write_config(tmp_path, staged))
    replay = ["--config", config, "replay"]
    line = one_error(capsys, [*replay, "--resource", "nope", "--from", "earliest"])
    assert f"source {staged.source} has no resource 'nope' (resources: matches)" in line
    line = one_error(capsys, [*replay, "--resource", "matches", "--from", "yesterday"])
    assert "--from 'yesterday' is not a time or offsets: use an RFC 3339 time" in line
    line = one_error(
        capsys,
        [
            *replay,
            "--resource",
            "matches",
            "--from",
            "2026-11-22T04:00:00Z",
            "--to",
            "2026-11-22T03:00:00Z",
        ],
    )
    assert "--from 2026-11-22T04:00:00Z is not before --to 2026-11-22T03:00:00Z" in line
    line = one_error(
        capsys, [*replay, "--resource", "matches", "--from", "offset:9", "--to", "offset:3"]
    )
    assert "is after --to (offset 3)" in line
    line = one_error(
        capsys, [*replay, "--resource", "matches", "--from", "earliest", "--into", staged.topic]
    )
    assert f"--into {staged.topic!r} is not a table name" in line
    line = one_error(
        capsys, [*replay, "--resource", "matches", "--from", "earliest", "--block-size", "0"]
    )
    assert "--block-size must be at least 1" in line
    bad = tmp_path / "bad.toml"
    bad.write_text("[kafka\n")
    line = one_error(
        capsys, ["--config", str(bad), "replay", "--resource", "m", "--from", "earliest"]
    )
    assert "is not valid TOML" in line

    # A partition lost its first records to retention; --from is older than what is left.
    partition, _ = fullest_partition(kafka, staged.topic)
    monkeypatch.setattr(Truncated, "PARTITION", partition)
    monkeypatch.setattr("durable_ingest.operations.replay.TopicScanner", Truncated)
    before = format_ms(staged.middle_ms - 3_600_000)
    line = one_error(capsys, [*replay, "--resource", "matches", "--from", before])
    assert f"--from {before} is before the retained data of {staged.topic}[{partition}]" in line
    assert "which starts at offset 5 written" in line and "--allow-gap" in line
    # With --allow-gap it replays from the retained data, and says so.
    shadow = unique("gap")
    argv = [*replay, "--resource", "matches", "--from", before, "--into", shadow, "--allow-gap"]
    assert main([*argv, "--idle", "1", "--json"]) == 0
    out, err = capsys.readouterr()
    assert "ingest: warning: --from" in err and "(--allow-gap)" in err
    report = json.loads(out)
    starts = {p["partition"]: p["start"] for p in report["partitions"]}
    assert starts[partition] == 5
    assert report["totals"]["written"] == 2 * HALF - 5

    # The text report of a dry run: a line per partition and the totals.
    monkeypatch.setattr("durable_ingest.operations.replay.TopicScanner", TopicScanner)
    argv = [*replay, "--resource", "matches", "--from", "earliest", "--into", shadow]
    assert main([*argv, "--dry-run", "--idle", "1"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == (
        f"would replay (dry run) {staged.source}.matches from {staged.topic} into "
        f"{clickhouse.database}.{shadow} (shadow table)"
    )
    assert lines[1].split() == [
        "partition",
        "start",
        "stop",
        "read",
        "written",
        "deduplicated",
        "corrupt",
    ]
    assert lines[-1].split() == ["total", str(2 * HALF), "-", "-", "0"]
    assert "ingest: warning" not in err


def test_a_replay_into_another_resources_table_is_refused(
    kafka: KafkaSettings, clickhouse: ClickHouseSettings, tmp_path: Path
) -> None:
    """With two sources, --source is needed; --into naming the live table of another
    configured resource is refused."""
    staged = Staged(kafka, clickhouse, tmp_path)
    other = unique("other")
    settings = staged.settings.model_copy(
        update={
            "sources": {**staged.settings.sources, other: staged.settings.sources[staged.source]}
        }
    )
    request = ReplayRequest(resource="matches", start=parse_bound("earliest"))
    with pytest.raises(ConfigError, match="name the source to replay with --source"):
        run_replay(settings, request)
    request = ReplayRequest(
        resource="matches",
        source=staged.source,
        start=parse_bound("earliest"),
        into=f"{other}_matches",
    )
    with pytest.raises(ConfigError, match=f"is the table of resource {other}.matches"):
        run_replay(settings, request)


HOLD = textwrap.dedent(
    """
    import sys, time
    from foundation.config import settings_from
    from sink_workers.clickhouse.warehouse import open_warehouse
    client = open_warehouse(settings_from({"data_dir": sys.argv[1]}).clickhouse)
    client.query("SELECT 1")
    print("open", flush=True)
    time.sleep(float(sys.argv[2]))
    """
)


def test_embedded_warehouse_owned_by_a_sink_says_to_stop_it(
    kafka: KafkaSettings, clickhouse: ClickHouseSettings, tmp_path: Path, spawn: Spawn
) -> None:
    """In embedded mode a replay while another process owns the warehouse: one line saying
    to stop the sink first or to use a server, exit 2."""
    staged = Staged(kafka, clickhouse, tmp_path)
    data_dir = tmp_path / "embedded"
    holder = spawn([sys.executable, "-c", HOLD, str(data_dir), "60"], cwd=ROOT)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
    config = write_config(tmp_path, staged)
    text = config.read_text().replace(
        f'dsn = "{clickhouse.dsn}"', f'dsn = "chdb://{data_dir}/warehouse"'
    )
    config.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    process = spawn(
        [
            sys.executable,
            "-m",
            "durable_ingest.cli",
            "--config",
            str(config),
            "replay",
            "--resource",
            "matches",
            "--from",
            "earliest",
        ],
        cwd=ROOT,
        env=env,
    )
    out, err = process.communicate(timeout=120)
    assert process.returncode == 2, (out, err)
    errors = [line for line in err.splitlines() if line.startswith("ingest: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert "already open in another process" in errors[0]
    assert "stop the sink that owns it (ingest sink run) before replaying" in errors[0]
