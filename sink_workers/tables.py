"""ClickHouse tables from Avro schemas: the type mapping, the DDL, the migrations.

Pure code. One resource is one table; its columns are the schema's fields in
order. The mapping (see docs/type-mapping.md):

=====================================  ==========================================
Avro                                   ClickHouse
=====================================  ==========================================
boolean / int / long                   Bool / Int32 / Int64
float / double                         Float32 / Float64
string / bytes                         String
string + logicalType uuid              UUID
fixed(n)                               FixedString(n)
int + date                             Date32
int + time-millis / long + time-micros Int32 / Int64 (time of day, as given)
long + timestamp-millis / -micros      DateTime64(3, 'UTC') / DateTime64(6, 'UTC')
bytes|fixed + decimal(p, s)            Decimal(p, s)
enum                                   LowCardinality(String) (new symbols need no ALTER)
array<T>                               Array(T)
map<T>                                 Map(String, T)
record                                 Tuple(name T, ...)
[null, T]                              Nullable(T) (T scalar) or T with its default
=====================================  ==========================================

The engine is ``ReplacingMergeTree`` ordered by the resource's natural key (so
a replay that re-inserts a key collapses to one row at merge time, and
``FINAL`` reads see one row at once), with ``non_replicated_deduplication_window``
set so that a retried insert carrying the same deduplication token is dropped
by the server immediately. Without a natural key: ``MergeTree`` with the same
window, and deduplication by token only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from foundation.errors import ConfigError, SchemaEvolutionError

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
DEDUP_WINDOW = 10_000
"""Inserts remembered per table for token deduplication (ClickHouse's default is 0: none)."""

_PRIMITIVES = {
    "boolean": "Bool",
    "int": "Int32",
    "long": "Int64",
    "float": "Float32",
    "double": "Float64",
    "string": "String",
    "bytes": "String",
}
# Types that ClickHouse cannot wrap in Nullable().
_NOT_NULLABLE = ("Array(", "Map(", "Tuple(", "LowCardinality(")


def identifier(kind: str, name: str) -> str:
    """``name`` back-quoted, if it is a safe ClickHouse identifier; else ConfigError."""
    if not IDENTIFIER.match(name):
        raise ConfigError(
            f"{kind} name {name!r} is not a valid identifier: use letters, digits and '_', "
            "starting with a letter or '_'"
        )
    return f"`{name}`"


def clickhouse_type(avro: Any, where: str, named: dict[str, str] | None = None) -> str:
    """The ClickHouse type for an Avro type (parsed by fastavro), or SchemaEvolutionError.

    ``named`` maps the names of records, enums and fixeds defined earlier in
    the schema to their ClickHouse types, for later references by name.
    """
    named = {} if named is None else named
    if isinstance(avro, str):
        if avro in _PRIMITIVES:
            return _PRIMITIVES[avro]
        if avro in named:
            return named[avro]
        raise SchemaEvolutionError(
            f"field {where}: Avro type {avro!r} has no ClickHouse mapping", field=where
        )
    if isinstance(avro, list):
        branches = [b for b in avro if b != "null"]
        if len(branches) != 1:
            raise SchemaEvolutionError(
                f"field {where}: unions other than [null, T] have no ClickHouse mapping",
                field=where,
            )
        inner = clickhouse_type(branches[0], where, named)
        if len(branches) == len(avro):  # no null branch
            return inner
        if inner == "LowCardinality(String)":
            return "LowCardinality(Nullable(String))"
        # Array, Map and Tuple cannot be Nullable: a null is written as empty.
        return inner if inner.startswith(_NOT_NULLABLE) else f"Nullable({inner})"
    result = _complex_type(avro, where, named)
    if avro.get("type") in ("record", "enum", "fixed") and "name" in avro:
        named[avro["name"]] = result
    return result


def _complex_type(avro: dict[str, Any], where: str, named: dict[str, str]) -> str:
    kind = avro.get("type")
    logical = avro.get("logicalType")
    if logical == "decimal":
        return f"Decimal({int(avro['precision'])}, {int(avro.get('scale', 0))})"
    if logical == "timestamp-micros":
        return "DateTime64(6, 'UTC')"
    if logical == "timestamp-millis":
        return "DateTime64(3, 'UTC')"
    if logical == "date":
        return "Date32"
    if logical == "uuid":
        return "UUID"
    if kind == "enum":
        return "LowCardinality(String)"
    if kind == "fixed":
        return f"FixedString({int(avro['size'])})"
    if kind == "array":
        return f"Array({clickhouse_type(avro['items'], where + '[]', named)})"
    if kind == "map":
        return f"Map(String, {clickhouse_type(avro['values'], where + '{}', named)})"
    if kind == "record":
        parts = [
            f"{identifier('field', f['name'])[1:-1]} "
            f"{clickhouse_type(f['type'], where + '.' + f['name'], named)}"
            for f in avro["fields"]
        ]
        return f"Tuple({', '.join(parts)})"
    return clickhouse_type(kind, where, named)


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str
    has_default: bool
    times_of_day: bool = False
    """A ``time-millis`` / ``time-micros`` somewhere in its Avro type (decoded as a
    ``datetime.time``, stored as the integer: :mod:`sink_workers.columns`)."""


@dataclass(frozen=True, slots=True)
class TableSpec:
    """A resource's table: where it lives, its columns and its sort key."""

    database: str
    table: str
    columns: tuple[Column, ...]
    order_by: tuple[str, ...]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def qualified(self) -> str:
        return f"{identifier('database', self.database)}.{identifier('table', self.table)}"

    def create_sql(self) -> str:
        columns = ",\n  ".join(f"{identifier('column', c.name)} {c.type}" for c in self.columns)
        if self.order_by:
            engine = "ReplacingMergeTree"
            order = ", ".join(identifier("column", n) for n in self.order_by)
        else:
            engine, order = "MergeTree", ""
        return (
            f"CREATE TABLE IF NOT EXISTS {self.qualified} (\n  {columns}\n)\n"
            f"ENGINE = {engine}\nORDER BY ({order})\n"
            f"SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}"
        )

    def migration_sql(self, existing: Mapping[str, str]) -> list[str]:
        """ALTERs that bring a table with ``existing`` columns (name -> type) to this spec.

        A new field with a default (an optional field) adds a column. Anything
        else that differs raises :class:`SchemaEvolutionError` naming the field
        and both types.
        """
        statements = []
        for column in self.columns:
            have = existing.get(column.name)
            if have is None:
                if not column.has_default:
                    raise SchemaEvolutionError(
                        f"table {self.database}.{self.table}: new field {column.name!r} ({column.type}) "
                        "has no default; only optional fields can be added to an existing table",
                        field=column.name,
                    )
                statements.append(
                    f"ALTER TABLE {self.qualified} ADD COLUMN IF NOT EXISTS "
                    f"{identifier('column', column.name)} {column.type}"
                )
            elif _normalise(have) != _normalise(column.type):
                raise SchemaEvolutionError(
                    f"table {self.database}.{self.table}: field {column.name!r} is {have} in the table "
                    f"but {column.type} in the schema; this change is not compatible",
                    field=column.name,
                    table_type=have,
                    schema_type=column.type,
                )
        return statements


def _normalise(type_name: str) -> str:
    return type_name.replace(" ", "")


def table_spec(
    schema_fields: Sequence[Mapping[str, Any]],
    *,
    database: str,
    table: str,
    order_by: Sequence[str],
) -> TableSpec:
    """The table for a parsed Avro record schema's fields."""
    identifier("database", database)
    identifier("table", table)
    columns = []
    named: dict[str, str] = {}
    timed: dict[str, bool] = {}
    for f in schema_fields:
        identifier("column", f["name"])
        columns.append(
            Column(
                f["name"],
                clickhouse_type(f["type"], f["name"], named),
                "default" in f,
                holds_time_of_day(f["type"], timed),
            )
        )
    names = {c.name for c in columns}
    for key in order_by:
        if key not in names:
            raise ConfigError(f"table {database}.{table}: order-by field {key!r} is not a column")
        if next(c for c in columns if c.name == key).type.startswith("Nullable("):
            raise ConfigError(
                f"table {database}.{table}: order-by field {key!r} may not be nullable"
            )
    return TableSpec(database, table, tuple(columns), tuple(order_by))


_TIME_OF_DAY = ("time-millis", "time-micros")


def holds_time_of_day(avro: Any, named: dict[str, bool] | None = None) -> bool:
    """Whether an Avro type (parsed by fastavro) has a time-millis or time-micros in
    it, at any depth; ``named`` as in :func:`clickhouse_type`, for the records defined
    earlier in the schema."""
    named = {} if named is None else named
    if isinstance(avro, str):
        return named.get(avro, False)
    if isinstance(avro, list):
        return any([holds_time_of_day(branch, named) for branch in avro])
    if not isinstance(avro, dict):
        return False
    kind = avro.get("type")
    if avro.get("logicalType") in _TIME_OF_DAY:
        result = True
    elif kind == "array":
        result = holds_time_of_day(avro["items"], named)
    elif kind == "map":
        result = holds_time_of_day(avro["values"], named)
    elif kind == "record":
        # Every field, so that the records defined inside are all named.
        result = any([holds_time_of_day(f["type"], named) for f in avro["fields"]])
    else:
        result = holds_time_of_day(kind, named) if isinstance(kind, (dict, list)) else False
    if kind in ("record", "enum", "fixed") and "name" in avro:
        named[avro["name"]] = result
    return result


def avro_input_gaps(fields: Sequence[Mapping[str, Any]]) -> list[str]:
    """Fields (of a parsed Avro record schema) whose values ClickHouse's Avro input
    would store other than the Python path does: such a resource is written
    through the Python path. Measured type by type by
    ``tests/integration/test_avro_input_types.py``; see docs/type-mapping.md."""
    gaps: list[str] = []
    for f in fields:
        reason = _avro_input_gap(f["type"])
        if reason is not None:
            gaps.append(f"field {f['name']!r}: {reason}")
    return gaps


def _avro_input_gap(avro: Any) -> str | None:
    if isinstance(avro, list):
        branches = [b for b in avro if b != "null"]
        if len(branches) < len(avro) and any(
            isinstance(b, dict) and b.get("type") == "record" for b in branches
        ):
            return "a nullable record: the Python path refuses a null (no Tuple is nullable)"
        return next((g for g in map(_avro_input_gap, branches) if g is not None), None)
    if isinstance(avro, dict):
        kind = avro.get("type")
        if kind == "array":
            return _avro_input_gap(avro["items"])
        if kind == "map":
            return _avro_input_gap(avro["values"])
        if kind == "record":
            return next(
                (g for g in (_avro_input_gap(f["type"]) for f in avro["fields"]) if g), None
            )
    return None


_MISSING = object()


def writer_gaps(
    writer_fields: Sequence[Mapping[str, Any]],
    current_fields: Sequence[Mapping[str, Any]],
    spec: TableSpec,
) -> list[str]:
    """Why ClickHouse's Avro input cannot write records of a writer schema into
    ``spec`` (the table of the resource's current schema) as Avro's schema
    resolution would; empty when it can.

    It can when every writer field the table has maps to the column's type,
    and every column the writer lacks takes its current schema's default, which
    must then be ClickHouse's default for the column (null for a Nullable one;
    0, "", false, [] or {} otherwise), since ClickHouse fills a missing field
    with that. A writer field the table lacks is skipped, as the Python path
    skips it."""
    gaps = avro_input_gaps(writer_fields)
    columns = {c.name: c for c in spec.columns}
    named: dict[str, str] = {}
    for f in writer_fields:
        try:
            have = clickhouse_type(f["type"], f["name"], named)
        except SchemaEvolutionError as exc:
            gaps.append(str(exc))
            continue
        column = columns.get(f["name"])
        if column is not None and _normalise(have) != _normalise(column.type):
            gaps.append(f"field {f['name']!r} is {have} here but {column.type} in the table")
    written = {f["name"] for f in writer_fields}
    defaults = {f["name"]: f.get("default", _MISSING) for f in current_fields}
    for column in spec.columns:
        if column.name in written:
            continue
        default = defaults.get(column.name, _MISSING)
        nullable = "Nullable(" in column.type
        zero = default is None if nullable else _is_zero(default, column.type)
        if not zero:
            shown = "none" if default is _MISSING else repr(default)
            gaps.append(
                f"field {column.name!r} is missing here and its default ({shown}) is not "
                f"ClickHouse's default for {column.type}"
            )
    return gaps


def _is_zero(default: Any, type_name: str) -> bool:
    """Whether an Avro default equals what ClickHouse fills a non-Nullable column with."""
    if default is _MISSING or default is None or type_name.startswith(_NO_ZERO_DEFAULT):
        return False
    return bool(default in (0, "", [], {}))  # False == 0 and 0.0 == 0 too


# ClickHouse's default of these has no Avro default that equals it.
_NO_ZERO_DEFAULT = ("Tuple(", "UUID", "FixedString(")
