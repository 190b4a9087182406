"""Envelope encoding (keys, ids, headers, validation, limits) and decoding."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from foundation.errors import (
    CheckpointError,
    CorruptRecordError,
    RecordTooLargeError,
    SchemaMismatchError,
)
from staging.decoder import EnvelopeDecoder, FixedHeaders
from staging.envelope import (
    H_CHECKPOINT,
    H_ID,
    H_INGESTTIME,
    H_TIME,
    H_TYPE,
    EnvelopeEncoder,
    encode_value,
)
from staging.resource import StagedResource
from staging.schemas import SchemaCatalog
from staging.times import rfc3339, to_micros
from tests.helpers import T0, trade, trades

NOW = 1_795_000_000_000_000


def encoder(catalog: SchemaCatalog, **kwargs: Any) -> EnvelopeEncoder:
    resource = StagedResource.define(
        source="coinbase",
        name="matches",
        schema=catalog.load("coinbase/matches.avsc"),
        key=kwargs.pop("key", ("product_id",)),
        id_fields=kwargs.pop("id_fields", ("product_id", "trade_id")),
        time_field="time",
    )
    return EnvelopeEncoder(resource, max_record_bytes=kwargs.pop("max_record_bytes", 1_000_000))


def headers(envelope: Any) -> dict[str, bytes]:
    return dict(envelope.headers)


def test_key_is_the_entity_key(catalog: SchemaCatalog) -> None:
    """A single key field gives its UTF-8 value; several give a JSON array."""
    single = encoder(catalog).encode_batch([trade(0)], ingest_time_us=NOW)[0]
    assert single.key == trade(0)["product_id"].encode()
    multi = encoder(catalog, key=("product_id", "side")).encode_batch(
        [trade(0)], ingest_time_us=NOW
    )
    assert json.loads(multi[0].key) == [trade(0)["product_id"], trade(0)["side"]]


def test_event_ids_are_deterministic_across_resends(catalog: SchemaCatalog) -> None:
    """Encoding the same rows again, later, gives the same event ids."""
    first = encoder(catalog).encode_batch(trades(5), ingest_time_us=NOW)
    again = encoder(catalog).encode_batch(trades(5), ingest_time_us=NOW + 10_000_000)
    assert [e.event_id for e in first] == [e.event_id for e in again]
    assert len({e.event_id for e in first}) == 5


def test_event_id_follows_the_natural_key_not_other_fields(catalog: SchemaCatalog) -> None:
    """With id_fields, a changed non-key field keeps the id; without, it changes it."""
    row, changed = trade(3), {**trade(3), "price": Decimal("1")}
    with_ids = encoder(catalog)
    assert with_ids.encode_batch([row], ingest_time_us=NOW)[0].event_id == (
        with_ids.encode_batch([changed], ingest_time_us=NOW)[0].event_id
    )
    by_body = encoder(catalog, id_fields=())
    assert by_body.encode_batch([row], ingest_time_us=NOW)[0].event_id != (
        by_body.encode_batch([changed], ingest_time_us=NOW)[0].event_id
    )


def test_cloudevents_headers(catalog: SchemaCatalog) -> None:
    """Each envelope carries the CloudEvents binary-mode attributes."""
    envelope = encoder(catalog).encode_batch([trade(1)], ingest_time_us=NOW)[0]
    h = headers(envelope)
    assert h["ce_specversion"] == b"1.0"
    assert h["ce_source"] == b"/ingest/coinbase"
    assert h[H_TYPE] == b"matches"
    assert h[H_ID].decode() == envelope.event_id
    assert h[H_TIME].decode() == rfc3339(to_micros(trade(1)["time"]))
    assert h[H_INGESTTIME].decode() == rfc3339(NOW)
    assert set(h) == {
        "ce_specversion",
        "ce_id",
        "ce_source",
        "ce_type",
        "ce_time",
        "content-type",
        "ce_ingesttime",
    }
    assert h["content-type"] == b"application/avro"


def test_rfc3339_formats_microseconds_in_utc() -> None:
    """Timestamps are RFC 3339 in UTC with microseconds."""
    assert rfc3339(to_micros(T0)) == "2026-11-22T03:00:00.000000Z"
    assert rfc3339(1) == "1970-01-01T00:00:00.000001Z"


def test_checkpoint_rides_on_the_last_record_of_each_partition(catalog: SchemaCatalog) -> None:
    """The checkpoint header is on each touched partition's last record of the write only."""
    batch = encoder(catalog).encode_batch(
        trades(12), ingest_time_us=NOW, checkpoint={"trade_id": 11}
    )
    assert len(set(batch.partitions)) > 1  # the trades spread over the topic's 3 partitions
    last_of = {p: i for i, p in enumerate(batch.partitions)}
    carrying = [i for i, e in enumerate(batch) if H_CHECKPOINT in headers(e)]
    assert carrying == sorted(last_of.values())
    assert all(json.loads(headers(batch[i])[H_CHECKPOINT]) == {"trade_id": 11} for i in carrying)


def test_partition_is_crc32_of_the_key(catalog: SchemaCatalog) -> None:
    """Records are partitioned like librdkafka's consistent partitioner: CRC-32 of the key."""
    import zlib

    batch = encoder(catalog).encode_batch(trades(8), ingest_time_us=NOW)
    assert batch.partitions == [zlib.crc32(k) % 3 for k in batch.keys]


def test_checkpoint_without_records_is_refused(catalog: SchemaCatalog) -> None:
    """A checkpoint needs a record to travel with."""
    with pytest.raises(CheckpointError, match="at least one record"):
        encoder(catalog).encode_batch([], ingest_time_us=NOW, checkpoint={"a": 1})


def test_checkpoint_must_be_plain_json(catalog: SchemaCatalog) -> None:
    """NaN or non-JSON values in a checkpoint are refused."""
    with pytest.raises(CheckpointError):
        encoder(catalog).encode_batch(trades(1), ingest_time_us=NOW, checkpoint={"x": float("nan")})
    with pytest.raises(CheckpointError):
        encoder(catalog).encode_batch(trades(1), ingest_time_us=NOW, checkpoint={"x": object()})


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"trade_id": "not-a-number"}, "trade_id", ""),
        ({"side": "hold"}, "side", ""),
        ({"price": 1.5}, "price", ""),
        ({"price": Decimal("1e40")}, "price", "precision"),
        ({"venue": "x"}, "venue", "not in the schema"),
        ({"product_id": None}, "product_id", ""),
    ],
)
def test_row_that_does_not_fit_names_the_field(
    catalog: SchemaCatalog, change: dict[str, Any], field: str, reason: str
) -> None:
    """A bad row raises SchemaMismatchError naming the resource, row and field."""
    rows = trades(3)
    rows[1] = {**rows[1], **change}
    with pytest.raises(SchemaMismatchError, match=reason or None) as info:
        encoder(catalog).encode_batch(rows, ingest_time_us=NOW)
    assert info.value.field == field
    assert info.value.record_index == 1
    assert f"field '{field}'" in str(info.value) and "coinbase.matches, record 1" in str(info.value)


def test_missing_required_field_is_named(catalog: SchemaCatalog) -> None:
    """A row without a required field names that field."""
    row = trade(0)
    del row["price"]
    with pytest.raises(SchemaMismatchError) as info:
        encoder(catalog).encode_batch([row], ingest_time_us=NOW)
    assert info.value.field == "price"


def test_optional_field_may_be_left_out(catalog: SchemaCatalog) -> None:
    """A field with a default (sequence) may be omitted and decodes as its default."""
    row = trade(0)
    del row["sequence"]
    envelope = encoder(catalog).encode_batch([row], ingest_time_us=NOW)[0]
    decoded = EnvelopeDecoder(catalog).decode(
        "t", 0, 0, envelope.key, envelope.value, FixedHeaders(envelope.headers)
    )
    assert decoded.record["sequence"] is None


def test_oversized_record_is_refused_with_the_limit(catalog: SchemaCatalog) -> None:
    """A record over max_record_bytes is refused before produce, with size and limit."""
    rows = trades(2)
    rows[1] = {**rows[1], "maker_order_id": "x" * 5_000}
    with pytest.raises(RecordTooLargeError, match="over the limit of 2048 bytes") as info:
        encoder(catalog, max_record_bytes=2048).encode_batch(rows, ingest_time_us=NOW)
    assert info.value.limit == 2048 and info.value.size > 5_000 and info.value.record_index == 1


def test_decoder_round_trips_records_and_attributes(catalog: SchemaCatalog) -> None:
    """Decoding an envelope returns the row, its id, resource and checkpoint."""
    envelope = encoder(catalog).encode_batch(trades(1), ingest_time_us=NOW, checkpoint={"c": 1})[0]
    record = EnvelopeDecoder(catalog).decode(
        "ingest.coinbase.matches",
        2,
        41,
        envelope.key,
        envelope.value,
        FixedHeaders(envelope.headers),
    )
    assert record.record == trade(0)
    assert record.event_id == envelope.event_id
    assert record.resource == "matches"
    assert record.checkpoint == {"c": 1}
    assert (record.topic, record.partition, record.offset) == ("ingest.coinbase.matches", 2, 41)


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda v: None, "empty"),
        (lambda v: b'{"json": true}', "marker"),
        (lambda v: v[:14], ""),
        (lambda v: v + b"\x01", "trailing"),
    ],
)
def test_corrupt_bytes_raise_a_typed_error_naming_the_position(
    catalog: SchemaCatalog, mangle: Any, reason: str
) -> None:
    """Undecodable staged bytes raise CorruptRecordError with topic, partition and offset."""
    envelope = encoder(catalog).encode_batch(trades(1), ingest_time_us=NOW)[0]
    with pytest.raises(CorruptRecordError, match=reason or None) as info:
        EnvelopeDecoder(catalog).decode(
            "ingest.x.y", 1, 77, None, mangle(envelope.value), FixedHeaders([])
        )
    assert (info.value.topic, info.value.partition, info.value.offset) == ("ingest.x.y", 1, 77)
    assert "ingest.x.y[1]@77" in str(info.value)


@pytest.mark.parametrize("raw", [b"[1", b"[1, 2]", b"not json"])
def test_bad_checkpoint_header_is_a_corrupt_record(catalog: SchemaCatalog, raw: bytes) -> None:
    """A checkpoint header that is not a JSON object is reported as corrupt, with its bytes."""
    envelope = encoder(catalog).encode_batch(trades(1), ingest_time_us=NOW)[0]
    headers = [*envelope.headers, (H_CHECKPOINT, raw)]
    record = EnvelopeDecoder(catalog).decode(
        "t", 0, 5, b"key", envelope.value, FixedHeaders(headers)
    )
    with pytest.raises(CorruptRecordError, match=r"t\[0\]@5") as info:
        _ = record.checkpoint
    assert info.value.key == b"key"
    assert (H_CHECKPOINT, raw) in info.value.headers


def test_headers_are_read_only_when_asked(catalog: SchemaCatalog) -> None:
    """Decoding a record does not fetch its headers; asking for an attribute does."""
    envelope = encoder(catalog).encode_batch(trades(1), ingest_time_us=NOW)[0]

    class Counting:
        calls = 0

        def headers(self) -> list[tuple[str, bytes]]:
            Counting.calls += 1
            return envelope.headers

    record = EnvelopeDecoder(catalog).decode("t", 0, 0, None, envelope.value, Counting())
    assert Counting.calls == 0
    assert record.event_id == envelope.event_id and Counting.calls == 1


@pytest.mark.parametrize("field", ["product_id", "trade_id"])
def test_null_key_or_natural_key_is_refused(catalog: SchemaCatalog, field: str) -> None:
    """A null in a key or natural-key field is refused instead of becoming the key "None"."""
    rows = trades(2)
    rows[1] = {**rows[1], field: None}
    with pytest.raises(SchemaMismatchError, match="is null") as info:
        encoder(catalog).encode_batch(rows, ingest_time_us=NOW)
    assert info.value.field == field and info.value.record_index == 1


def test_time_header_formatting_matches_rfc3339_across_seconds(catalog: SchemaCatalog) -> None:
    """The cached ce_time formatter agrees with rfc3339 within and across seconds."""
    rows = trades(3)
    base = to_micros(rows[0]["time"]) // 1_000_000 * 1_000_000
    for i, micros in enumerate([base, base + 999_999, base + 1_000_000]):
        rows[i] = {**rows[i], "time": micros}
    batch = encoder(catalog).encode_batch(rows, ingest_time_us=NOW)
    assert [headers(e)[H_TIME].decode() for e in batch] == [
        rfc3339(base),
        rfc3339(base + 999_999),
        rfc3339(base + 1_000_000),
    ]


def test_malformed_uuid_is_refused_at_write(tmp_path: Any) -> None:
    """fastavro writes any string as a uuid but cannot read it back: refuse it at the source."""
    from staging.schemas import SchemaCatalog as Catalog

    (tmp_path / "u.avsc").write_text(
        json.dumps(
            {
                "type": "record",
                "name": "U",
                "fields": [
                    {"name": "id", "type": "long"},
                    {
                        "name": "ref",
                        "type": ["null", {"type": "string", "logicalType": "uuid"}],
                        "default": None,
                    },
                ],
            }
        )
    )
    schema = Catalog(tmp_path).load("u.avsc")
    resource = StagedResource.define(source="s", name="u", schema=schema, key=("id",))
    encoder_u = EnvelopeEncoder(resource, max_record_bytes=10_000)
    encoder_u.encode_batch(
        [{"id": 1, "ref": "1b4e28ba-2fa1-11d2-883f-0016d3cca427"}, {"id": 2, "ref": None}],
        ingest_time_us=NOW,
    )
    with pytest.raises(SchemaMismatchError, match="'not-a-uuid' is not a UUID") as info:
        encoder_u.encode_batch([{"id": 1, "ref": "not-a-uuid"}], ingest_time_us=NOW)
    assert info.value.field == "ref"


def test_int_outside_32_bits_is_refused(tmp_path: Any) -> None:
    """fastavro writes any integer for an Avro int; a 32-bit column could not hold it."""
    from staging.schemas import SchemaCatalog as Catalog

    (tmp_path / "i.avsc").write_text(
        json.dumps(
            {
                "type": "record",
                "name": "I",
                "fields": [{"name": "id", "type": "long"}, {"name": "n", "type": "int"}],
            }
        )
    )
    resource = StagedResource.define(
        source="s", name="i", schema=Catalog(tmp_path).load("i.avsc"), key=("id",)
    )
    encoder_i = EnvelopeEncoder(resource, max_record_bytes=10_000)
    encoder_i.encode_batch([{"id": 1, "n": 2**31 - 1}], ingest_time_us=NOW)
    with pytest.raises(SchemaMismatchError, match="does not fit an Avro int") as info:
        encoder_i.encode_batch([{"id": 1, "n": 2**31}], ingest_time_us=NOW)
    assert info.value.field == "n"


def test_unknown_schema_stops_instead_of_dead_lettering(catalog: SchemaCatalog) -> None:
    """A fingerprint no schema file has is not a dead letter: it raises UnknownSchemaError."""
    from foundation.errors import UnknownSchemaError

    envelope = encoder(catalog).encode_batch(trades(1), ingest_time_us=NOW)[0]
    value = envelope.value[:2] + b"\xff" * 8 + envelope.value[10:]
    with pytest.raises(
        UnknownSchemaError, match=r"ingest\.x\.y\[1\]@77 has schema fingerprint ffff"
    ) as info:
        EnvelopeDecoder(catalog).decode("ingest.x.y", 1, 77, None, value, FixedHeaders([]))
    assert (info.value.topic, info.value.partition, info.value.offset) == ("ingest.x.y", 1, 77)


@pytest.mark.parametrize(
    ("logical", "value", "expected_us"),
    [
        ("timestamp-millis", 1_764_590_400_123, 1_764_590_400_123_000),
        ("timestamp-micros", 1_764_590_400_123_456, 1_764_590_400_123_456),
    ],
)
def test_ce_time_reads_an_int_time_field_in_its_own_unit(
    tmp_path: Any, logical: str, value: int, expected_us: int
) -> None:
    """An int time is milliseconds in a timestamp-millis field: ce_time must not be 1000x off."""
    from staging.schemas import SchemaCatalog as Catalog

    (tmp_path / "t.avsc").write_text(
        json.dumps(
            {
                "type": "record",
                "name": "T",
                "fields": [
                    {"name": "id", "type": "long"},
                    {
                        "name": "at",
                        "type": ["null", {"type": "long", "logicalType": logical}],
                        "default": None,
                    },
                ],
            }
        )
    )
    resource = StagedResource.define(
        source="s", name="t", schema=Catalog(tmp_path).load("t.avsc"), key=("id",), time_field="at"
    )
    batch = EnvelopeEncoder(resource, max_record_bytes=10_000).encode_batch(
        [{"id": 1, "at": value}], ingest_time_us=NOW
    )
    assert headers(batch[0])[H_TIME].decode() == rfc3339(expected_us)


def test_compiled_and_fastavro_writes_stage_the_same_values(catalog: SchemaCatalog) -> None:
    """The compiled writer stages fastavro's bytes; a row it does not encode itself (a
    datetime for the time) goes to fastavro and is staged all the same, and a row
    fastavro refuses is still a schema mismatch naming the field."""
    schema = catalog.load("coinbase/matches.avsc")
    rows = trades(6)
    rows[2] = {**rows[2], "time": datetime(2026, 12, 5, 8, 0, 0, 123456, tzinfo=UTC)}
    rows[4] = {**rows[4], "price": Decimal("7E+3")}
    values = encoder(catalog).encode_batch(rows, ingest_time_us=NOW).values
    assert values == [encode_value(schema, row) for row in rows]
    rows[3] = {**rows[3], "side": "sideways"}
    with pytest.raises(SchemaMismatchError) as info:
        encoder(catalog).encode_batch(rows, ingest_time_us=NOW)
    assert info.value.field == "side" and info.value.record_index == 3
