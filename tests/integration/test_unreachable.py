"""With Kafka unreachable, each one-shot command ends in one error line.

librdkafka's own log line with the cause (e.g. ``Connect to ipv4#127.0.0.1:1
failed: Connection refused``) may come before it, once: the same message is
logged at most once a minute.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from durable_ingest.loopback import free_port


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
    lines = done.stderr.splitlines()
    assert lines[-1].startswith("ingest: error:") and "127.0.0.1:1" in lines[-1]
    assert sum(line.startswith("ingest: error:") for line in lines) == 1
    others = lines[:-1]
    assert all("staging.kafka.librdkafka" in line for line in others), done.stderr
    assert len(others) == len(set(_kind(line) for line in others)), done.stderr


def _kind(line: str) -> str:
    """A log line without its time and counters (what the repeat filter compares)."""
    return re.sub(r"\d+", "#", line.split(" ", 2)[-1])


@pytest.mark.parametrize("command", [["status"], ["dlq", "show", "matches"]])
def test_operations_say_an_unreachable_broker_in_one_line_within_seconds(
    tmp_path: Path, command: list[str]
) -> None:
    """kafka.command_timeout_s bounds the wait: one line naming the address, no librdkafka
    line. Set to 1 s here, so that a loaded machine's slow interpreter start (up to 6 s
    seen under the full suite) cannot be mistaken for librdkafka's own 10 s."""
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "durable_ingest.cli", *command],
        cwd=tmp_path,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("INGEST_")},
            "INGEST_KAFKA_BOOTSTRAP": address,
            "INGEST_KAFKA_COMMAND_TIMEOUT_S": "1",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"cannot reach Kafka at {address}" in done.stderr
    assert elapsed < 8  # 1 s and the interpreter's start, far from librdkafka's 10 s
