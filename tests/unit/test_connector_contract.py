"""Every connector follows the folder contract, so a change has one obvious place."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from source_workers.authoring import Source
from source_workers.connectors import CONNECTORS, load_connector
from staging.schemas import SchemaCatalog

ROOT = Path(__file__).resolve().parents[2] / "source_workers" / "connectors"


def test_every_connector_folder_is_a_connector() -> None:
    """Every folder under connectors/ has a pipeline.py (a folder without one would be
    silently skipped by discovery), and the examples are found."""
    folders = {
        p.name
        for p in ROOT.iterdir()
        if p.is_dir() and not p.name.startswith(("_", ".")) and p.name != "__pycache__"
    }
    assert folders == set(CONNECTORS)
    assert {"coinbase", "supabase"} <= set(CONNECTORS)


@pytest.mark.parametrize("name", CONNECTORS)
def test_connector_has_the_contract_files(name: str) -> None:
    """source.py, resources/<one per resource>.py, pipeline.py and workflow.py exist."""
    folder = ROOT / name
    for file in ("source.py", "pipeline.py", "workflow.py", "resources/__init__.py"):
        assert (folder / file).is_file(), f"{name}: {file} is missing"
    source = load_connector(name).build(name)
    files = {p.stem for p in (folder / "resources").glob("*.py") if p.stem != "__init__"}
    assert files == {r.name for r in source.resources}, "one file per resource, named after it"


@pytest.mark.parametrize("name", CONNECTORS)
def test_pipeline_composes_a_valid_source(name: str) -> None:
    """build() gives a Source whose resources' schemas load and whose defaults validate."""
    connector = load_connector(name)
    spec = connector.spec
    source = connector.build(name)
    assert isinstance(source, Source) and source.name == name
    assert isinstance(spec.env_prefix, str) and issubclass(spec.settings, BaseModel)
    catalog = SchemaCatalog.default()
    assert set(spec.checkpoint) == {r.name for r in source.resources}
    assert spec.kind in ("websocket", "http")
    for resource in source.resources:
        settings = resource.staging
        schema = catalog.load(settings.schema_file)
        assert set(settings.key) | set(settings.id_fields) <= schema.field_names


@pytest.mark.parametrize("name", CONNECTORS)
def test_resources_and_source_do_no_staging_io(name: str) -> None:
    """Connectors never import the staging providers or sinks: sources never write to sinks."""
    for path in (ROOT / name).rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(
                    ("staging.kafka", "staging.memory", "sink_workers")
                ), path


@pytest.mark.parametrize("name", CONNECTORS)
def test_workflow_is_an_entry_point(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """workflow.py's main() is ``ingest source run <its connector>`` with the process's
    arguments: an instance the configuration does not declare is refused, naming the source."""
    module = importlib.import_module(f"source_workers.connectors.{name}.workflow")
    monkeypatch.setattr(sys, "argv", ["workflow.py", "--instance", "ghost"])
    assert module.main() == 2
    err = capsys.readouterr().err
    assert f"source {name} has no instance 'ghost'" in err and err.count("\n") == 1


def test_unknown_connector_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """`ingest source run nope` names the known connectors and exits 2."""
    from durable_ingest.cli import main

    assert main(["source", "run", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no connector 'nope'" in err[0] and "coinbase" in err[0]


def test_connector_defaults_fill_in_undeclared_resources() -> None:
    """A source running a connector gets its resources' staging settings from the definitions."""
    from foundation.config import settings_from
    from source_workers.connectors.defaults import with_connector_defaults

    settings = settings_from({"sources": {"crm": {"connector": "supabase"}}})
    resources = with_connector_defaults(settings).sources["crm"].resources
    assert set(resources) == {"projects", "time_entries"}
    assert resources["projects"].id_fields == ["id", "commit_timestamp", "operation"]
    added = with_connector_defaults(settings_from({}), "coinbase")
    assert added.sources["coinbase"].resources["matches"].key == ["product_id"]


def test_a_connector_spec_that_cannot_work_is_refused_when_built() -> None:
    """A bad env_prefix or kind, settings that are no model, a replay on an HTTP
    connector: refused at once, each named."""
    from pydantic import BaseModel as Model

    from foundation.errors import SourceDefinitionError
    from source_workers.capture import ReplaySpec
    from source_workers.connectors import ConnectorSpec

    class Fine(Model):
        pass

    good = {"build": lambda name, settings=None: None, "checkpoint": {}}
    with pytest.raises(SourceDefinitionError, match="env_prefix 'demo' is not like COINBASE"):
        ConnectorSpec(**good, settings=Fine, env_prefix="demo", kind="http")
    with pytest.raises(SourceDefinitionError, match="kind 'grpc' is not one of websocket, http"):
        ConnectorSpec(**good, settings=Fine, env_prefix="DEMO", kind="grpc")  # type: ignore[arg-type]
    with pytest.raises(SourceDefinitionError, match="settings <class 'dict'> is not a pydantic"):
        ConnectorSpec(**good, settings=dict, env_prefix="DEMO", kind="http")  # type: ignore[arg-type]
    with pytest.raises(SourceDefinitionError, match="an http connector has none"):
        ConnectorSpec(
            **good, settings=Fine, env_prefix="DEMO", kind="http", replay=ReplaySpec("DEMO_WS")
        )


def test_a_pipeline_without_a_connector_spec_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder whose pipeline.py declares no CONNECTOR is refused, naming it."""
    import types

    from foundation.errors import ConfigError
    from source_workers import connectors

    monkeypatch.setattr(connectors, "CONNECTORS", (*CONNECTORS, "bare"))
    monkeypatch.setitem(
        sys.modules, "source_workers.connectors.bare.pipeline", types.ModuleType("pipeline")
    )
    with pytest.raises(ConfigError, match="connector bare: its pipeline.py declares no CONNECTOR"):
        connectors.load_connector("bare")
