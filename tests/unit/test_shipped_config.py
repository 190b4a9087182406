"""The shipped ingest.toml names every setting, and every connector variable, that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from foundation.config import (
    AdminSettings,
    ClickHouseSettings,
    KafkaSettings,
    ResourceSettings,
    RuntimeSettings,
    StagingSettings,
)
from foundation.config_load import load_settings
from source_workers.connectors import CONNECTORS, load_connector

TEXT = (Path(__file__).parents[2] / "ingest.toml").read_text()


@pytest.mark.parametrize(
    "model",
    [
        KafkaSettings,
        ClickHouseSettings,
        StagingSettings,
        AdminSettings,
        RuntimeSettings,
        ResourceSettings,
    ],
)
def test_every_worker_setting_is_shown(model: type[BaseModel]) -> None:
    missing = [
        name
        for name in model.model_fields
        if name not in ("producer", "consumer")
        and not re.search(rf"^#? ?{name} =", TEXT, re.MULTILINE)
    ]
    missing += [f"[kafka.{t}]" for t in ("producer", "consumer") if f"[kafka.{t}]" not in TEXT]
    assert missing == []


@pytest.mark.parametrize("name", CONNECTORS)
def test_every_connector_variable_is_named(name: str) -> None:
    connector = load_connector(name)
    names = [
        f"{connector.spec.env_prefix}_{(field.alias or field_name).upper()}"
        for field_name, field in connector.spec.settings.model_fields.items()
    ]
    assert [n for n in names if n not in TEXT] == []


def test_it_loads_as_it_is() -> None:
    settings = load_settings(Path(__file__).parents[2] / "ingest.toml", env={})
    assert set(settings.sources) == {"coinbase"}
