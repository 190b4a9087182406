"""``ingest source run <source> --replay``: a hand-started source fed from a capture, offline,
as ``ingest dev --replay`` feeds its own (the path of ``ingest stack up`` plus workers)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from foundation.config import KafkaSettings
from source_workers.replay_feed import sample_capture
from tests.helpers import trade_keys, unique
from tests.integration.conftest import Spawn
from tests.integration.pipeline import read_topic
from tests.integration.source_helpers import process_env, source_config, wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_source_run_replays_the_shipped_capture_and_stages_every_trade(
    tmp_path: Path, kafka: KafkaSettings, spawn: Spawn
) -> None:
    """Every trade of the capture is staged once; the source then keeps running until
    SIGTERM, and exits 0."""
    source = unique("rp")
    env = process_env(source_config(tmp_path, kafka, source, "coinbase"), "COINBASE_")
    log = (tmp_path / "source.log").open("w")
    process = spawn(
        [sys.executable, "-m", "source_workers", source, "--replay", "--speed", "50"],
        cwd=ROOT,
        env=env,
        stderr=log,
    )
    log.close()
    wait_for(lambda: "capture played" in (tmp_path / "source.log").read_text(), 120, "the capture")
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0, (tmp_path / "source.log").read_text()[-3000:]
    staged = read_topic(kafka.bootstrap, f"ingest.{source}.matches")
    assert {(r.product, r.trade_id) for r in staged} == trade_keys(sample_capture("coinbase"))
    assert len(staged) == len({r.event_id for r in staged})


def test_a_capture_of_another_connector_is_one_line(
    tmp_path: Path, kafka: KafkaSettings, spawn: Spawn
) -> None:
    """A capture recorded from another connector is refused before anything starts."""
    other = tmp_path / "other.jsonl"
    lines = sample_capture("coinbase").read_text().splitlines()
    other.write_text("\n".join([lines[0].replace('"coinbase"', '"supabase"'), *lines[1:3]]) + "\n")
    env = process_env(source_config(tmp_path, kafka, unique("rp"), "coinbase"), "COINBASE_")
    process = spawn(
        [
            sys.executable,
            "-m",
            "durable_ingest.cli",
            "source",
            "run",
            "coinbase",
            "--replay",
            str(other),
        ],
        cwd=ROOT,
        env=env,
    )
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert err.count("\n") == 1 and "was recorded from connector supabase, not coinbase" in err
