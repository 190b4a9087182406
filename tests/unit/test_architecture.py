"""The architecture stays visible: pure core without I/O, third-party clients at one edge each."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("durable_ingest", "staging", "source_workers", "sink_workers", "schemas")
PURE = (
    "staging/codec.py",
    "staging/schemas.py",
    "staging/resource.py",
    "staging/envelope.py",
    "staging/rowcheck.py",
    "staging/decoder.py",
    "staging/offsets.py",
    "staging/protocol.py",
    "staging/checkpoints.py",
    "durable_ingest/config.py",
    "durable_ingest/errors.py",
    "sink_workers/tables.py",
    "sink_workers/columns.py",
    "sink_workers/batching.py",
    "staging/deadletters.py",
    "durable_ingest/metrics.py",
    "source_workers/authoring.py",
    "source_workers/frames.py",
    "source_workers/backoff.py",
    "source_workers/buffer.py",
    "source_workers/transport/urls.py",
    "source_workers/connectors/coinbase/trades.py",
    "source_workers/connectors/coinbase/resources/matches.py",
    "source_workers/capture.py",
    "durable_ingest/progress.py",
    "durable_ingest/render.py",
    "durable_ingest/status.py",
    "sink_workers/replay_plan.py",
    "sink_workers/replay_keys.py",
    "durable_ingest/apache_kafka/layout.py",
    "staging/times.py",
    "sink_workers/sink_metrics.py",
)
IO_LIBRARIES = (
    "confluent_kafka",
    "clickhouse_connect",
    "chdb",
    "websockets",
    "socket",
    "subprocess",
)
# Where each third-party client may be imported (its adapter), and nowhere else.
EDGES = {
    "confluent_kafka": ("staging/kafka/",),
    "clickhouse_connect": ("durable_ingest/warehouse.py", "sink_workers/clickhouse/"),
    "websockets": ("source_workers/transport/",),
}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def modules() -> list[Path]:
    return [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]


@pytest.mark.parametrize("module", PURE)
def test_pure_core_does_no_io(module: str) -> None:
    """Pure modules import no Kafka, ClickHouse, websocket, socket or process library."""
    assert not imports(ROOT / module) & set(IO_LIBRARIES)


def test_third_party_clients_stay_in_their_adapter() -> None:
    """confluent_kafka only in staging/kafka/, clickhouse_connect in the warehouse modules,
    websockets only in source_workers/transport/."""
    offenders = []
    for path in modules():
        relative = path.relative_to(ROOT).as_posix()
        for library, edge in EDGES.items():
            if library in imports(path) and not relative.startswith(edge):
                offenders.append(f"{relative} imports {library}")
    assert offenders == []


def test_modules_stay_small() -> None:
    """No module passes about 400 lines: split by concept before that."""
    long = {
        p.relative_to(ROOT).as_posix(): n
        for p in modules()
        if (n := len(p.read_text().splitlines())) > 420
    }
    assert long == {}
