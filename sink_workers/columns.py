"""Staged records into columns, for column-oriented inserts. Pure code.

clickhouse-connect inserts a list per column fastest; decoded Avro values map
onto the column types of :mod:`sink_workers.tables` as they are (datetimes,
Decimals, lists, dicts, tuples for records), except nulls in Array, Map and
Tuple columns, which ClickHouse cannot store and which become empty values,
and times of day (``time-millis``, ``time-micros``), which become the
integers Avro staged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from sink_workers.tables import TableSpec


def _empty(type_name: str) -> Any:
    if type_name.startswith("Array("):
        return []
    if type_name.startswith("Map("):
        return {}
    return None


# time-millis / time-micros: fastavro gives a datetime.time, the column holds
# milliseconds / microseconds since midnight.
_TIME_OF_DAY = {"Int32": 1_000, "Int64": 1, "Nullable(Int32)": 1_000, "Nullable(Int64)": 1}


def _time_of_day(value: Any, unit_us: int) -> Any:
    if type(value) is not dt.time:
        return value
    micros = ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond
    return micros // unit_us


def to_columns(records: Sequence[Mapping[str, Any]], spec: TableSpec) -> list[list[Any]]:
    """One list per column of ``spec``, in its column order."""
    columns = []
    for column in spec.columns:
        name = column.name
        values = [record.get(name) for record in records]
        empty = _empty(column.type)
        if empty is not None:
            values = [type(empty)() if v is None else v for v in values]
        elif column.type in _TIME_OF_DAY and any(type(v) is dt.time for v in values):
            values = [_time_of_day(v, _TIME_OF_DAY[column.type]) for v in values]
        columns.append(values)
    return columns
