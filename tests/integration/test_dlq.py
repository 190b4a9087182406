"""``ingest dlq show`` and ``ingest dlq retry`` on the real broker: reasons, re-drives once."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from durable_ingest.operations.dlq import read_records
from durable_ingest.operations.redrive import H_REDRIVEN_FROM
from foundation.config import KafkaSettings, Settings
from foundation.config_load import load_settings
from source_workers.connectors.defaults import with_connector_defaults
from staging.compose import schema_catalog, staged_resources
from staging.deadletters import DeadLetter
from staging.decoder import EnvelopeDecoder, FixedHeaders
from staging.envelope import H_CHECKPOINT, H_ID
from staging.kafka import KafkaStagingProvider
from staging.kafka.scan import RawRecord
from staging.protocol import StagingContext
from staging.schemas import SchemaCatalog
from tests.helpers import cli_process, one_line_error, trade_resource, unique
from tests.integration.test_status_cli import (
    Target,
    cli,
    run_sink,
    stage,
    trades_config,
    write_config,
)

REFUSED = 1_000_029
"""The last trade of the only product in its partition: it carries the write's checkpoint."""


def everything(settings: Settings, topic: str) -> list[RawRecord]:
    return read_records(settings, topic, idle_s=2.0)


def dlq(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, Any]:
    """``ingest dlq *args --json`` in this process: exit code and the JSON printed."""
    code, out = cli(capsys, "--config", str(config), "dlq", *args, "--json")
    return code, json.loads(out)


def test_sink_refused_record_is_redriven_once(
    tmp_path: Path, kafka: KafkaSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    """A record the sink refused goes back to the staged topic once, without its dead-letter
    or checkpoint headers; the fixed sink writes it; a second retry re-drives nothing."""
    source = unique("src")
    config = trades_config(tmp_path, kafka, source)
    settings = load_settings(config, env={})
    resource = trade_resource(SchemaCatalog.default(), source=source, name="matches")
    stage(settings, resource, [(0, 30)])
    stats = run_sink(settings, resource, Target(refuse=[REFUSED]))
    assert stats.dead_letters == 1

    code, shown = dlq(capsys, config, "show", "matches")
    assert code == 0
    assert (shown["topic"], shown["group"], shown["total"], shown["open"]) == (
        resource.dlq.name,
        f"ingest.dlq.{source}",
        1,
        1,
    )
    (letter,) = shown["letters"]
    assert (letter["state"], letter["kind"], letter["code"]) == (
        "open",
        "sink",
        "BatchRejectedError",
    )
    assert letter["reason"] == f"refused trade {REFUSED}"
    assert letter["origin"].startswith(f"{resource.topic.name}[")
    assert f'"trade_id":{REFUSED}' in letter["preview"]
    original = next(
        r
        for r in everything(settings, resource.topic.name)
        if f"{r.topic}[{r.partition}]@{r.offset}" == letter["origin"]
    )
    assert original.header(H_CHECKPOINT) is not None  # the carrier of the write's checkpoint

    code, dry = dlq(capsys, config, "retry", "matches", "--dry-run")
    assert (code, dry["dry_run"], dry["redriven"], dry["still_failing"]) == (0, True, 1, 0)
    assert len(everything(settings, resource.topic.name)) == 30  # nothing written
    assert dlq(capsys, config, "show", "matches")[1]["open"] == 1  # nothing committed

    code, report = dlq(capsys, config, "retry", "matches")
    assert code == 0
    assert (report["redriven"], report["records_copied"], report["skipped"]) == (1, 1, 0)
    staged = everything(settings, resource.topic.name)
    assert len(staged) == 31
    (copy,) = [r for r in staged if r.header(H_REDRIVEN_FROM) is not None]
    assert (copy.key, copy.value, copy.partition) == (
        original.key,
        original.value,
        original.partition,
    )
    assert copy.header(H_ID) == original.header(H_ID)  # the same event: the sink deduplicates
    assert copy.header(H_CHECKPOINT) is None  # a re-drive never moves the source's checkpoint
    assert not [k for k, _ in copy.headers if k.startswith("ingest_dlq_")]
    assert copy.header(H_REDRIVEN_FROM) == f"{resource.dlq.name}[0]@0"

    fixed = Target()
    run_sink(settings, resource, fixed)
    assert fixed.written == [REFUSED]

    code, again = dlq(capsys, config, "retry", "matches")
    assert (code, again["redriven"], again["still_failing"], again["skipped"]) == (0, 0, 0, 1)
    assert len(everything(settings, resource.topic.name)) == 31
    code, shown = dlq(capsys, config, "show", f"{source}.matches")
    assert [x["state"] for x in shown["letters"]] == ["re-driven"]
    assert shown["open"] == 0


def match_frame(trade_id: int, price: str = "43000.10") -> bytes:
    return json.dumps(
        {
            "type": "match",
            "trade_id": trade_id,
            "sequence": 7_000 + trade_id,
            "maker_order_id": str(uuid.UUID(int=2 * trade_id)),
            "taker_order_id": str(uuid.UUID(int=2 * trade_id + 1)),
            "time": "2026-11-22T03:19:22.028459Z",
            "product_id": "BTC-USD",
            "size": "0.01",
            "price": price,
            "side": "buy",
        }
    ).encode()


def test_source_frames_are_redriven_through_the_connector(
    tmp_path: Path,
    kafka: KafkaSettings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Coinbase match frames dead-lettered for a cause now fixed are parsed, processed and
    staged without a checkpoint; a frame that still fails stays dead with its new reason."""
    for name in [n for n in os.environ if n.startswith("COINBASE_")]:
        monkeypatch.delenv(name)
    source = unique("cb")
    config = write_config(tmp_path, kafka, f'[sources.{source}]\nconnector = "coinbase"\n')
    settings = with_connector_defaults(load_settings(config, env={}), source)
    catalog = schema_catalog(settings)
    (matches,) = staged_resources(settings, catalog, source)
    provider = KafkaStagingProvider(kafka, catalog=catalog, max_record_bytes=1_000_000)
    letters = [
        (match_frame(42), "parse/process: ValueError: a bug, since fixed"),
        (match_frame(43, price="abc"), "parse/process: ValueError: price 'abc' is not a decimal"),
        (match_frame(44), "frame: MalformedFrameError: over an old size limit"),
    ]
    with provider.allocate_session(StagingContext(source=source, resources=(matches,))) as s:
        s.dead_letters().send(
            [
                DeadLetter("matches", None, frame, (), reason, "ValueError", f"source:{source}")
                for frame, reason in letters
            ]
        )

    code, shown = dlq(capsys, config, "show", "matches", "--source", source)
    assert (code, shown["total"], shown["open"]) == (0, 3, 3)
    assert [x["kind"] for x in shown["letters"]] == ["source"] * 3
    assert [x["reason"] for x in shown["letters"]] == [reason for _, reason in letters]
    assert shown["letters"][1]["preview"].startswith('{"type": "match", "trade_id": 43')

    code, dry = dlq(capsys, config, "retry", "matches", "--source", source, "--dry-run")
    assert (code, dry["redriven"], dry["rows_staged"], dry["still_failing"]) == (1, 2, 2, 1)
    assert everything(settings, matches.topic.name) == []

    code, report = dlq(capsys, config, "retry", "matches", "--source", source)
    assert code == 1  # one letter still fails
    assert (report["redriven"], report["rows_staged"], report["still_failing"]) == (2, 2, 1)
    ((offset, why),) = [(f["offset"], f["reason"]) for f in report["failures"]]
    assert offset == 1 and "price 'abc' is not a decimal" in why
    staged = everything(settings, matches.topic.name)
    decoder = EnvelopeDecoder(catalog)
    decoded = [
        decoder.decode(r.topic, r.partition, r.offset, r.key, r.value, FixedHeaders(r.headers))
        for r in staged
    ]
    assert sorted(d.record["trade_id"] for d in decoded) == [42, 44]
    assert all(r.header(H_CHECKPOINT) is None for r in staged)

    code, again = dlq(capsys, config, "retry", "matches", "--source", source)
    assert code == 1
    assert (again["redriven"], again["still_failing"], again["skipped"]) == (0, 1, 3)
    assert len(everything(settings, matches.topic.name)) == 2

    code, shown = dlq(capsys, config, "show", "matches", "--source", source)
    states = [(x["offset"], x["state"], x["requeued_as"], x["attempts"]) for x in shown["letters"]]
    assert states == [
        (0, "re-driven", None, 0),
        (1, "requeued", 3, 0),
        (2, "re-driven", None, 0),
        (3, "requeued", 4, 1),
        (4, "open", None, 2),
    ]
    assert shown["open"] == 1
    assert "price 'abc' is not a decimal" in shown["letters"][4]["reason"]
    assert shown["letters"][3]["reason"].startswith("parse/process: retry 1: ValueError")
    assert shown["letters"][4]["reason"].startswith("parse/process: retry 2: ValueError")
    code, out = cli(capsys, "--config", str(config), "dlq", "show", "matches", "--limit", "2")
    assert code == 0
    assert "5 dead letter(s), 1 open" in out and "(the newest 2; --limit 0 shows all)" in out
    assert "@4  " in out and "@2  " not in out


def test_dlq_bad_input_is_one_line(tmp_path: Path, kafka: KafkaSettings) -> None:
    """Unknown resource (listing the known ones), unknown source, malformed config, bad limit."""
    source = unique("src")
    config = trades_config(tmp_path, kafka, source)
    line = one_line_error(cli_process("--config", str(config), "dlq", "show", "nope"))
    assert "no resource is called 'nope'" in line and f"{source}.matches" in line
    line = one_line_error(
        cli_process("--config", str(config), "dlq", "retry", "nope", "--source", source)
    )
    assert f"source {source} has no resource 'nope' (known: {source}.matches;" in line
    line = one_line_error(
        cli_process("--config", str(config), "dlq", "retry", "matches", "--source", "ghost")
    )
    assert "no source 'ghost' is configured" in line
    broken = tmp_path / "broken.toml"
    broken.write_text("data_dir = [\n")
    line = one_line_error(cli_process("--config", str(broken), "dlq", "show", "matches"))
    assert "not valid TOML" in line
    line = one_line_error(
        cli_process("--config", str(config), "dlq", "show", "matches", "--limit", "-1")
    )
    assert "--limit must be 0 (all) or more" in line
    line = one_line_error(
        cli_process("--config", str(config), "dlq", "show", "matches", "--wait", "0")
    )
    assert "--wait must be more than 0 seconds" in line
