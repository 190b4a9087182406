"""The public surface changes only on purpose: each package's ``__all__`` is recorded here,
every name in it resolves, and every top-level package ships ``py.typed``.

A failure here after an intended change: update SURFACE, and say it in CHANGELOG.md.
"""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOP_LEVEL = ("foundation", "staging", "source_workers", "sink_workers", "schemas", "durable_ingest")
SURFACE: dict[str, list[str]] = {
    "foundation": [
        "BackoffError",
        "ConfigError",
        "DeadLetterError",
        "IngestError",
        "Metrics",
        "RetryError",
        "Settings",
        "StopError",
        "load_settings",
        "settings_from",
    ],
    "staging": [
        "CarriedCheckpoint",
        "Checkpoint",
        "CheckpointStore",
        "DeadLetter",
        "OffsetRange",
        "Partition",
        "RecordReader",
        "RecordWriter",
        "SchemaCatalog",
        "StagedBatch",
        "StagedRecord",
        "StagedResource",
        "StagedSchema",
        "StagingContext",
        "StagingProvider",
        "StagingSession",
        "TopicSpec",
        "WriteResult",
        "resume_point",
    ],
    "staging.kafka": ["KafkaCheckpointStore", "KafkaStagingProvider", "KafkaStagingSession"],
    "staging.memory": [
        "InMemoryCheckpointStore",
        "MemoryBroker",
        "MemoryStagingProvider",
        "MemoryStagingSession",
    ],
    "source_workers": [
        "Internal",
        "Output",
        "ReplaySpec",
        "Resource",
        "RuntimeStats",
        "Source",
        "SourceContext",
        "define_resource",
        "define_source",
    ],
    "source_workers.connectors": [
        "CONNECTORS",
        "Connector",
        "ConnectorSpec",
        "connector_of",
        "load_connector",
    ],
    "source_workers.transport": [
        "HttpResponse",
        "HttpTransport",
        "Stream",
        "StreamOptions",
        "StreamStopped",
        "WebSocketTransport",
        "masked_url",
    ],
    "sink_workers": [
        "AvroTableTarget",
        "RetryPolicy",
        "SinkStats",
        "SinkWorker",
        "StreamTarget",
        "TableSpec",
        "TableTarget",
        "Target",
        "table_spec",
        "table_target",
    ],
    "sink_workers.clickhouse": [],
    "schemas": ["SCHEMAS_DIR"],
    "durable_ingest": ["__version__"],
    "durable_ingest.apache_kafka": ["KafkaCluster", "KafkaJars", "kafka_jars"],
    "durable_ingest.commands": ["Subcommands"],
    "durable_ingest.operations": [],
}


def packages() -> list[str]:
    """Every project package but the connector folders (their modules are the contract)."""
    found = []
    for init in sorted(ROOT.glob("*/**/__init__.py")):
        parts = init.parent.relative_to(ROOT).parts
        if (
            parts[0] in TOP_LEVEL
            and "templates" not in parts
            and parts[:2]
            != (
                "source_workers",
                "connectors",
            )
        ):
            found.append(".".join(parts))
    return [*found, "source_workers.connectors"]


def test_every_package_is_recorded() -> None:
    assert sorted(packages()) == sorted(SURFACE)


@pytest.mark.parametrize("package", sorted(SURFACE))
def test_exported_names_are_the_recorded_ones(package: str) -> None:
    module = importlib.import_module(package)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{package} declares no __all__"
    assert sorted(exported) == sorted(SURFACE[package])
    missing = [name for name in exported if not hasattr(module, name)]
    assert missing == []


def test_every_top_level_package_ships_py_typed() -> None:
    """The marker is in the tree and in the wheel's package data (PEP 561)."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package in TOP_LEVEL:
        assert (ROOT / package / "py.typed").is_file(), package
        assert "py.typed" in data["package-data"].get(package, []), package
