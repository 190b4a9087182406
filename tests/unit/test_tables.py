"""Avro to ClickHouse: type mapping, DDL, migrations and identifiers."""

from __future__ import annotations

import datetime as dt
from typing import Any

import fastavro
import pytest

from foundation.errors import ConfigError, SchemaEvolutionError
from sink_workers.columns import times_of_day, to_columns
from sink_workers.tables import DEDUP_WINDOW, clickhouse_type, table_spec
from staging.schemas import SchemaCatalog

EVERY_TYPE: dict[str, Any] = {
    "type": "record",
    "name": "Every",
    "fields": [
        {"name": "b", "type": "boolean"},
        {"name": "i", "type": "int"},
        {"name": "l", "type": "long"},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "s", "type": "string"},
        {"name": "raw", "type": "bytes"},
        {"name": "u", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "fx", "type": {"type": "fixed", "name": "F4", "size": 4}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "ts_ms", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "ts_us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {
            "name": "dec",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 4},
        },
        {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["a", "b"]}},
        {"name": "opt_e", "type": ["null", "E"], "default": None},
        {"name": "arr", "type": {"type": "array", "items": "long"}},
        {"name": "m", "type": {"type": "map", "values": "double"}},
        {
            "name": "rec",
            "type": {"type": "record", "name": "R", "fields": [{"name": "x", "type": "int"}]},
        },
        {"name": "opt", "type": ["null", "string"], "default": None},
        {
            "name": "opt_arr",
            "type": ["null", {"type": "array", "items": "string"}],
            "default": None,
        },
    ],
}
EXPECTED = {
    "b": "Bool",
    "i": "Int32",
    "l": "Int64",
    "f": "Float32",
    "d": "Float64",
    "s": "String",
    "raw": "String",
    "u": "UUID",
    "fx": "FixedString(4)",
    "day": "Date32",
    "ts_ms": "DateTime64(3, 'UTC')",
    "ts_us": "DateTime64(6, 'UTC')",
    "dec": "Decimal(20, 4)",
    "e": "LowCardinality(String)",
    "opt_e": "LowCardinality(Nullable(String))",
    "arr": "Array(Int64)",
    "m": "Map(String, Float64)",
    "rec": "Tuple(x Int32)",
    "opt": "Nullable(String)",
    "opt_arr": "Array(String)",
}


def every_spec(**kwargs: Any) -> Any:
    parsed = fastavro.parse_schema(EVERY_TYPE)
    return table_spec(
        parsed["fields"], database="db", table="every", order_by=kwargs.get("order_by", ("l",))
    )


def test_every_avro_type_has_its_documented_clickhouse_type() -> None:
    """The type mapping table in sink_workers/tables.py holds for every Avro type."""
    spec = every_spec()
    assert {c.name: c.type for c in spec.columns} == EXPECTED


def test_unmappable_union_names_the_field() -> None:
    """A union other than [null, T] is refused with the field's name."""
    with pytest.raises(SchemaEvolutionError, match="field odd: unions"):
        clickhouse_type(["string", "long"], "odd")


def test_table_is_idempotent_by_natural_key_and_token() -> None:
    """ReplacingMergeTree on the natural key, with a deduplication window."""
    sql = every_spec().create_sql()
    assert "ENGINE = ReplacingMergeTree" in sql and "ORDER BY (`l`)" in sql
    assert f"non_replicated_deduplication_window = {DEDUP_WINDOW}" in sql
    plain = every_spec(order_by=()).create_sql()
    assert "ENGINE = MergeTree" in plain and "ORDER BY ()" in plain


def test_trades_table(catalog: SchemaCatalog) -> None:
    """The Coinbase trade schema maps to the expected columns."""
    schema = catalog.load("coinbase/matches.avsc")
    spec = table_spec(
        schema.parsed["fields"],
        database="ingest",
        table="coinbase_matches",
        order_by=("product_id", "trade_id"),
    )
    assert [(c.name, c.type) for c in spec.columns][:5] == [
        ("product_id", "String"),
        ("trade_id", "Int64"),
        ("sequence", "Nullable(Int64)"),
        ("time", "DateTime64(6, 'UTC')"),
        ("side", "LowCardinality(String)"),
    ]


@pytest.mark.parametrize("name", ["drop table", "a;b", "1x", "x`y", ""])
def test_identifiers_are_validated(name: str) -> None:
    """Database, table and column names must be plain identifiers."""
    with pytest.raises(ConfigError, match="not a valid identifier"):
        table_spec([{"name": "a", "type": "long"}], database=name or "db", table=name, order_by=())


def test_nullable_sort_key_is_refused() -> None:
    """A nullable field cannot be in the sort key."""
    with pytest.raises(ConfigError, match="may not be nullable"):
        every_spec(order_by=("opt",))


def test_new_optional_field_adds_a_column() -> None:
    """A table missing an optional field gets an ADD COLUMN."""
    spec = every_spec()
    existing = {c.name: c.type for c in spec.columns if c.name != "opt"}
    assert spec.migration_sql(existing) == [
        "ALTER TABLE `db`.`every` ADD COLUMN IF NOT EXISTS `opt` Nullable(String)"
    ]
    assert spec.migration_sql({c.name: c.type for c in spec.columns}) == []


def test_new_required_field_is_refused() -> None:
    """A field without a default cannot be added to a table that has rows."""
    spec = every_spec()
    existing = {c.name: c.type for c in spec.columns if c.name != "s"}
    with pytest.raises(SchemaEvolutionError, match="new field 's'") as info:
        spec.migration_sql(existing)
    assert info.value.field == "s"


def test_changed_type_names_the_field_and_both_types() -> None:
    """An incompatible type change stops with the field and both types."""
    spec = every_spec()
    existing = {c.name: c.type for c in spec.columns} | {"l": "String"}
    with pytest.raises(
        SchemaEvolutionError, match="field 'l' is String in the table but Int64"
    ) as info:
        spec.migration_sql(existing)
    assert (info.value.field, info.value.table_type, info.value.schema_type) == (
        "l",
        "String",
        "Int64",
    )


def test_columns_follow_the_table_and_fill_empty_composites() -> None:
    """Records become one list per column; a null array becomes empty."""
    spec = every_spec()
    rows = [{"l": 1, "opt_arr": None, "opt": None}, {"l": 2, "opt_arr": ["x"], "opt": "y"}]
    columns = dict(zip(spec.column_names, to_columns(rows, spec), strict=True))
    assert columns["l"] == [1, 2]
    assert columns["opt_arr"] == [[], ["x"]]
    assert columns["opt"] == [None, "y"]


def test_times_of_day_become_their_integers_at_any_depth() -> None:
    """A time-millis / time-micros, which fastavro gives as a datetime.time, becomes the
    integer Avro staged: at the top level, and inside arrays, maps and records; the
    other values (other integers, nulls, strings) are kept as they are."""
    millis = {"type": "int", "logicalType": "time-millis"}
    micros = {"type": "long", "logicalType": "time-micros"}
    fields = [
        {"name": "at", "type": micros},
        {"name": "maybe", "type": ["null", millis]},
        {"name": "list", "type": {"type": "array", "items": ["null", micros]}},
        {"name": "hours", "type": {"type": "map", "values": millis}},
        {
            "name": "slots",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "Slot",
                    "fields": [
                        {"name": "n", "type": "long"},
                        {"name": "label", "type": "string"},
                        {"name": "opens", "type": millis},
                        {
                            "name": "nested",
                            "type": {"type": "map", "values": {"type": "array", "items": micros}},
                        },
                    ],
                },
            },
        },
        {"name": "plain", "type": {"type": "array", "items": "long"}},
        {"name": "again", "type": "Slot"},  # a reference to the record defined above
    ]
    spec = table_spec(fields, database="d", table="t", order_by=())
    nine = dt.time(9, 0, 0, 1234)
    nine_us = 9 * 3600 * 1_000_000 + 1234
    rows = [
        {
            "at": nine,
            "maybe": None,
            "list": [nine, None],
            "hours": {"a": nine},
            "slots": [{"n": 7, "label": "x", "opens": nine, "nested": {"k": [nine, dt.time(0)]}}],
            "plain": [5, 6],
            "again": {"n": 1, "label": "y", "opens": dt.time(0, 0, 1), "nested": {}},
        },
        {
            "at": dt.time(0),
            "maybe": nine,
            "list": [],
            "hours": {},
            "slots": [],
            "plain": [],
            "again": {"n": 2, "label": "z", "opens": nine, "nested": {"k": []}},
        },
    ]
    columns = dict(zip(spec.column_names, to_columns(rows, spec), strict=True))
    assert columns == {
        "at": [nine_us, 0],
        "maybe": [None, nine_us // 1000],
        "list": [[nine_us, None], []],
        "hours": [{"a": nine_us // 1000}, {}],
        "slots": [
            [{"n": 7, "label": "x", "opens": nine_us // 1000, "nested": {"k": [nine_us, 0]}}],
            [],
        ],
        "plain": [[5, 6], []],
        "again": [
            {"n": 1, "label": "y", "opens": 1_000, "nested": {}},
            {"n": 2, "label": "z", "opens": nine_us // 1000, "nested": {"k": []}},
        ],
    }
    assert rows[0]["list"] == [nine, None]  # the decoded records are left untouched
    # Columns without a time of day in their Avro type are not walked (nor copied).
    assert [c.name for c in spec.columns if not c.times_of_day] == ["plain"]
    assert columns["plain"][0] is rows[0]["plain"]


def test_a_record_without_fields_has_no_time_of_day() -> None:
    assert times_of_day("Tuple()") is None
    assert times_of_day("Array(Tuple())") is None
    assert times_of_day("Tuple(a Tuple(), b Int32)") is not None
