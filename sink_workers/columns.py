"""Staged records into columns, for column-oriented inserts. Pure code.

clickhouse-connect inserts a list per column fastest; decoded Avro values map
onto the column types of :mod:`sink_workers.tables` as they are (datetimes,
Decimals, lists, dicts, tuples for records), except nulls in Array, Map and
Tuple columns, which ClickHouse cannot store and which become empty values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sink_workers.tables import TableSpec


def _empty(type_name: str) -> Any:
    if type_name.startswith("Array("):
        return []
    if type_name.startswith("Map("):
        return {}
    return None


def to_columns(records: Sequence[Mapping[str, Any]], spec: TableSpec) -> list[list[Any]]:
    """One list per column of ``spec``, in its column order."""
    columns = []
    for column in spec.columns:
        name = column.name
        values = [record.get(name) for record in records]
        empty = _empty(column.type)
        if empty is not None:
            values = [type(empty)() if v is None else v for v in values]
        columns.append(values)
    return columns
