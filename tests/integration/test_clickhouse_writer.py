"""Writing staged records into the real ClickHouse engine: tables, dedup tokens, migrations,
both write paths (columns, and ClickHouse's Avro input) and older writer schemas."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from foundation.config import ClickHouseSettings
from foundation.errors import BatchRejectedError, CorruptRecordError, SchemaEvolutionError
from sink_workers.clickhouse.warehouse import open_warehouse
from sink_workers.clickhouse.writer import ClickHouseTableWriter
from sink_workers.columns import to_columns
from sink_workers.containers import ContainerFormat
from sink_workers.tables import TableSpec, table_spec
from sink_workers.targets import AvroTableTarget, table_target
from sink_workers.worker import SinkWorker
from staging.decoder import EnvelopeDecoder, FixedHeaders
from staging.envelope import EnvelopeEncoder, encode_value
from staging.memory import MemoryStagingProvider
from staging.protocol import StagingContext
from staging.resource import StagedResource
from staging.schemas import SchemaCatalog, StagedSchema
from tests.helpers import trade_resource, trades, unique


@pytest.fixture
def client(clickhouse: ClickHouseSettings) -> Iterator[Client]:
    warehouse = open_warehouse(clickhouse)
    yield warehouse
    warehouse.close()


def spec_for(catalog: SchemaCatalog, fields: list[dict[str, Any]] | None = None) -> TableSpec:
    schema = catalog.load("coinbase/matches.avsc")
    return table_spec(
        fields or schema.parsed["fields"],
        database=f"test_{uuid.uuid4().hex[:10]}",
        table="coinbase_matches",
        order_by=("product_id", "trade_id"),
    )


def staged_rows(catalog: SchemaCatalog, n: int) -> list[dict[str, Any]]:
    """Trades as a sink sees them: encoded, staged bytes, decoded again."""
    resource = trade_resource(catalog)
    batch = EnvelopeEncoder(resource, max_record_bytes=1_000_000).encode_batch(
        trades(n), ingest_time_us=1
    )
    decoder = EnvelopeDecoder(catalog)
    return [
        decoder.decode("t", 0, i, e.key, e.value, FixedHeaders(e.headers)).record
        for i, e in enumerate(batch)
    ]


def test_staged_rows_land_with_their_values(client: Client, catalog: SchemaCatalog) -> None:
    """Decoded staged rows are inserted column-oriented and read back equal."""
    writer = ClickHouseTableWriter(client, spec_for(catalog))
    assert writer.ensure()  # created
    rows = staged_rows(catalog, 50)
    assert writer.insert(to_columns(rows, writer.spec), "t:0:0-49") == 50
    got = client.query(
        f"SELECT trade_id, price, time, side FROM {writer.spec.qualified} ORDER BY trade_id"
    ).result_rows
    assert [g[0] for g in got] == [r["trade_id"] for r in rows]
    assert got[7][1] == rows[7]["price"] and isinstance(got[7][1], Decimal)
    assert got[7][2].replace(tzinfo=None) == rows[7]["time"].replace(tzinfo=None)
    assert got[7][3] == rows[7]["side"]


def test_a_retried_batch_with_the_same_token_is_dropped(
    client: Client, catalog: SchemaCatalog
) -> None:
    """The same batch inserted twice with its token is stored once."""
    writer = ClickHouseTableWriter(client, spec_for(catalog))
    writer.ensure()
    columns = to_columns(staged_rows(catalog, 20), writer.spec)
    writer.insert(columns, "ingest.coinbase.matches:1:100-119")
    writer.insert(columns, "ingest.coinbase.matches:1:100-119")
    assert client.command(f"SELECT count() FROM {writer.spec.qualified}") == 20
    writer.insert(columns, "ingest.coinbase.matches:1:120-139")  # another token: another insert
    assert client.command(f"SELECT count() FROM {writer.spec.qualified}") == 40
    # ...which the natural key collapses.
    assert client.command(f"SELECT count() FROM {writer.spec.qualified} FINAL") == 20


def test_new_optional_field_adds_a_column_and_old_rows_stay(
    client: Client, catalog: SchemaCatalog
) -> None:
    """Ensuring a table with a schema that gained an optional field adds the column."""
    old = spec_for(catalog)
    ClickHouseTableWriter(client, old).ensure()
    fields = [
        *catalog.load("coinbase/matches.avsc").parsed["fields"],
        {"name": "venue", "type": ["null", "string"], "default": None},
    ]
    new = table_spec(fields, database=old.database, table=old.table, order_by=old.order_by)
    ran = ClickHouseTableWriter(client, new).ensure()
    assert ran == [f"ALTER TABLE {new.qualified} ADD COLUMN IF NOT EXISTS `venue` Nullable(String)"]
    assert ClickHouseTableWriter(client, new).ensure() == []  # nothing more to do


def test_incompatible_change_stops_with_field_and_types(
    client: Client, catalog: SchemaCatalog
) -> None:
    """A field whose type changed incompatibly stops the writer, naming it and both types."""
    old = spec_for(catalog)
    ClickHouseTableWriter(client, old).ensure()
    fields = [dict(f) for f in catalog.load("coinbase/matches.avsc").parsed["fields"]]
    fields[1] = {"name": "trade_id", "type": "string"}
    new = table_spec(fields, database=old.database, table=old.table, order_by=old.order_by)
    with pytest.raises(SchemaEvolutionError, match="'trade_id' is Int64 in the table but String"):
        ClickHouseTableWriter(client, new).ensure()


def test_content_the_table_refuses_is_a_rejected_batch(
    client: Client, catalog: SchemaCatalog
) -> None:
    """A batch whose values do not fit the columns raises BatchRejectedError, not a crash."""
    writer = ClickHouseTableWriter(client, spec_for(catalog))
    writer.ensure()
    columns = to_columns(staged_rows(catalog, 3), writer.spec)
    columns[1] = ["not-a-number", 2, 3]  # trade_id
    with pytest.raises(BatchRejectedError):
        writer.insert(columns, "bad")
    assert client.command(f"SELECT count() FROM {writer.spec.qualified}") == 0


def staged_values(catalog: SchemaCatalog, n: int) -> list[bytes]:
    resource = trade_resource(catalog)
    batch = EnvelopeEncoder(resource, max_record_bytes=1_000_000).encode_batch(
        trades(n), ingest_time_us=1
    )
    return [e.value for e in batch]


def test_a_retried_avro_insert_with_the_same_token_is_dropped(
    client: Client, catalog: SchemaCatalog
) -> None:
    """ClickHouse's Avro input deduplicates by token like a column insert: the same
    container three times with one token is stored once."""
    writer = ClickHouseTableWriter(client, spec_for(catalog))
    writer.ensure()
    container = ContainerFormat(catalog.load("coinbase/matches.avsc")).container(
        staged_values(catalog, 20)
    )
    for _ in range(3):
        assert writer.insert_avro(container, 20, "ingest.coinbase.matches:1:100-119") == 20
    assert client.command(f"SELECT count() FROM {writer.spec.qualified}") == 20
    writer.insert_avro(container, 20, "ingest.coinbase.matches:1:120-139")
    assert client.command(f"SELECT count() FROM {writer.spec.qualified}") == 40
    assert client.command(f"SELECT count() FROM {writer.spec.qualified} FINAL") == 20


def test_avro_bytes_clickhouse_cannot_parse_are_a_rejected_batch(
    client: Client, catalog: SchemaCatalog
) -> None:
    """A container with a body that is not its schema is refused as content (the worker
    isolates the record), with ClickHouse's own reason, and nothing of it is stored."""
    writer = ClickHouseTableWriter(client, spec_for(catalog))
    writer.ensure()
    schema = catalog.load("coinbase/matches.avsc")
    values = staged_values(catalog, 5)
    values[2] = schema.header + b"\xff" * 12
    with pytest.raises(BatchRejectedError, match=r"avro::Exception") as info:
        writer.insert_avro(ContainerFormat(schema).container(values), 5, "bad")
    assert info.value.code == 1001
    assert client.command(f"SELECT count() FROM {writer.spec.qualified}") == 0


def test_trailing_bytes_after_a_lone_record_pass_the_avro_input_but_not_the_decoder(
    client: Client, catalog: SchemaCatalog
) -> None:
    """The one check ClickHouse's Avro input does not make (docs/type-mapping.md): a body
    with bytes after a complete record, alone in a block, is stored as the record (its
    reader skips what is left of a block), where the Python decoder refuses it."""
    writer = ClickHouseTableWriter(client, spec_for(catalog))
    writer.ensure()
    schema = catalog.load("coinbase/matches.avsc")
    (value,) = staged_values(catalog, 1)
    padded = value + b"\x00\x00"
    assert writer.insert_avro(ContainerFormat(schema).container([padded]), 1, "padded") == 1
    assert client.command(f"SELECT count() FROM {writer.spec.qualified}") == 1
    with pytest.raises(CorruptRecordError, match="2 trailing bytes"):
        EnvelopeDecoder(catalog).decode("t", 0, 0, None, padded, FixedHeaders(()))


def test_records_of_older_writer_schemas_interleaved_are_all_written(
    client: Client, catalog: SchemaCatalog
) -> None:
    """Three writer versions interleaved in one partition of one batch, the table made from
    the newest. One lacking a nullable field goes through ClickHouse's Avro input and gets
    NULL; one lacking a field whose default is 5 (ClickHouse would write 0) is decoded here
    with Avro's schema resolution and gets 5. Nothing is dropped."""
    note = {"name": "note", "type": ["null", "string"], "default": None}
    level = {"name": "level", "type": "long", "default": 5}
    versions = [
        StagedSchema.from_json(
            {"type": "record", "name": "Row", "namespace": f"evolve.v{i}", "fields": fields},
            f"evolve/v{i}.avsc",
        )
        for i, fields in enumerate(
            [[{"name": "id", "type": "long"}], [{"name": "id", "type": "long"}, level], None]
        )
        if fields is not None
    ]
    current = StagedSchema.from_json(
        {
            "type": "record",
            "name": "Row",
            "namespace": "evolve.v2",
            "fields": [{"name": "id", "type": "long"}, level, note],
        },
        "evolve/v2.avsc",
    )
    only_id, no_note = versions
    for schema in (only_id, no_note, current):
        catalog.register(schema)
    resource = StagedResource.define(
        source=unique("src"),
        name="rows",
        schema=current,
        key=("id",),
        id_fields=("id",),
        partitions=1,
    )
    provider = MemoryStagingProvider(catalog=catalog)
    rows = {
        0: (only_id, {"id": 0}),
        1: (current, {"id": 1, "level": 7, "note": "new"}),
        2: (no_note, {"id": 2, "level": 8}),
        3: (only_id, {"id": 3}),
        4: (no_note, {"id": 4, "level": 9}),
        5: (current, {"id": 5, "level": 1, "note": None}),
    }
    provider.ensure_topics([resource])
    for schema, row in rows.values():
        provider.broker.append(
            resource.topic.name, None, encode_value(schema, row), (), partition=0
        )
    spec = table_spec(
        current.parsed["fields"],
        database=f"evolve_{uuid.uuid4().hex[:8]}",
        table="rows",
        order_by=("id",),
    )
    writer = ClickHouseTableWriter(client, spec)
    writer.ensure()
    target = table_target(writer, current)
    assert type(target) is AvroTableTarget
    context = StagingContext(source=resource.source, resources=(resource,))
    with provider.allocate_session(context) as session:
        worker = SinkWorker(session, {resource.topic.name: target}, sleep=lambda s: None)
        worker.run(idle_timeout_s=0.05)
    assert worker.stats.rows_written == 6 and worker.stats.dead_letters == 0
    got = client.query(f"SELECT id, level, note FROM {spec.qualified} ORDER BY id").result_rows
    assert got == [
        (0, 5, None),
        (1, 7, "new"),
        (2, 8, None),
        (3, 5, None),
        (4, 9, None),
        (5, 1, None),
    ]
    assert client.command(f"SELECT count() FROM {spec.qualified}") == 6
