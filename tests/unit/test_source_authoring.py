"""The authoring API: definitions are checked, process() results are normalised or refused."""

from __future__ import annotations

from typing import Any

import pytest

from foundation.config import ResourceSettings
from foundation.errors import ConfigError, SourceDefinitionError, UnknownResourceError
from source_workers.authoring import Output, define_resource, define_source, normalize


async def _start(_ctx: Any) -> None:
    return None


def _resource(name: str = "trades") -> Any:
    return define_resource(
        name=name,
        schema="coinbase/matches.avsc",
        key=("product_id",),
        parse=lambda raw: raw,
        process=lambda payload, _at: [payload],
    )


def test_source_owns_its_resources() -> None:
    """A source lists its resources and finds them by name; dead letters default to the first."""
    source = define_source(name="demo", resources=[_resource("a"), _resource("b")], start=_start)
    assert source.resource("b").name == "b"
    assert source.dead_letters == "a"


def test_unknown_resource_names_source_resource_and_value() -> None:
    """An event for an undeclared resource fails with the source, resource and value."""
    source = define_source(name="demo", resources=[_resource()], start=_start)
    with pytest.raises(UnknownResourceError) as info:
        source.resource("nope", {"id": 7})
    message = str(info.value)
    assert "demo" in message and "'nope'" in message and "{'id': 7}" in message
    assert info.value.source == "demo" and info.value.resource == "nope"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"resources": []}, "at least one resource"),
        ({"resources": [_resource(), _resource()]}, "declared twice"),
        ({"dead_letters": "other"}, "unknown resource 'other'"),
    ],
)
def test_bad_source_definitions_are_refused(kwargs: dict[str, Any], words: str) -> None:
    """Empty, duplicated or mis-named definitions fail at definition time."""
    arguments: dict[str, Any] = {"name": "demo", "resources": [_resource()], "start": _start}
    arguments.update(kwargs)
    with pytest.raises(SourceDefinitionError, match=words):
        define_source(**arguments)


def test_bad_names_are_refused() -> None:
    """Source and resource names must be safe as topic and table names."""
    with pytest.raises(ConfigError):
        define_source(name="Bad-Name", resources=[_resource()], start=_start)
    with pytest.raises(ConfigError):
        _resource("Trades!")


@pytest.mark.parametrize(
    ("value", "records", "checkpoint"),
    [
        (None, [], None),
        ([{"a": 1}], [{"a": 1}], None),
        (Output([{"a": 1}], {"seq": 2}), [{"a": 1}], {"seq": 2}),
        (([{"a": 1}], {"seq": 3}), [{"a": 1}], {"seq": 3}),
        (Output([], {"seq": 4}), [], {"seq": 4}),
    ],
)
def test_process_results_are_normalised(value: Any, records: Any, checkpoint: Any) -> None:
    """None drops, a list is records, Output or a pair adds a checkpoint."""
    got_records, got_checkpoint = normalize("demo", "trades", value)
    assert list(got_records) == records and got_checkpoint == checkpoint


@pytest.mark.parametrize(
    "value", [{"a": 1}, "text", 5, [1, 2], Output([{"a": 1}], [1]), ([{"a": 1}], "cp")]
)
def test_other_process_results_name_source_resource_and_value(value: Any) -> None:
    """Any other shape is a wiring mistake: the error names the source, resource and value."""
    with pytest.raises(SourceDefinitionError) as info:
        normalize("demo", "trades", value)
    assert "source demo, resource trades" in str(info.value)
    assert info.value.resource == "trades"


def test_a_resources_staging_is_its_configuration_view() -> None:
    """A resource's staging defaults are the [sources.x.resources.y] table's own model."""
    staging = _resource().staging
    assert isinstance(staging, ResourceSettings)
    assert staging.schema_file == "coinbase/matches.avsc" and staging.key == ["product_id"]
    assert staging.target == "clickhouse" and staging.partitions == 3


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"target": "s3"}, "target must be 'clickhouse' or 'kafka:<topic>'"),
        ({"partitions": 0}, "partitions: Input should be greater than or equal to 1"),
        ({"retention_ms": -2}, "retention_ms"),
    ],
)
def test_bad_staging_defaults_are_refused_where_the_resource_is_defined(
    change: dict[str, Any], words: str
) -> None:
    """A connector with a bad default fails at define_resource, naming the resource and
    the setting, not later when the settings are resolved."""
    with pytest.raises(SourceDefinitionError) as info:
        define_resource(
            name="trades",
            schema="coinbase/matches.avsc",
            key=("product_id",),
            parse=lambda raw: raw,
            process=lambda payload, _at: [payload],
            **change,
        )
    assert str(info.value).startswith("resource trades: ") and words in str(info.value)
