"""Every Avro type of docs/type-mapping.md, through both write paths, into the real engine.

For each type, the same staged values go once through the Python path
(decoded here, columns, ``ClickHouseTableWriter.insert``) and once through
ClickHouse's Avro input (``AvroTableTarget``: the staged bodies in one
container file, ``insert_avro``); the two tables must read back equal, row
for row. A type whose values differ is one :func:`sink_workers.tables.avro_input_gaps`
must send down the Python path: that is checked too.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from foundation.config import ClickHouseSettings
from foundation.errors import BatchRejectedError
from sink_workers.clickhouse.warehouse import open_warehouse
from sink_workers.clickhouse.writer import ClickHouseTableWriter
from sink_workers.tables import avro_input_gaps, table_spec
from sink_workers.targets import AvroTableTarget, TableTarget, table_target
from staging.decoder import EnvelopeDecoder, FixedHeaders, StagedRecord
from staging.envelope import encode_value
from staging.schemas import SchemaCatalog, StagedSchema

UTC = dt.UTC
RECORD = {
    "type": "record",
    "name": "Point",
    "fields": [
        {"name": "x", "type": "long"},
        {"name": "label", "type": "string"},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {
            "name": "amount",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 6},
        },
    ],
}
POINT = {
    "x": 7,
    "label": "p",
    "at": dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    "amount": Decimal("1.5"),
}

# name: (Avro type of the field ``v``, the values staged, in order)
CASES: dict[str, tuple[Any, list[Any]]] = {
    "boolean": ("boolean", [True, False]),
    "int": ("int", [0, -(2**31), 2**31 - 1]),
    "long": ("long", [0, -(2**63), 2**63 - 1]),
    "float": ("float", [0.0, 1.5, -3.25e10, float("inf")]),
    "double": ("double", [0.0, 1e300, -2.5, float("-inf")]),
    "string": ("string", ["", "héllo ✓", "x" * 1000, "a\x00b"]),
    "bytes": ("bytes", [b"", b"\x00\xff", bytes(range(256))]),
    "uuid": (
        {"type": "string", "logicalType": "uuid"},
        [str(uuid.UUID(int=0)), "0b9e1e3c-5d41-4c8e-9f6e-3a1b2c3d4e5f"],
    ),
    "fixed": ({"type": "fixed", "name": "Four", "size": 4}, [b"\x00\x01\x02\x03", b"abcd"]),
    "date": (
        {"type": "int", "logicalType": "date"},
        [dt.date(1970, 1, 1), dt.date(2026, 12, 5), dt.date(1900, 1, 1), dt.date(2299, 12, 31)],
    ),
    "time-millis": (
        {"type": "int", "logicalType": "time-millis"},
        [dt.time(0), dt.time(23, 59, 59, 999000)],
    ),
    "time-micros": (
        {"type": "long", "logicalType": "time-micros"},
        [dt.time(0), dt.time(23, 59, 59, 999999)],
    ),
    "timestamp-millis": (
        {"type": "long", "logicalType": "timestamp-millis"},
        [
            dt.datetime(1970, 1, 1, tzinfo=UTC),
            dt.datetime(2026, 12, 5, 1, 2, 3, 123000, tzinfo=UTC),
            dt.datetime(1960, 6, 1, tzinfo=UTC),
        ],
    ),
    "timestamp-micros": (
        {"type": "long", "logicalType": "timestamp-micros"},
        [
            dt.datetime(1970, 1, 1, tzinfo=UTC),
            dt.datetime(2026, 12, 5, 1, 2, 3, 123456, tzinfo=UTC),
            dt.datetime(1960, 6, 1, tzinfo=UTC),
        ],
    ),
    "decimal-bytes": (
        {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 12},
        [Decimal(0), Decimal("-123.456"), Decimal("99999999999999999999999999.999999999999")],
    ),
    "decimal-fixed": (
        {
            "type": "fixed",
            "name": "Money",
            "size": 8,
            "logicalType": "decimal",
            "precision": 18,
            "scale": 4,
        },
        [Decimal(0), Decimal("-12345678901234.5678"), Decimal("0.0001")],
    ),
    "decimal-small": (
        {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2},
        [Decimal("1234567.89"), Decimal("-0.01")],
    ),
    "enum": ({"type": "enum", "name": "Side", "symbols": ["buy", "sell"]}, ["buy", "sell"]),
    "nullable-long": (["null", "long"], [None, 5]),
    "nullable-string": (["null", "string"], [None, "x"]),
    "nullable-enum": (
        ["null", {"type": "enum", "name": "Kind", "symbols": ["a", "b"]}],
        [None, "b"],
    ),
    "nullable-decimal": (
        ["null", {"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 2}],
        [None, Decimal("3.14")],
    ),
    "nullable-timestamp": (
        ["null", {"type": "long", "logicalType": "timestamp-micros"}],
        [None, dt.datetime(2026, 1, 1, tzinfo=UTC)],
    ),
    "array": ({"type": "array", "items": "long"}, [[], [1, 2, 3]]),
    "array-of-nullable": ({"type": "array", "items": ["null", "string"]}, [[], ["a", None]]),
    "array-of-records": ({"type": "array", "items": RECORD}, [[], [POINT, POINT]]),
    "map": ({"type": "map", "values": "long"}, [{}, {"a": 1, "b": -2}]),
    "map-of-decimals": (
        {
            "type": "map",
            "values": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 3},
        },
        [{}, {"a": Decimal("1.250")}],
    ),
    "record": (RECORD, [POINT]),
    "nullable-array": (["null", {"type": "array", "items": "long"}], [None, [4]]),
    "nullable-map": (["null", {"type": "map", "values": "string"}], [None, {"k": "v"}]),
    "nullable-boolean": (["null", "boolean"], [None, True]),
    "nullable-uuid": (
        ["null", {"type": "string", "logicalType": "uuid"}],
        [None, "0b9e1e3c-5d41-4c8e-9f6e-3a1b2c3d4e5f"],
    ),
    "nullable-fixed": (["null", {"type": "fixed", "name": "Two", "size": 2}], [None, b"ab"]),
    "nullable-date": (
        ["null", {"type": "int", "logicalType": "date"}],
        [None, dt.date(2020, 1, 1)],
    ),
    "null-second": (["long", "null"], [5, None]),
    "nullable-array-of-records": (["null", {"type": "array", "items": RECORD}], [None, [POINT]]),
    "record-in-record": (
        {
            "type": "record",
            "name": "Outer",
            "fields": [
                {"name": "inner", "type": RECORD},
                {"name": "n", "type": ["null", "long"], "default": None},
            ],
        },
        [{"inner": POINT, "n": None}, {"inner": POINT, "n": 3}],
    ),
    "array-of-arrays": (
        {"type": "array", "items": {"type": "array", "items": "long"}},
        [[[1], [2, 3]]],
    ),
    "array-of-maps": ({"type": "array", "items": {"type": "map", "values": "long"}}, [[{"a": 1}]]),
    "array-of-enums": (
        {"type": "array", "items": {"type": "enum", "name": "E", "symbols": ["a", "b"]}},
        [["a", "b"]],
    ),
    "array-of-uuids": (
        {"type": "array", "items": {"type": "string", "logicalType": "uuid"}},
        [[str(uuid.UUID(int=5))]],
    ),
    "map-of-arrays": (
        {"type": "map", "values": {"type": "array", "items": "string"}},
        [{"a": ["x"]}],
    ),
    "times-in-an-array": (
        {"type": "array", "items": {"type": "long", "logicalType": "time-micros"}},
        [[], [dt.time(1), dt.time(23, 59, 59, 999999)]],
    ),
    "times-in-a-map": (
        {"type": "map", "values": {"type": "int", "logicalType": "time-millis"}},
        [{}, {"open": dt.time(9, 30), "close": dt.time(16, 0, 0, 5000)}],
    ),
    "times-in-records-in-an-array": (
        {
            "type": "array",
            "items": {
                "type": "record",
                "name": "Session",
                "fields": [
                    {"name": "opens", "type": {"type": "int", "logicalType": "time-millis"}},
                    {
                        "name": "breaks",
                        "type": {
                            "type": "array",
                            "items": ["null", {"type": "long", "logicalType": "time-micros"}],
                        },
                    },
                    {"name": "n", "type": "long"},
                ],
            },
        },
        [[{"opens": dt.time(8), "breaks": [dt.time(12, 0, 0, 1), None], "n": 3}]],
    ),
    "nan": ("double", [float("nan")]),
    "dates-outside-date32": (
        {"type": "int", "logicalType": "date"},
        [dt.date(1800, 1, 1), dt.date(2500, 1, 1)],
    ),
    "timestamps-outside-datetime64": (
        {"type": "long", "logicalType": "timestamp-micros"},
        [dt.datetime(1800, 1, 1, tzinfo=UTC), dt.datetime(2500, 1, 1, tzinfo=UTC)],
    ),
}


@pytest.fixture(scope="module")
def client(clickhouse: ClickHouseSettings) -> Iterator[Client]:
    warehouse = open_warehouse(clickhouse)
    yield warehouse
    warehouse.close()


def schema_of(case: str, avro: Any) -> StagedSchema:
    return StagedSchema.from_json(
        {
            "type": "record",
            "name": "Row",
            "namespace": f"test.{case.replace('-', '_')}",
            "fields": [{"name": "id", "type": "long"}, {"name": "v", "type": avro}],
        },
        f"test/{case}.avsc",
    )


def staged(schema: StagedSchema, values: list[Any]) -> list[StagedRecord]:
    """The values of ``v`` as staged records (ids 0, 1, ...), decoded."""
    catalog = SchemaCatalog(Path("unused"))
    catalog.register(schema)
    decoder = EnvelopeDecoder(catalog)
    return [
        decoder.decode("t", 0, i, None, encode_value(schema, {"id": i, "v": v}), FixedHeaders(()))
        for i, v in enumerate(values)
    ]


def written(
    client: Client, schema: StagedSchema, records: list[StagedRecord], avro: bool
) -> list[tuple[Any, ...]]:
    spec = table_spec(
        schema.parsed["fields"],
        database=f"types_{uuid.uuid4().hex[:8]}",
        table="t",
        order_by=("id",),
    )
    writer = ClickHouseTableWriter(client, spec)
    writer.ensure()
    try:
        target = AvroTableTarget(writer, schema) if avro else TableTarget(writer, schema)
        assert target.write(records, f"types:{uuid.uuid4().hex}") == len(records)
        return client.query(f"SELECT * FROM {spec.qualified} ORDER BY id").result_rows
    finally:
        client.command(f"DROP DATABASE {spec.database}")


@pytest.mark.parametrize("case", sorted(CASES))
def test_both_write_paths_store_the_same_values(client: Client, case: str) -> None:
    avro, values = CASES[case]
    schema = schema_of(case, avro)
    records = staged(schema, values)
    assert avro_input_gaps(schema.parsed["fields"]) == []
    by_python = written(client, schema, records, avro=False)
    by_avro = written(client, schema, records, avro=True)
    assert len(by_python) == len(values)
    assert repr(by_avro) == repr(by_python)  # repr: NaN equals itself


def test_a_nullable_record_takes_the_python_path(client: Client) -> None:
    """ClickHouse has no nullable Tuple; the Python path refuses a null record (it is
    dead-lettered), so such a resource is written through the Python path."""
    schema = schema_of("nullable-record", ["null", RECORD])
    (gap,) = avro_input_gaps(schema.parsed["fields"])
    assert "'v'" in gap and "nullable record" in gap
    spec = table_spec(schema.parsed["fields"], database="default", table="unused", order_by=("id",))
    target = table_target(ClickHouseTableWriter(client, spec), schema)
    assert type(target) is TableTarget
    assert (
        type(table_target(ClickHouseTableWriter(client, spec), schema_of("long", "long")))
        is AvroTableTarget
    )
    with pytest.raises(BatchRejectedError):
        written(client, schema, staged(schema, [None]), avro=True)
