"""With Kafka unreachable, each one-shot command says so in exactly one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["status", "--json"],
        ["dlq", "show", "matches"],
        ["replay", "--resource", "matches", "--from", "earliest", "--dry-run"],
    ],
)
def test_an_unreachable_broker_is_one_line(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "ingest.toml").write_text('[sources.coinbase]\nconnector = "coinbase"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env.update(INGEST_KAFKA_BOOTSTRAP="127.0.0.1:1", INGEST_KAFKA_CONNECT_TIMEOUT_S="1")
    done = subprocess.run(
        [sys.executable, "-m", "durable_ingest.cli", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("ingest: error:") and "127.0.0.1:1" in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
