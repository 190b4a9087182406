"""Staged records into columns, for column-oriented inserts. Pure code.

clickhouse-connect inserts a list per column fastest; decoded Avro values map
onto the column types of :mod:`sink_workers.tables` as they are (datetimes,
Decimals, lists, dicts, tuples for records), except nulls in Array, Map and
Tuple columns, which ClickHouse cannot store and which become empty values,
and times of day (``time-millis``, ``time-micros``), which become the
integers Avro staged, wherever they are (inside arrays, maps and records too).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sink_workers.tables import TableSpec


def _empty(type_name: str) -> Any:
    if type_name.startswith("Array("):
        return []
    if type_name.startswith("Map("):
        return {}
    return None


# time-millis / time-micros: fastavro gives a datetime.time, the column holds
# milliseconds / microseconds since midnight (Int32 / Int64), at the top level
# or inside arrays, maps and records. Only the columns whose Avro type has one
# (Column.times_of_day) are walked.
_UNIT_US = {"Int32": 1_000, "Int64": 1}


def _time_of_day(value: Any, unit_us: int) -> Any:
    if type(value) is not dt.time:
        return value
    micros = ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond
    return micros // unit_us


Convert = Callable[[Any], Any]


@functools.cache
def times_of_day(type_name: str) -> Convert | None:
    """A function that turns every ``datetime.time`` in a value of the ClickHouse type
    ``type_name`` into the integer its Int32 / Int64 holds (anything else is kept, a
    null too); None for a type with no Int32 or Int64 in it."""
    if type_name in _UNIT_US:
        unit = _UNIT_US[type_name]
        return lambda value: _time_of_day(value, unit)
    for wrapper in ("Nullable(", "LowCardinality("):
        if type_name.startswith(wrapper):
            return times_of_day(type_name[len(wrapper) : -1])
    if type_name.startswith("Array("):
        item = times_of_day(type_name[len("Array(") : -1])
        if item is None:
            return None
        return lambda value: [item(v) for v in value] if type(value) is list else value
    if type_name.startswith("Map("):
        _, value_type = _top_level_parts(type_name[len("Map(") : -1])
        entry = times_of_day(value_type)
        if entry is None:
            return None
        return lambda value: (
            {k: entry(v) for k, v in value.items()} if isinstance(value, dict) else value
        )
    if type_name.startswith("Tuple("):
        fields = {}
        for part in _top_level_parts(type_name[len("Tuple(") : -1]):
            name, field_type = part.split(" ", 1)
            convert = times_of_day(field_type)
            if convert is not None:
                fields[name] = convert
        if not fields:
            return None

        def record(value: Any) -> Any:
            if not isinstance(value, dict):
                return value
            converted = dict(value)
            for name, convert in fields.items():
                if name in converted:
                    converted[name] = convert(converted[name])
            return converted

        return record
    return None


def _top_level_parts(arguments: str) -> list[str]:
    """``"a Int32, b Map(String, Int64)"`` -> ``["a Int32", "b Map(String, Int64)"]``."""
    if not arguments.strip():
        return []  # Tuple(): a record without fields
    parts, depth, start = [], 0, 0
    for i, char in enumerate(arguments):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(arguments[start:i].strip())
            start = i + 1
    parts.append(arguments[start:].strip())
    return parts


def to_columns(records: Sequence[Mapping[str, Any]], spec: TableSpec) -> list[list[Any]]:
    """One list per column of ``spec``, in its column order."""
    columns = []
    for column in spec.columns:
        name = column.name
        values = [record.get(name) for record in records]
        empty = _empty(column.type)
        if empty is not None:
            values = [type(empty)() if v is None else v for v in values]
        convert = times_of_day(column.type) if column.times_of_day else None
        if convert is not None:
            values = [convert(v) for v in values]
        columns.append(values)
    return columns
