"""Staged records cross process boundaries: written by one, read by others."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from schemas import SCHEMAS_DIR
from tests.helpers import trades, unique

ROOT = Path(__file__).resolve().parents[2]


def run(args: list[str], bootstrap: str, *, module: bool = True) -> dict:  # type: ignore[type-arg]
    env = {**os.environ, "INGEST_KAFKA_BOOTSTRAP": bootstrap, "PYTHONPATH": str(ROOT)}
    command = (
        [sys.executable, "-m", "tests.integration.staging_proc", *args]
        if module
        else [sys.executable, *args]
    )
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_offsets_are_committed_only_when_the_reader_marks_batches_written(
    kafka_bootstrap: str,
) -> None:
    """Process A stages; B reads without committing; C re-reads everything and commits."""
    source, resource, group = unique("s"), unique("r"), unique("g")
    assert run(["write", source, resource, "-n", "250"], kafka_bootstrap) == {"count": 250}
    expected = sorted(r["trade_id"] for r in trades(250))
    b = run(
        ["read", source, resource, "--group", group, "-n", "250", "--no-commit"], kafka_bootstrap
    )
    assert sorted(b["ids"]) == expected and b["committed"] == 0
    c = run(["read", source, resource, "--group", group, "-n", "250", "--commit"], kafka_bootstrap)
    assert sorted(c["ids"]) == expected
    assert c["committed"] == 250  # next offsets summed over partitions = records read


def test_plain_consumer_decodes_with_only_the_schemas_folder(kafka_bootstrap: str) -> None:
    """A consumer with only confluent-kafka, fastavro and schemas/ decodes staged records."""
    source, resource = unique("s"), unique("r")
    run(["write", source, resource, "-n", "40"], kafka_bootstrap)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests/integration/plain_consumer.py"),
            kafka_bootstrap,
            f"ingest.{source}.{resource}",
            "40",
            str(SCHEMAS_DIR),
        ],
        cwd="/",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert sorted(line["record"]["trade_id"] for line in lines) == sorted(
        r["trade_id"] for r in trades(40)
    )
    first = lines[0]
    assert first["key"] == first["record"]["product_id"]
    assert first["headers"]["ce_type"] == resource
    assert first["headers"]["ce_source"] == f"/ingest/{source}"
    assert len({line["headers"]["ce_id"] for line in lines}) == 40
    # The checkpoint rides on the last record of each partition the write touched.
    last = {}
    for line in lines:
        last[line["partition"]] = max(last.get(line["partition"], -1), line["offset"])
    carriers = {
        (line["partition"], line["offset"]) for line in lines if "ce_checkpoint" in line["headers"]
    }
    assert carriers == set(last.items())
