"""The usgs connector end to end: the local test feed, the real broker, chDB.

``ingest dev usgs`` runs the embedded broker, the source and the sink as
separate processes; it stops once the feed's revisions are staged, and the
rows are then read back with ``ingest sql``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.servers.usgs import UsgsProvider

QUAKES = 20


def ingest(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "durable_ingest.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_every_revision_reaches_clickhouse_once(tmp_path: Path) -> None:
    """Through a 503, a 500 and a malformed feature: every revision is a row, the bad
    feature one dead letter, and polling again stages only what changed."""
    drop = ("INGEST_", "USGS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["USGS_POLL_INTERVAL_S"] = "0.2"
    data = str(tmp_path / "data")
    dev = ("dev", "usgs", "--data-dir", data)
    with UsgsProvider(quakes=QUAKES, malformed=True, errors=[503, 500]) as feed:
        env["USGS_URL"] = feed.url
        revisions = feed.revisions()
        done = ingest(*dev, "--max-events", str(len(revisions)), cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert feed.polls >= 2
        # Restarted, the source has no memory of the revisions: it stages the window
        # again, and the natural key (id, updated) keeps one row per revision.
        again = ingest(*dev, "--max-events", str(QUAKES), cwd=tmp_path, env=env)
        assert again.returncode == 0, again.stdout + again.stderr
    assert f"done: {len(revisions)} records staged" in done.stdout, done.stdout
    assert " 1 dead letters" in done.stdout, done.stdout
    for run in (done, again):
        assert f"usgs_earthquakes: {len(revisions)} rows" in run.stdout, run.stdout
    query = ingest(
        "sql",
        "SELECT id, toUnixTimestamp64Milli(updated) FROM usgs_earthquakes FINAL ORDER BY id, updated",
        "--format",
        "json",
        "--data-dir",
        data,
        cwd=tmp_path,
        env=env,
    )
    assert query.returncode == 0, query.stderr
    assert [tuple(row) for row in json.loads(query.stdout)["rows"]] == revisions
    latest = ingest(
        "sql",
        "SELECT count(), countIf(status = 'reviewed') FROM "
        "(SELECT id, argMax(status, updated) AS status FROM usgs_earthquakes FINAL GROUP BY id)",
        "--format",
        "json",
        "--data-dir",
        data,
        cwd=tmp_path,
        env=env,
    )
    assert latest.returncode == 0, latest.stderr
    assert json.loads(latest.stdout)["rows"] == [[QUAKES, len(revisions) - QUAKES]]
