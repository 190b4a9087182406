"""Supabase changes, pure: ``postgres_changes`` payloads into change rows, and the checkpoint.

A change row is the table's columns (as the resource's Avro schema lists
them) plus ``operation`` (``INSERT``, ``UPDATE``, ``DELETE``, or ``SNAPSHOT``
for a row read by the PostgREST backfill) and ``commit_timestamp``. On the
wire a change's ``data`` has ``type``, ``commit_timestamp``, ``record`` and
``old_record`` (supabase-js renames them ``eventType``, ``new``, ``old``; both
spellings are read). INSERT and UPDATE take the columns from ``record``;
DELETE from ``old_record`` (only the primary key unless the table has
``REPLICA IDENTITY FULL``). Columns the
schema does not list are left out; columns the payload lacks are null.

The natural key of a change is ``(id, commit_timestamp)``: a table is a
change log, every change once. The checkpoint is the newest commit timestamp
staged: ``{"commit_timestamp": "<RFC 3339>"}``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from staging.times import rfc3339

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
OPERATIONS = ("INSERT", "UPDATE", "DELETE")
_META = ("id", "commit_timestamp", "operation")


def pg_time_us(value: Any) -> int:
    """A Postgres timestamp as JSON gives it (``2026-11-22T03:00:00.123+00:00``,
    ``2026-11-22 03:00:00Z``; naive means UTC) in microseconds since the epoch."""
    if not isinstance(value, str):
        raise ValueError(f"timestamp {value!r} is not a string")
    text = value.strip().replace(" ", "T", 1)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    elif len(text) > 3 and text[-3] in "+-" and text[-2:].isdigit() and ":" not in text[-6:]:
        text += ":00"  # +00 -> +00:00
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"timestamp {value!r} is not ISO 8601") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _ONE_US


def _converter(avro_type: Any) -> Callable[[Any], Any]:
    """A JSON value into the Avro field's Python value; raises ValueError."""
    branches = avro_type if isinstance(avro_type, list) else [avro_type]
    nullable = "null" in branches
    branch = next(b for b in branches if b != "null")
    logical = branch.get("logicalType") if isinstance(branch, dict) else None
    base = branch.get("type") if isinstance(branch, dict) else branch

    def convert(value: Any) -> Any:
        if value is None:
            if nullable:
                return None
            raise ValueError("is null but the schema requires a value")
        if logical == "timestamp-micros":
            return pg_time_us(value)
        if base in ("long", "int"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{value!r} is not an integer")
            return value
        if base == "boolean":
            if not isinstance(value, bool):
                raise ValueError(f"{value!r} is not a boolean")
            return value
        if base == "string":
            if not isinstance(value, str):
                raise ValueError(f"{value!r} is not a string")
            return value
        if base in ("double", "float"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{value!r} is not a number")
            return float(value)
        raise ValueError(f"type {base} is not mapped from JSON")

    return convert


class ChangeMapper:
    """Rows of one table's resource, from its Avro schema's fields."""

    def __init__(self, table: str, fields: list[dict[str, Any]]) -> None:
        self.table = table
        self._columns = [
            (f["name"], _converter(f["type"])) for f in fields if f["name"] not in _META
        ]
        self._id = _converter(next(f["type"] for f in fields if f["name"] == "id"))

    def row(self, columns: dict[str, Any], operation: str, commit_us: int) -> dict[str, Any]:
        row: dict[str, Any] = {
            "id": self._id(columns.get("id")),
            "commit_timestamp": commit_us,
            "operation": operation,
        }
        for name, convert in self._columns:
            try:
                row[name] = convert(columns.get(name))
            except ValueError as exc:
                raise ValueError(f"table {self.table}, column {name}: {exc}") from None
        return row

    def change(self, data: dict[str, Any]) -> dict[str, Any]:
        """The row of one ``postgres_changes`` ``data`` object."""
        errors = data.get("errors")
        if errors:
            # Realtime cut the payload (e.g. "Error 413: Payload Too Large"): the row
            # holds only part of the columns; staging it would record false NULLs.
            raise ValueError(f"the change arrived with errors {str(errors)[:200]!r}")
        operation = data.get("type") or data.get("eventType")
        if operation not in OPERATIONS:
            raise ValueError(f"change type {operation!r} is not INSERT, UPDATE or DELETE")
        if operation == "DELETE":
            columns = data.get("old_record") or data.get("old")
        else:
            columns = data.get("record") or data.get("new")
        if not isinstance(columns, dict):
            raise ValueError(f"{operation} of {self.table} carries no row")
        return self.row(columns, operation, pg_time_us(data.get("commit_timestamp")))

    def snapshot(self, columns: dict[str, Any], time_column: str) -> dict[str, Any]:
        """A row read over PostgREST: operation SNAPSHOT, time from ``time_column``."""
        if not isinstance(columns, dict):
            raise ValueError(f"PostgREST row of {self.table} is not an object")
        return self.row(columns, "SNAPSHOT", pg_time_us(columns.get(time_column)))


class CommitMark:
    """The newest commit timestamp staged, as the checkpoint, held back while a
    backfill has not read past it (``cap_us``): live changes must not move the
    checkpoint past rows the backfill has still to read."""

    def __init__(self) -> None:
        self.newest_us: int | None = None
        self.cap_us: int | None = None

    def restore(self, checkpoint: dict[str, Any] | None) -> None:
        if checkpoint and checkpoint.get("commit_timestamp"):
            self.newest_us = pg_time_us(checkpoint["commit_timestamp"])

    def hold(self) -> int | None:
        """A backfill starts (or resumes): cap the checkpoint where it reads from."""
        if self.cap_us is None:
            self.cap_us = self.newest_us
        return self.cap_us

    def release(self) -> None:
        """The backfill read everything: the checkpoint follows the newest again."""
        self.cap_us = None

    def advance(self, commit_us: int) -> None:
        if self.newest_us is None or commit_us > self.newest_us:
            self.newest_us = commit_us

    def checkpoint(self) -> dict[str, Any]:
        assert self.newest_us is not None
        value = self.newest_us if self.cap_us is None else min(self.newest_us, self.cap_us)
        return {"commit_timestamp": rfc3339(value)}
