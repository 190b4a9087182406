"""The replay's key check through ClickHouse, on a scratch-table double."""

from __future__ import annotations

import io
from typing import Any

import fastavro

from durable_ingest.operations.replay_avro import AvroKeyedTable
from durable_ingest.operations.replay_keys import BlockResult
from foundation.errors import BatchRejectedError
from sink_workers.tables import table_spec
from staging.decoder import FixedHeaders, StagedRecord
from staging.envelope import encode_value
from staging.schemas import SchemaCatalog, StagedSchema
from tests.helpers import trades


class Scratch:
    """Like KeyedScratch: loads containers (refusing what fastavro cannot read, as the
    server's parser would), then moves the rows whose key the table lacks, once each."""

    def __init__(self, table: set[tuple[str, int]]) -> None:
        self.table = table
        self.loaded: list[dict[str, Any]] = []
        self.loads = 0

    def clear(self) -> None:
        self.loaded = []

    def load(self, container: bytes, rows: int) -> None:
        self.loads += 1
        try:
            records = list(fastavro.reader(io.BytesIO(container)))
        except Exception as exc:
            raise BatchRejectedError(f"avro::Exception: {exc}", code=1001) from None
        assert len(records) == rows
        self.loaded += records  # type: ignore[arg-type]

    def insert_missing(self) -> int:
        keys = {(r["product_id"], r["trade_id"]) for r in self.loaded} - self.table
        self.table |= keys
        return len(keys)


class Fallback:
    def __init__(self) -> None:
        self.blocks: list[list[int]] = []

    def write_block(self, records: Any) -> BlockResult:
        self.blocks.append([r.offset for r in records])
        return BlockResult(written=len(records))


def staged(
    schema: StagedSchema, rows: list[dict[str, Any]], bad: int | None = None
) -> list[StagedRecord]:
    records = []
    for i, row in enumerate(rows):
        value = schema.header + b"\xff" * 5 if i == bad else encode_value(schema, row)
        records.append(StagedRecord("t", 0, i, None, schema, value, FixedHeaders(())))
    return records


def keyed(
    catalog: SchemaCatalog, table: set[tuple[str, int]]
) -> tuple[AvroKeyedTable, Scratch, Fallback]:
    schema = catalog.load("coinbase/matches.avsc")
    spec = table_spec(
        schema.parsed["fields"], database="db", table="t", order_by=("product_id", "trade_id")
    )
    scratch, fallback = Scratch(table), Fallback()
    return AvroKeyedTable(scratch, spec, schema, fallback), scratch, fallback  # type: ignore[arg-type]


def test_only_missing_keys_are_written_and_repeats_count_as_deduplicated(
    catalog: SchemaCatalog,
) -> None:
    rows = trades(10)
    held = {(r["product_id"], r["trade_id"]) for r in rows[:4]}
    table, scratch, _ = keyed(catalog, set(held))
    schema = catalog.load("coinbase/matches.avsc")
    result = table.write_block(staged(schema, rows + rows[8:]))  # two staged twice
    assert (result.written, result.deduplicated, result.refused) == (6, 6, [])
    assert scratch.table == {(r["product_id"], r["trade_id"]) for r in rows}
    again = table.write_block(staged(schema, rows))
    assert (again.written, again.deduplicated) == (0, 10)


def test_a_body_the_parser_refuses_is_isolated_and_reported(catalog: SchemaCatalog) -> None:
    table, scratch, _ = keyed(catalog, set())
    schema = catalog.load("coinbase/matches.avsc")
    result = table.write_block(staged(schema, trades(16), bad=11))
    assert result.written == 15 and result.deduplicated == 0
    (reason,) = result.refused
    assert reason.startswith("staged record t[0]@11: avro::Exception")
    assert scratch.loads > 2  # halved down to the one record


def test_a_writer_schema_clickhouse_cannot_map_goes_to_the_python_check(
    catalog: SchemaCatalog,
) -> None:
    table, scratch, fallback = keyed(catalog, set())
    old = StagedSchema.from_json(
        {
            "type": "record",
            "name": "Trade",
            "namespace": "old",
            "fields": [
                {"name": "product_id", "type": "string"},
                {"name": "trade_id", "type": "int"},
            ],
        },
        "old.avsc",
    )
    records = staged(old, [{"product_id": "BTC-USD", "trade_id": 1}])
    assert table.write_block(records).written == 1
    assert fallback.blocks == [[0]] and scratch.loads == 0
