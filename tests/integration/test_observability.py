"""deploy/observability against running workers: every metric the Grafana dashboard
queries is served on a source's or a sink's /metrics."""

from __future__ import annotations

import json
import re
import signal
import sys
import urllib.request
from pathlib import Path

from durable_ingest.loopback import free_port
from foundation.config import KafkaSettings
from tests.helpers import unique
from tests.integration.conftest import Spawn
from tests.integration.source_helpers import process_env, source_config, wait_for

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "observability" / "grafana-dashboard.json"


def queried_metrics() -> set[str]:
    """Every ``ingest_*`` name in the dashboard's queries."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    return {name for e in exprs for name in re.findall(r"\bingest_[a-z_]+", e)}


def served(port: int) -> set[str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return set()
    return {ln.split("{")[0].split(" ")[0] for ln in text.splitlines() if ln and ln[0] != "#"}


def test_every_dashboard_metric_is_served_by_a_running_worker(
    tmp_path: Path, kafka: KafkaSettings, spawn: Spawn
) -> None:
    source = unique("ob")
    env = process_env(source_config(tmp_path, kafka, source, "coinbase"), "COINBASE_")
    sink_port, source_port = free_port(), free_port()
    sink = spawn(
        [sys.executable, "-m", "sink_workers", "--source", source, "--admin-port", str(sink_port)],
        cwd=ROOT,
        env=env,
    )
    worker = spawn(
        [
            sys.executable,
            "-m",
            "source_workers",
            source,
            "--replay",
            "--speed",
            "20",
            "--admin-port",
            str(source_port),
        ],
        cwd=ROOT,
        env=env,
    )
    wanted = queried_metrics()
    assert len(wanted) >= 8
    wait_for(
        lambda: wanted <= served(sink_port) | served(source_port),
        120,
        f"the dashboard's metrics: {sorted(wanted)}",
    )
    for process in (worker, sink):
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
        assert process.returncode == 0
