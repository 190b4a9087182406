"""``ingest status`` on the real broker: committed offsets, lag, checkpoint, freshness, DLQ."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from durable_ingest.cli import main
from durable_ingest.loopback import free_port
from durable_ingest.operations.dlq import read_records
from foundation.config import KafkaSettings, Settings
from foundation.config_load import load_settings
from foundation.errors import BatchRejectedError
from sink_workers.inserts import SinkStats
from sink_workers.worker import SinkWorker
from staging.checkpoints import entries_in, resume_point
from staging.compose import checkpoint_store
from staging.decoder import StagedRecord
from staging.envelope import H_TIME
from staging.kafka import KafkaStagingProvider
from staging.protocol import StagingContext
from staging.resource import StagedResource
from staging.schemas import SchemaCatalog
from tests.helpers import cli_process, one_line_error, trade_resource, trades, unique

ROOT = Path(__file__).resolve().parents[2]


def write_config(tmp: Path, kafka: KafkaSettings, body: str) -> Path:
    """An ``ingest.toml`` on the test broker, with ``body`` (sources) after it."""
    path = tmp / "ingest.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            data_dir = "{tmp}"
            [kafka]
            bootstrap = "{kafka.bootstrap}"
            connect_timeout_s = 5.0
            session_timeout_ms = 6000
            heartbeat_interval_ms = 1000
            """
        )
        + textwrap.dedent(body)
    )
    return path


def trades_config(tmp: Path, kafka: KafkaSettings, source: str) -> Path:
    """One hand-declared source with the trades resource ``matches``."""
    return write_config(
        tmp,
        kafka,
        f"""
        [sources.{source}.resources.matches]
        schema_file = "coinbase/matches.avsc"
        key = ["product_id"]
        id_fields = ["product_id", "trade_id"]
        time_field = "time"
        partitions = 3
        """,
    )


class Target:
    """A sink target that keeps what it was given, refusing the trade ids in ``refuse``."""

    needs_records = True

    def __init__(self, refuse: Sequence[int] = ()) -> None:
        self.refuse = set(refuse)
        self.written: list[int] = []

    def write(self, records: Sequence[StagedRecord], token: str) -> int:
        bad = [r.record["trade_id"] for r in records if r.record["trade_id"] in self.refuse]
        if bad:
            raise BatchRejectedError(f"refused trade {bad[0]}", code=None)
        self.written += [r.record["trade_id"] for r in records]
        return len(records)


def run_sink(settings: Settings, resource: StagedResource, target: Target) -> SinkStats:
    """A real sink loop in this process (group ingest.sink.<source>, commits, checkpoints,
    dead letters) into ``target``, until nothing arrives for 3 seconds."""
    catalog = SchemaCatalog.default()
    provider = KafkaStagingProvider(settings.kafka, catalog=catalog, max_record_bytes=1_000_000)
    context = StagingContext(source=resource.source, resources=(resource,))
    with (
        provider.allocate_session(context) as session,
        closing(checkpoint_store(settings)) as store,
    ):
        worker = SinkWorker(session, {resource.topic.name: target}, checkpoints=store)
        return worker.run(idle_timeout_s=3)


def stage(settings: Settings, resource: StagedResource, writes: Sequence[tuple[int, int]]) -> None:
    """Stage trades [start, start + n) per write, each write with checkpoint {"n": index}."""
    catalog = SchemaCatalog.default()
    provider = KafkaStagingProvider(settings.kafka, catalog=catalog, max_record_bytes=1_000_000)
    context = StagingContext(source=resource.source, resources=(resource,))
    with provider.allocate_session(context) as session:
        for index, (start, n) in enumerate(writes):
            session.writer().write_batch(trades(n, start=start), checkpoint={"n": index})


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``ingest *args`` in this process: the exit code and stdout."""
    code = main(list(args))
    return code, capsys.readouterr().out


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory, kafka: KafkaSettings) -> dict[str, Any]:
    """300 trades in 3 writes sunk (trade 1000005 refused), then 40 more staged, not sunk.
    Built once per broker for the tests that only read it (they share one xdist worker)."""
    source = unique("src")
    config = trades_config(tmp_path_factory.mktemp("status"), kafka, source)
    settings = load_settings(config, env={})
    resource = trade_resource(SchemaCatalog.default(), source=source, name="matches")
    stage(settings, resource, [(0, 100), (100, 100), (200, 100)])
    stats = run_sink(settings, resource, Target(refuse=[1_000_005]))
    stage(settings, resource, [(300, 40)])
    records = read_records(settings, resource.topic.name, idle_s=2.0)
    return {
        "source": source,
        "config": config,
        "settings": settings,
        "resource": resource,
        "stats": stats,
        "records": records,
    }


@pytest.mark.xdist_group("status_staged")
def test_status_json_matches_what_the_sink_committed(
    staged: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """Committed offsets as the sink committed them, exact lag, the resume checkpoint,
    freshness from the last written record, one dead letter."""
    source, resource = staged["source"], staged["resource"]
    code, out = cli(capsys, "--config", str(staged["config"]), "status", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["version"] == 1
    (entry,) = [r for r in doc["resources"] if r["source"] == source]
    assert (entry["resource"], entry["topic"], entry["exists"]) == (
        "matches",
        resource.topic.name,
        True,
    )
    assert entry["group"] == f"ingest.sink.{source}"
    sink_committed = {
        int(name.rsplit("[", 1)[1].rstrip("]")): offset
        for name, offset in staged["stats"].committed.items()
    }
    parts = {p["partition"]: p for p in entry["partitions"]}
    assert sorted(parts) == [0, 1, 2]
    committed = {p: part["committed"] for p, part in parts.items()}
    assert {p: c for p, c in committed.items() if c is not None} == sink_committed
    assert sum(sink_committed.values()) == 300  # partitions without records have no commit
    ends = {p: 0 for p in parts}
    times: dict[tuple[int, int], str | None] = {}
    for record in staged["records"]:
        ends[record.partition] = max(ends[record.partition], record.offset + 1)
        times[(record.partition, record.offset)] = record.header(H_TIME)
    for p, part in parts.items():
        # The backlog (40 records) is under the read limit: exact, however wrong the watermark.
        assert part["lag"] == ends[p] - sink_committed.get(p, 0), part
        assert part["end_source"] == ("watermark" if part["watermark_ok"] else "read")
        newest = times[(p, sink_committed[p] - 1)] if p in sink_committed else None
        assert part["last_written_event_time"] == newest
    assert entry["lag"] == 40
    assert entry["freshness"]["last_written_event_time"] == max(
        times[(p, c - 1)] or "" for p, c in sink_committed.items()
    )
    # The checkpoint the source resumes from: the third write's, confirmed by the sink.
    with closing(checkpoint_store(staged["settings"])) as store:
        expected = resume_point(entries_in(store.load_all(), source, "matches"))
    assert expected == {"n": 2}
    assert entry["checkpoint"]["resume_from"] == expected
    assert entry["checkpoint"]["written_at"] is not None
    assert entry["checkpoint"]["partitions_saved"] == sorted(sink_committed)
    letters = entry["dead_letters"]
    assert (letters["topic"], letters["total"], letters["open"]) == (resource.dlq.name, 1, 1)
    assert "refused trade 1000005" in letters["newest_reason"]


@pytest.mark.xdist_group("status_staged")
def test_lag_is_unknown_not_wrong_when_the_watermark_is(
    staged: dict[str, Any], capsys: pytest.CaptureFixture[str], test_broker: str
) -> None:
    """With the read cut at 5 records, a partition whose high watermark is wrong (Tansu)
    shows its lag as unknown (at least 5), never the watermark's number; on Apache Kafka
    every watermark holds, and the lag is the watermark's."""
    code, out = cli(
        capsys, "--config", str(staged["config"]), "status", "--json", "--scan-limit", "5"
    )
    assert code == 0
    (entry,) = json.loads(out)["resources"]
    ends: dict[int, int] = {}
    for record in staged["records"]:
        ends[record.partition] = max(ends.get(record.partition, 0), record.offset + 1)
    wrong = 0
    for part in entry["partitions"]:
        if part["committed"] is None:
            continue  # no record in this partition
        truth = ends[part["partition"]] - part["committed"]
        if part["watermark_ok"]:
            assert part["lag"] == truth  # a consistent watermark (real Kafka) is right
        else:
            wrong += 1
            assert part["lag"] is None, part
            assert part["end"] is None
            assert 5 <= part["lag_at_least"] <= truth
            assert part["high"] < part["committed"] + 5  # why it was disbelieved
    if test_broker == "apache":
        assert wrong == 0, entry  # the check costs a read there, and changes nothing
    if wrong:
        assert entry["lag"] is None
        assert entry["watermarks_ok"] is False
    else:
        assert entry["lag"] == 40


@pytest.mark.xdist_group("status_staged")
def test_status_table(staged: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """The terminal table names the resource, its committed offsets, checkpoint and DLQ."""
    code, out = cli(capsys, "--config", str(staged["config"]), "status")
    assert code == 0
    source = staged["source"]
    assert f"{source}.matches  topic ingest.{source}.matches  group ingest.sink.{source}" in out
    assert "lag        40" in out
    assert 'checkpoint {"n":2}' in out
    assert "dead letters 1 (1 open)" in out
    assert "refused trade 1000005" in out
    assert staged["stats"].committed
    for name, offset in staged["stats"].committed.items():
        partition = name.rsplit("[", 1)[1].rstrip("]")
        assert any(line.split()[:2] == [partition, str(offset)] for line in out.splitlines()), out


def test_status_of_a_connector_source_with_nothing_staged(
    tmp_path: Path, kafka: KafkaSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    """A connector source's default resources are listed; missing topics say so."""
    source = unique("cb")
    config = write_config(tmp_path, kafka, f'[sources.{source}]\nconnector = "coinbase"\n')
    code, out = cli(capsys, "--config", str(config), "status", "--source", source, "--json")
    assert code == 0
    (entry,) = json.loads(out)["resources"]
    assert (entry["resource"], entry["exists"], entry["lag"]) == ("matches", False, None)
    assert entry["dead_letters"] is None
    assert entry["checkpoint"]["resume_from"] is None


def test_status_bad_input_is_one_line(tmp_path: Path, kafka: KafkaSettings) -> None:
    """Unknown source, malformed config, bad option value, unreachable broker: one line each."""
    source = unique("src")
    config = trades_config(tmp_path, kafka, source)
    line = one_line_error(cli_process("--config", str(config), "status", "--source", "nope"))
    assert "no source 'nope' is configured" in line and source in line
    broken = tmp_path / "broken.toml"
    broken.write_text("[kafka\nbootstrap = 1\n")
    assert "not valid TOML" in one_line_error(cli_process("--config", str(broken), "status"))
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[sources.x]\nnot_a_setting = 1\n")
    assert "invalid configuration" in one_line_error(cli_process("--config", str(wrong), "status"))
    line = one_line_error(cli_process("--config", str(config), "status", "--scan-limit", "0"))
    assert "--scan-limit must be at least 1" in line
    elsewhere = tmp_path / "down"
    elsewhere.mkdir()
    unreachable = kafka.model_copy(update={"bootstrap": f"127.0.0.1:{free_port()}"})
    down = trades_config(elsewhere, unreachable, source)
    down.write_text(down.read_text().replace("connect_timeout_s = 5.0", "connect_timeout_s = 2.0"))
    done = cli_process("--config", str(down), "status")
    assert done.returncode == 2
    # librdkafka logs its connection failures before that (as for every command).
    errors = [x for x in done.stderr.splitlines() if x.startswith("ingest: error: ")]
    assert errors == done.stderr.strip().splitlines()[-1:]
    assert f"cannot reach Kafka at {unreachable.bootstrap}" in errors[0]


def test_a_connector_not_in_the_configuration_is_seen_once_it_staged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], stack_engine: str
) -> None:
    """``ingest source run usgs`` needs no [sources.usgs]: once its topics exist, ``ingest
    status`` lists it beside the configured sources, and ``ingest dlq show earthquakes``
    finds its resource without --source. (A broker of its own: a connector's topics have
    fixed names.)"""
    from foundation.config import settings_from
    from source_workers.connectors.defaults import with_connector_defaults as defaults
    from staging.compose import schema_catalog, staged_resources, staging_provider
    from tests.conftest import start_test_broker

    broker = start_test_broker(stack_engine, tmp_path / "broker")
    try:
        kafka = KafkaSettings(bootstrap=broker.bootstrap, connect_timeout_s=5.0)
        config = write_config(tmp_path, kafka, "[sources.coinbase]\n")
        usgs = defaults(settings_from({"kafka": {"bootstrap": broker.bootstrap}}), "usgs")
        staging_provider(usgs, schema_catalog(usgs)).ensure_topics(
            staged_resources(usgs, schema_catalog(usgs), "usgs")
        )
        code, out = cli(capsys, "--config", str(config), "status", "--json", "--wait", "0.5")
        assert code == 0
        listed = {(r["source"], r["resource"]) for r in json.loads(out)["resources"]}
        assert listed == {("coinbase", "matches"), ("usgs", "earthquakes")}
        code, out = cli(
            capsys, "--config", str(config), "dlq", "show", "earthquakes", "--json", "--wait", "0.5"
        )
        assert code == 0, out
    finally:
        broker.stop()
