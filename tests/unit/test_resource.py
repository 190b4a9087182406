"""Resource definitions: names, keys, topics and schemas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from foundation.config import settings_from
from foundation.errors import ConfigError, SchemaError, UnknownResourceError
from staging.compose import staged_resources
from staging.protocol import StagingContext
from staging.resource import StagedResource, TopicSpec
from staging.schemas import SchemaCatalog


def define(catalog: SchemaCatalog, **kwargs: object) -> StagedResource:
    args: dict[str, object] = {
        "source": "coinbase",
        "name": "matches",
        "schema": catalog.load("coinbase/matches.avsc"),
        "key": ("product_id",),
    }
    args.update(kwargs)
    return StagedResource.define(**args)  # type: ignore[arg-type]


def test_default_topics(catalog: SchemaCatalog) -> None:
    """Staging goes to ingest.<source>.<resource>, dead letters to <topic>.dlq."""
    resource = define(catalog)
    assert resource.topic.name == "ingest.coinbase.matches"
    assert resource.dlq.name == "ingest.coinbase.matches.dlq"
    assert resource.topic.kafka_config(max_message_bytes=2_000_000) == {
        "retention.ms": str(7 * 24 * 3600 * 1000),
        "min.insync.replicas": "1",
        "max.message.bytes": "2000000",
    }
    replicated = TopicSpec("t", replication_factor=3)
    assert replicated.kafka_config()["min.insync.replicas"] == "2"


@pytest.mark.parametrize("name", ["Matches", "1abc", "has-dash", "a.b", "", "x" * 64])
def test_invalid_names_are_refused(catalog: SchemaCatalog, name: str) -> None:
    """Names must be safe as topic parts and ClickHouse identifiers."""
    with pytest.raises(ConfigError, match="name"):
        define(catalog, name=name)


def test_key_fields_must_exist(catalog: SchemaCatalog) -> None:
    """A key or id field that the schema lacks is named."""
    with pytest.raises(ConfigError, match="key field 'venue'"):
        define(catalog, key=("venue",))
    with pytest.raises(ConfigError, match="id_fields field 'nope'"):
        define(catalog, id_fields=("nope",))


def test_topic_spec_limits() -> None:
    """Partitions and retention are validated."""
    with pytest.raises(ConfigError, match="partitions"):
        TopicSpec("t", partitions=0)
    with pytest.raises(ConfigError, match="retention_ms"):
        TopicSpec("t", retention_ms=0)
    with pytest.raises(ConfigError, match="topic name"):
        TopicSpec("bad topic")


def test_context_refuses_unknown_resources(catalog: SchemaCatalog) -> None:
    """Asking a context for a resource it does not declare names what it has."""
    context = StagingContext(source="coinbase", resources=(define(catalog),))
    assert context.resource().name == "matches"
    with pytest.raises(UnknownResourceError, match=r"no resource 'level2' \(declared: matches\)"):
        context.resource("level2")


def test_resources_from_settings(catalog: SchemaCatalog) -> None:
    """The shipped ingest.toml declares coinbase.matches with its topic settings."""
    from foundation.config_load import load_settings

    settings = load_settings(Path(__file__).parents[2] / "ingest.toml", env={})
    (resource,) = staged_resources(settings, catalog)
    assert resource.qualified_name == "coinbase.matches"
    assert resource.id_fields == ("product_id", "trade_id")
    with pytest.raises(UnknownResourceError, match="no source 'nope'"):
        staged_resources(settings, catalog, source="nope")


def test_unknown_schema_file_is_named(catalog: SchemaCatalog) -> None:
    """A schema path that does not exist gives a SchemaError naming it."""
    settings = settings_from(
        {"sources": {"s": {"resources": {"r": {"schema_file": "nope.avsc", "key": ["a"]}}}}}
    )
    with pytest.raises(SchemaError, match=r"schema nope\.avsc: cannot read"):
        staged_resources(settings, catalog)


def test_invalid_schema_is_refused(tmp_path: Path) -> None:
    """A schema file that is not an Avro record is refused with its path."""
    (tmp_path / "bad.avsc").write_text(
        json.dumps({"type": "record", "name": "X", "fields": [{"name": "a"}]})
    )
    (tmp_path / "notjson.avsc").write_text("{")
    catalog = SchemaCatalog(tmp_path)
    with pytest.raises(SchemaError, match="bad.avsc: not valid Avro"):
        catalog.load("bad.avsc")
    with pytest.raises(SchemaError, match="notjson.avsc: not JSON"):
        catalog.load("notjson.avsc")
    with pytest.raises(SchemaError, match="outside the schemas folder"):
        catalog.load("../etc/passwd")


def test_every_shipped_schema_loads() -> None:
    """Every .avsc under schemas/ parses and has a distinct fingerprint."""
    schemas = SchemaCatalog.default().load_all()
    assert schemas
    assert len({s.header for s in schemas}) == len(schemas)


def test_fingerprint_collision_with_a_different_schema_is_refused(tmp_path: Path) -> None:
    """Two schemas that differ only in a decimal's scale share a fingerprint: refused."""
    base = json.loads((Path(__file__).parents[2] / "schemas/coinbase/matches.avsc").read_text())
    (tmp_path / "v1.avsc").write_text(json.dumps(base))
    changed = json.loads(json.dumps(base))
    changed["fields"][5]["type"]["scale"] = 8
    (tmp_path / "v2.avsc").write_text(json.dumps(changed))
    (tmp_path / "copy.avsc").write_text(json.dumps(base, indent=2))
    catalog = SchemaCatalog(tmp_path)
    v1 = catalog.load("v1.avsc")
    assert catalog.load("copy.avsc") is v1  # the same schema under two paths is fine
    with pytest.raises(SchemaError, match="has the fingerprint of v1.avsc but differs"):
        catalog.load("v2.avsc")
