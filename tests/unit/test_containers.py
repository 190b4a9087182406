"""Staged values into Avro container files, and which writer schemas ClickHouse can take."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest

from sink_workers.batching import by_partition
from sink_workers.containers import ContainerFormat, zigzag_long
from sink_workers.tables import avro_input_gaps, table_spec, writer_gaps
from staging.decoder import EnvelopeDecoder, FixedHeaders, StagedRecord
from staging.envelope import encode_value
from staging.schemas import SchemaCatalog, StagedSchema
from tests.helpers import trades


def test_zigzag_long_is_avro_long_encoding() -> None:
    for n in (0, -1, 1, 63, -64, 64, 2**31, -(2**63), 2**63 - 1):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, "long", n)
        assert zigzag_long(n) == buf.getvalue(), n


def test_a_container_reads_back_as_the_staged_records(catalog: SchemaCatalog) -> None:
    """An independent Avro reader (fastavro) reads the container file: the writer schema
    from its header, then every body, equal to what the staged values decode to."""
    schema = catalog.load("coinbase/matches.avsc")
    values = [encode_value(schema, row) for row in trades(25)]
    container = ContainerFormat(schema).container(values)
    reader = fastavro.reader(io.BytesIO(container))
    assert reader.metadata["avro.codec"] == "null"
    decoder = EnvelopeDecoder(catalog)
    decoded = [
        decoder.decode("t", 0, i, None, v, FixedHeaders(())).record for i, v in enumerate(values)
    ]
    assert list(reader) == decoded
    assert ContainerFormat(schema).container(values) == container  # the same bytes every time


def test_an_empty_container_has_no_records(catalog: SchemaCatalog) -> None:
    schema = catalog.load("coinbase/matches.avsc")
    assert list(fastavro.reader(io.BytesIO(ContainerFormat(schema).container([])))) == []


def version(fields: list[dict[str, Any]], name: str = "V") -> StagedSchema:
    return StagedSchema.from_json(
        {"type": "record", "name": "Row", "namespace": f"test.{name}", "fields": fields},
        f"test/{name}.avsc",
    )


ID = {"name": "id", "type": "long"}
NOTE = {"name": "note", "type": ["null", "string"], "default": None}


def spec_of(schema: StagedSchema) -> Any:
    return table_spec(schema.parsed["fields"], database="db", table="t", order_by=("id",))


@pytest.mark.parametrize(
    ("added", "fits"),
    [
        (NOTE, True),  # nullable, default null: ClickHouse fills NULL
        ({"name": "n", "type": "long", "default": 0}, True),
        ({"name": "s", "type": "string", "default": ""}, True),
        ({"name": "a", "type": {"type": "array", "items": "long"}, "default": []}, True),
        ({"name": "n", "type": "long", "default": 5}, False),  # ClickHouse would write 0
        ({"name": "s", "type": "string", "default": "x"}, False),
        ({"name": "s", "type": ["string", "null"], "default": ""}, False),  # Nullable: NULL
        ({"name": "u", "type": {"type": "string", "logicalType": "uuid"}, "default": ""}, False),
    ],
)
def test_an_older_writer_fits_when_clickhouse_fills_the_added_field_with_its_default(
    added: dict[str, Any], fits: bool
) -> None:
    old = version([ID], "old")
    current = version([ID, added], "new")
    gaps = writer_gaps(old.parsed["fields"], current.parsed["fields"], spec_of(current))
    assert (gaps == []) is fits, gaps
    assert writer_gaps(current.parsed["fields"], current.parsed["fields"], spec_of(current)) == []


def test_a_writer_whose_field_changed_type_does_not_fit() -> None:
    old = version([{"name": "id", "type": "int"}], "old")
    current = version([ID], "new")
    (gap,) = writer_gaps(old.parsed["fields"], current.parsed["fields"], spec_of(current))
    assert "'id' is Int32 here but Int64 in the table" in gap


def test_nullable_records_anywhere_are_gaps() -> None:
    record = {"type": "record", "name": "P", "fields": [ID]}
    fields = [
        {"name": "a", "type": ["null", record]},
        {"name": "b", "type": {"type": "array", "items": ["null", {**record, "name": "Q"}]}},
        {"name": "c", "type": {**record, "name": "R"}},
        {"name": "d", "type": ["null", {"type": "array", "items": "long"}]},
    ]
    gaps = avro_input_gaps(version(fields).parsed["fields"])
    assert [g.split(":")[0] for g in gaps] == ["field 'a'", "field 'b'"]


def test_inserts_are_cut_per_partition_and_writer_schema(catalog: SchemaCatalog) -> None:
    """Two writer versions interleaved in one partition: one insert each, in first-seen
    order, each token tagged with its fingerprint; one version alone keeps the plain token."""
    old, new = version([ID], "old"), version([ID, NOTE], "new")

    def record(offset: int, schema: StagedSchema, partition: int = 0) -> StagedRecord:
        value = encode_value(schema, {"id": offset})
        return StagedRecord("t", partition, offset, None, schema, value, FixedHeaders(()))

    records = [record(0, old), record(1, new), record(2, old), record(3, new), record(4, old, 1)]
    groups = by_partition(records)
    assert [(g.partition, [r.offset for r in g.records]) for g in groups] == [
        (0, [0, 2]),
        (0, [1, 3]),
        (1, [4]),
    ]
    assert groups[0].token.endswith(":" + old.fingerprint_hex)
    assert groups[1].token.endswith(":" + new.fingerprint_hex)
    assert groups[2].token == "t:1:4-4:"
    assert groups[0].halves()[0].schema_tag == old.fingerprint_hex
