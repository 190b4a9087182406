"""The component manifest: checked in, valid against its schema, and true to the code."""

from __future__ import annotations

import copy
import inspect
import json
from pathlib import Path
from typing import Any, get_args

import jsonschema
import pytest
from pydantic import BaseModel, ConfigDict, Field, SecretStr, create_model

import durable_ingest
from durable_ingest import manifest as manifest_module
from durable_ingest.cli import main
from durable_ingest.commands.manifest import check, default_file, first_difference
from durable_ingest.manifest import REGENERATE, build, render
from foundation.config import settings_from
from foundation.config_load import connector_settings
from foundation.errors import StopError
from sink_workers.run import table_name
from sink_workers.tables import table_spec
from source_workers.connectors import CONNECTORS, load_connector
from source_workers.connectors.defaults import with_connector_defaults
from staging.compose import staged_resources
from staging.schemas import SchemaCatalog

ROOT = Path(__file__).resolve().parents[2]
MANIFEST_FILE = ROOT / "docs" / "manifest.json"
SCHEMA_FILE = ROOT / "docs" / "manifest.schema.json"


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return build()


@pytest.fixture
def outside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the CLI from an empty folder, so no ingest.toml is read."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("INGEST_CONFIG", raising=False)
    return tmp_path


def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_checked_in_manifest_matches_the_code(manifest: dict[str, Any]) -> None:
    """docs/manifest.json is exactly what the code builds; the failure says how to regenerate."""
    text = MANIFEST_FILE.read_text(encoding="utf-8")
    where = first_difference(manifest, json.loads(text)) or "formatting only"
    assert text == render(manifest), (
        f"docs/manifest.json is out of date with the code ({where}): run `{REGENERATE}` "
        "and commit the result"
    )


def test_manifest_is_deterministic_and_machine_free(manifest: dict[str, Any]) -> None:
    """Two builds give the same text, with no absolute path of this machine in it."""
    text = render(manifest)
    assert render(build()) == text
    assert str(ROOT) not in text and "site-packages" not in text and "/tmp" not in text


def test_manifest_validates_against_its_schema(manifest: dict[str, Any]) -> None:
    """The manifest is valid against docs/manifest.schema.json (draft 2020-12, with an $id)."""
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] and schema["title"] and schema["description"]
    errors = [f"{e.json_path}: {e.message}" for e in validator().iter_errors(manifest)]
    assert errors == []


def test_schema_refuses_what_the_manifest_must_not_hold(manifest: dict[str, Any]) -> None:
    """The schema is strict: an unknown key, or a default shown for a secret, is invalid."""
    extra = copy.deepcopy(manifest)
    extra["connectors"]["coinbase"]["resources"]["matches"]["surprise"] = 1
    leaked = copy.deepcopy(manifest)
    leaked["connectors"]["supabase"]["settings"]["fields"]["anon_key"]["default"] = "k"
    for bad in (extra, leaked):
        assert not validator().is_valid(bad)


def test_every_connector_and_resource_is_described(manifest: dict[str, Any]) -> None:
    """Every connector of CONNECTORS is there, with the resources, keys, functions and
    checkpoints its build() and pipeline declare."""
    assert set(manifest["connectors"]) == set(CONNECTORS)
    for name in CONNECTORS:
        connector = load_connector(name)
        source = connector.build(name)
        entry = manifest["connectors"][name]
        assert entry["kind"] == connector.spec.kind
        assert entry["source"]["dead_letters"] == source.dead_letters
        assert set(entry["resources"]) == {r.name for r in source.resources}
        for resource in source.resources:
            described = entry["resources"][resource.name]
            assert described["key"] == resource.staging.key
            assert described["id_fields"] == resource.staging.id_fields
            assert described["time_field"] == resource.staging.time_field
            assert described["schema"]["file"] == resource.staging.schema_file
            assert described["checkpoint"] == connector.spec.checkpoint[resource.name]
            for role in ("parse", "process"):
                module, _, qualname = described[role].partition(":")
                assert inspect.getmodule(getattr(resource, role)) is not None
                assert qualname.split(".")[-1] in (
                    getattr(getattr(resource, role), "__name__", ""),
                    "__call__",
                ), f"{name}.{resource.name}.{role}: {described[role]}"
                assert module.startswith("source_workers.connectors.")


def test_schemas_match_the_avro_files(manifest: dict[str, Any]) -> None:
    """Fields (in order), required flags, record name and fingerprint are the .avsc files'."""
    catalog = SchemaCatalog.default()
    for entry in manifest["connectors"].values():
        for described in entry["resources"].values():
            schema = catalog.load(described["schema"]["file"])
            fields = described["schema"]["fields"]
            assert [f["name"] for f in fields] == [f["name"] for f in schema.parsed["fields"]]
            assert {f["name"] for f in fields if f["required"]} == schema.required_fields
            assert described["schema"]["record"] == schema.name
            assert described["schema"]["fingerprint"] == schema.fingerprint_hex


def test_topics_and_tables_are_what_sources_and_sinks_compute(manifest: dict[str, Any]) -> None:
    """Topic, dead-letter topic and table (with its columns) are those the workers derive for
    a configured source of the connector's name."""
    catalog = SchemaCatalog.default()
    for name, entry in manifest["connectors"].items():
        settings = with_connector_defaults(settings_from({"sources": {name: {}}}))
        for staged in staged_resources(settings, catalog, name):
            described = entry["resources"][staged.name]
            assert described["staging"]["topic"] == staged.topic.name
            assert described["staging"]["dead_letter_topic"] == staged.dlq.name
            assert described["staging"]["partitions"] == staged.topic.partitions
            assert described["staging"]["consumer_group"] == f"ingest.sink.{name}"
            spec = table_spec(
                staged.schema.parsed["fields"],
                database="default",
                table=table_name(name, staged.name),
                order_by=staged.id_fields,
            )
            assert described["target"]["table"] == spec.table
            assert described["target"]["columns"] == [
                {"name": c.name, "type": c.type} for c in spec.columns
            ]
    matches = manifest["connectors"]["coinbase"]["resources"]["matches"]
    assert matches["staging"]["topic"] == "ingest.coinbase.matches"
    assert matches["staging"]["dead_letter_topic"] == "ingest.coinbase.matches.dlq"
    assert matches["target"]["table"] == "coinbase_matches"


def test_settings_env_names_are_the_ones_connector_settings_reads(
    manifest: dict[str, Any],
) -> None:
    """Setting every variable the manifest names sets every field of the model through
    connector_settings (aliases included), and nothing else."""
    for name, entry in manifest["connectors"].items():
        connector = load_connector(name)
        model = connector.spec.settings
        fields = entry["settings"]["fields"]
        assert entry["settings"]["env_prefix"] == connector.spec.env_prefix
        assert set(fields) == set(model.model_fields)
        # Same names and aliases, no validators: each variable's effect is visible alone.
        probe: type[BaseModel] = create_model(
            f"{name.capitalize()}Probe",
            __config__=ConfigDict(extra="forbid"),
            **{f: (Any, Field(None, alias=i.alias)) for f, i in model.model_fields.items()},
        )
        env = {fields[f]["env"]: f"value of {f}" for f in fields}
        read = connector_settings(probe, connector.spec.env_prefix, env)
        assert {f: getattr(read, f) for f in fields} == {f: f"value of {f}" for f in fields}


def test_settings_env_names_reach_the_real_models(manifest: dict[str, Any]) -> None:
    """A variable named in the manifest changes the real settings, e.g. the alias SUPABASE_SCHEMA."""
    supabase = manifest["connectors"]["supabase"]["settings"]["fields"]
    assert supabase["db_schema"]["env"] == "SUPABASE_SCHEMA"
    env = {
        supabase["url"]["env"]: "https://abcd.supabase.co",
        supabase["anon_key"]["env"]: "anon",
        supabase["db_schema"]["env"]: "crm",
    }
    model = load_connector("supabase").spec.settings
    assert connector_settings(model, "SUPABASE", env).db_schema == "crm"
    coinbase = manifest["connectors"]["coinbase"]["settings"]["fields"]
    env = {coinbase["products"]["env"]: "SOL-USD"}
    model = load_connector("coinbase").spec.settings
    assert connector_settings(model, "COINBASE", env).products == ("SOL-USD",)


def _has_secret(annotation: Any) -> bool:
    return annotation is SecretStr or any(_has_secret(a) for a in get_args(annotation))


def test_secrets_are_marked_and_their_defaults_never_shown(manifest: dict[str, Any]) -> None:
    """SecretStr settings are secret with no default; a secret's default never reaches the text."""
    for name, entry in manifest["connectors"].items():
        model = load_connector(name).spec.settings
        for field, info in model.model_fields.items():
            described = entry["settings"]["fields"][field]
            assert described["secret"] is _has_secret(info.annotation), field
            if described["secret"]:
                assert "default" not in described, field
    keys = manifest["connectors"]["supabase"]["settings"]["fields"]
    assert keys["service_role_key"]["secret"] and keys["anon_key"]["secret"]

    class WithSecret(BaseModel):
        token: SecretStr = SecretStr("hunter2")
        plain: str = "shown"

    described = manifest_module._settings(WithSecret, "DEMO")
    assert "hunter2" not in json.dumps(described)
    assert described["fields"]["plain"]["default"] == "shown"


def test_components_exist_and_implement_their_protocols(manifest: dict[str, Any]) -> None:
    """Each listed implementation defines every method of its Protocol; docs paths exist."""
    for protocol in manifest["components"]["protocols"].values():
        assert protocol["methods"]
        for implementation in protocol["implementations"]:
            module, _, name = implementation.partition(":")
            cls = getattr(__import__(module, fromlist=[name]), name)
            missing = [m for m in protocol["methods"] if not hasattr(cls, m)]
            assert missing == [], f"{implementation} lacks {missing}"
    context = manifest["extension_points"]["source.start"]["context"]
    assert {"checkpoint", "connect", "emit_raw", "sleep", "spawn"} <= set(context["methods"])
    assert "http" in context["attributes"]
    for path in manifest["architecture"]["docs"].values():
        assert (ROOT / path).is_file(), path


def test_first_difference_names_the_path() -> None:
    """Missing, extra and changed values, list lengths and types are named in one line."""
    code = {"a": {"b": [1, 2], "c": True}, "d": "x"}
    assert first_difference(code, copy.deepcopy(code)) is None
    assert first_difference(code, {"a": {"b": [1, 2]}, "d": "x"}) == (
        "a.c: the code has true, the file has nothing"
    )
    assert first_difference(code, {**code, "e": 1}).startswith("e: the file has 1")
    assert first_difference(code, {**code, "a": {"b": [1], "c": True}}) == (
        "a.b: the code has 2 items, the file has 1"
    )
    assert first_difference(code, {**code, "a": {"b": [1, 2], "c": 1}}).startswith("a.c:")
    assert first_difference(code, {**code, "a": {"b": [1, 3], "c": True}}).startswith("a.b[1]:")


def test_check_reports_a_drift_in_one_line(
    manifest: dict[str, Any], outside: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A manifest whose resource key differs from the code fails --check, naming the path."""
    drifted = copy.deepcopy(manifest)
    drifted["connectors"]["coinbase"]["resources"]["matches"]["key"] = ["trade_id"]
    file = outside / "manifest.json"
    file.write_text(render(drifted), encoding="utf-8")
    assert main(["manifest", "--check", str(file)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ingest: error: ")
    assert "connectors.coinbase.resources.matches.key[0]" in err[0]
    assert f"ingest manifest --out {file}" in err[0]


def test_check_refuses_same_manifest_written_differently(
    manifest: dict[str, Any], outside: Path
) -> None:
    """Equal JSON in another layout still fails: the checked-in text must be render()'s."""
    file = outside / "manifest.json"
    file.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(StopError, match="not as `ingest manifest` writes it"):
        check(file, manifest)
    file.write_text(render(manifest), encoding="utf-8")
    check(file, manifest)


def test_cli_prints_writes_and_checks(outside: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`ingest manifest` prints valid JSON; --out writes the same text, which --check accepts."""
    assert main(["manifest"]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed) == build()
    assert main(["manifest", "--out", "m.json"]) == 0
    assert (outside / "m.json").read_text(encoding="utf-8") == printed
    assert main(["manifest", "--check", "m.json"]) == 0
    assert main(["manifest", "--check"]) == 0  # the checkout's docs/manifest.json
    capsys.readouterr()


@pytest.mark.parametrize("content", [None, "{not json", ""])
def test_check_of_a_bad_file_is_one_line(
    content: str | None, outside: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing or non-JSON file: one `ingest: error:` line and exit 2."""
    file = outside / "manifest.json"
    if content is not None:
        file.write_text(content, encoding="utf-8")
    assert main(["manifest", "--check", str(file)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ingest: error: ") and str(file) in err[0]


def test_installed_package_without_docs_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--check without FILE, from an installed package (no docs/ beside it), says what to do."""
    installed = tmp_path / "site-packages" / "durable_ingest" / "__init__.py"
    monkeypatch.setattr(durable_ingest, "__file__", str(installed))
    with pytest.raises(StopError, match="installed package") as raised:
        default_file()
    assert "\n" not in str(raised.value) and "--check FILE" in str(raised.value)


def test_manifest_needs_no_valid_deployment_config(
    outside: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A broken ./ingest.toml stops the workers, not the commands about the code."""
    (outside / "ingest.toml").write_text("[kafka\n")
    assert main(["status"]) == 2
    assert "is not valid TOML" in capsys.readouterr().err
    assert main(["manifest"]) == 0
    assert json.loads(capsys.readouterr().out)["connectors"]
