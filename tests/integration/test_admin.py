"""The admin HTTP port: /health and /metrics on loopback."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from foundation.admin import AdminServer
from foundation.metrics import Metrics


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.parametrize(("healthy", "code"), [(True, 200), (False, 503)])
def test_health_and_metrics(healthy: bool, code: int) -> None:
    """/health says 200 or 503 with the worker's state; /metrics serves the registry."""
    metrics = Metrics()
    metrics.inc("sink_rows_written_total", 3, {"resource": "matches"})
    server = AdminServer(metrics, lambda: {"healthy": healthy, "batches": 1})
    try:
        status, body = get(server.port, "/health")
        assert status == code and json.loads(body) == {"healthy": healthy, "batches": 1}
        status, body = get(server.port, "/metrics")
        assert status == 200 and 'ingest_sink_rows_written_total{resource="matches"} 3' in body
        assert get(server.port, "/nope")[0] == 404
    finally:
        server.close()
