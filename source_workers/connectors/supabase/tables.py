"""What every Supabase table resource shares: parse its table's changes, map them to rows.

``parse`` takes a ``postgres_changes`` message of its table (or a PostgREST
row the backfill fetched, an :class:`Internal` ``rest_row``); ``process`` maps
it with a :class:`ChangeMapper` and returns the row with the newest commit
timestamp (held back while a backfill is under way) as the checkpoint.
"""

from __future__ import annotations

from typing import Any

from source_workers.authoring import Internal, Output, Resource, define_resource
from source_workers.connectors.supabase.changes import ChangeMapper, CommitMark
from staging.schemas import SchemaCatalog


class TableChanges:
    def __init__(self, table: str, schema_path: str) -> None:
        self.table = table
        fields = SchemaCatalog.default().load(schema_path).parsed["fields"]
        self.mapper = ChangeMapper(table, fields)
        self.mark = CommitMark()

    def parse(self, raw: Any) -> dict[str, Any] | Internal | None:
        if isinstance(raw, Internal):
            if raw.kind == "rest_row" and raw.data.get("table") == self.table:
                return raw
            return None
        if not isinstance(raw, dict):
            return None
        event = raw.get("event")
        if event == "postgres_changes":
            payload = raw.get("payload")
            data = payload.get("data") if isinstance(payload, dict) else None
            if not isinstance(data, dict):
                raise ValueError("postgres_changes without payload.data")
            return data if data.get("table") == self.table else None
        return None

    def process(self, data: dict[str, Any] | Internal, _received_at_us: int) -> Output:
        if isinstance(data, Internal):
            return self.process_snapshot(data.data["row"], data.data["time_column"])
        row = self.mapper.change(data)
        self.mark.advance(row["commit_timestamp"])
        return Output((row,), self.mark.checkpoint)  # built once per write, when staged

    def process_snapshot(self, row: Any, time_column: str) -> Output:
        staged = self.mapper.snapshot(row, time_column)
        self.mark.advance(staged["commit_timestamp"])
        return Output((staged,), self.mark.checkpoint)


def table_resource(table: str, schema_path: str) -> tuple[Resource, TableChanges]:
    changes = TableChanges(table, schema_path)
    resource = define_resource(
        name=table,
        target="clickhouse",
        schema=schema_path,
        key=("id",),
        id_fields=("id", "commit_timestamp", "operation"),
        time_field="commit_timestamp",
        parse=changes.parse,
        process=changes.process,
    )
    return resource, changes
