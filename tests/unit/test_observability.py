"""deploy/observability, checked without Prometheus or Grafana: the scrape configuration
targets the admin port the workers open, and the dashboard covers what operators watch."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "deploy" / "observability"


def test_the_scrape_config_asks_the_workers_admin_port() -> None:
    config = yaml.safe_load((FOLDER / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    static = jobs["durable-ingest"]
    targets = [t for group in static["static_configs"] for t in group["targets"]]
    assert targets and all(t.endswith(":8080") for t in targets)
    assert static["metrics_path"] == "/metrics"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for target in targets:
        service = target.split(":")[0]
        assert service in compose and compose[service]["environment"]["ADMIN_PORT"] == "8080"
    assert jobs["durable-ingest-pods"]["kubernetes_sd_configs"] == [{"role": "pod"}]


def test_the_dashboard_shows_rates_lag_freshness_dead_letters_and_latency() -> None:
    dashboard = json.loads((FOLDER / "grafana-dashboard.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for name in (
        "ingest_source_records_staged_total",
        "ingest_sink_rows_written_total",
        "ingest_sink_lag_records",
        "ingest_sink_freshness_seconds",
        "ingest_sink_dead_letters_total",
        "ingest_source_dead_letters_total",
        "ingest_sink_insert_seconds_sum",
        "ingest_sink_insert_seconds_count",
    ):
        assert name in exprs, name
    assert all(
        "by (resource)" in t["expr"]
        for p in dashboard["panels"]
        for t in p["targets"]
        if "resource" in t.get("legendFormat", "")
    )
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
