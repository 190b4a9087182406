"""The compiled Avro writer: fastavro's bytes, byte for byte, or no answer."""

from __future__ import annotations

import io
import random
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import pytest

from source_workers.connectors.coinbase.trades import trade_row
from source_workers.connectors.usgs.resources.earthquakes import record_of
from staging.avro_fast import compile_writer, zigzag
from staging.schemas import SchemaCatalog
from tests.servers.usgs import quake

ALL_TYPES = fastavro.parse_schema(
    {
        "type": "record",
        "name": "AllTypes",
        "fields": [
            {"name": "s", "type": "string"},
            {"name": "b", "type": "bytes"},
            {"name": "i", "type": "int"},
            {"name": "l", "type": "long"},
            {"name": "d", "type": "double"},
            {"name": "t", "type": "boolean"},
            {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["a", "b", "c"]}},
            {
                "name": "dec",
                "type": {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 12},
            },
            {
                "name": "dec0",
                "type": {"type": "bytes", "logicalType": "decimal", "precision": 5},
            },
            {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {"name": "tm", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "day", "type": {"type": "int", "logicalType": "date"}},
            {"name": "u", "type": {"type": "string", "logicalType": "uuid"}},
            {"name": "ns", "type": ["null", "string"]},
            {"name": "sn", "type": ["string", "null"]},
            {"name": "nl", "type": ["null", "long"]},
            {"name": "nd", "type": ["null", "double"]},
            {"name": "nt", "type": ["null", "boolean"]},
            {
                "name": "ndec",
                "type": [
                    "null",
                    {"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 4},
                ],
            },
            {"name": "nts", "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}]},
        ],
    }
)


def fastavro_bytes(schema: Any, row: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, row)
    return buf.getvalue()


def random_decimal(rng: random.Random, digits: int, scale: int) -> Decimal:
    unscaled = rng.randrange(-(10**digits) + 1, 10**digits)
    return Decimal(unscaled).scaleb(-rng.randint(0, scale))


def random_row(rng: random.Random) -> dict[str, Any]:
    text = "".join(rng.choice("aé€😀\x00 z") for _ in range(rng.choice((0, 1, 5, 70, 9000))))
    long_value = rng.choice(
        (0, -1, 63, -64, 64, -65, 2**63 - 1, -(2**63), rng.getrandbits(62) - 2**61)
    )
    return {
        "s": text,
        "b": rng.randbytes(rng.choice((0, 3, 200))),
        "i": rng.choice((0, 2**31 - 1, -(2**31), rng.randint(-1000, 1000))),
        "l": long_value,
        "d": rng.choice((0.0, -0.0, 1.5, float("inf"), float("nan"), rng.uniform(-1e300, 1e300))),
        "t": rng.random() < 0.5,
        "e": rng.choice("abc"),
        "dec": random_decimal(rng, rng.choice((1, 10, 26, 38)), 12),
        "dec0": Decimal(rng.choice((0, -1, 127, 128, -128, -129, 255, 256, -99999, 99999))),
        "ts": rng.getrandbits(60) - 2**59,
        "tm": rng.getrandbits(50),
        "day": rng.randint(-800_000, 800_000),
        "u": str(uuid.UUID(int=rng.getrandbits(128))),
        "ns": rng.choice((None, "x", "")),
        "sn": rng.choice((None, "y")),
        "nl": rng.choice((None, 0, -5, 2**40)),
        "nd": rng.choice((None, 2.5)),
        "nt": rng.choice((None, True, False)),
        "ndec": rng.choice((None, random_decimal(rng, 16, 4))),
        "nts": rng.choice((None, 1_700_000_000_000_000)),
    }


def test_every_supported_type_is_written_as_fastavro_writes_it() -> None:
    """Thousands of random rows over every compiled type, its edges (64-bit longs,
    two's-complement boundaries of decimals, 8,192-byte strings, NaN, -0.0) and both
    union orders: the bytes are fastavro's, and none of these rows needs fastavro."""
    write = compile_writer(ALL_TYPES)
    assert write is not None
    rng = random.Random(2026)
    for _ in range(3_000):
        row = random_row(rng)
        assert write(row) == fastavro_bytes(ALL_TYPES, row), row


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("l", True),  # a bool is an int to fastavro
        ("l", 2**63),  # over 64 bits: fastavro refuses
        ("l", -(2**63) - 1),
        ("l", 1.0),
        ("l", "1"),
        ("i", 2**31),
        ("d", 1),  # an int for a double: fastavro widens it
        ("d", True),
        ("d", Decimal("1.5")),
        ("t", 1),
        ("t", None),
        ("s", None),
        ("s", "lone \ud800 surrogate"),
        ("s", b"bytes"),
        ("b", "text"),
        ("b", bytearray(b"x")),
        ("e", "d"),  # not a symbol
        ("e", None),
        ("dec", Decimal("1.0000000000001")),  # 13 decimal places, scale 12
        ("dec", Decimal("1" * 39)),  # over the precision
        ("dec", Decimal("NaN")),
        ("dec", Decimal("Infinity")),
        ("dec", 1.5),
        ("dec", b"\x01"),  # already unscaled bytes: fastavro passes them through
        ("dec0", Decimal("0E-3")),
        ("ts", datetime(2026, 12, 5, 8, 0)),  # naive: fastavro reads it in local time
        ("tm", datetime(1969, 12, 31, 23, 59)),
        ("ts", date(2026, 12, 5)),
        ("ts", "2026-12-05"),
        ("day", date(2026, 12, 5)),
        ("u", uuid.UUID(int=7)),
        ("ns", 5),
        ("nl", False),
        ("nd", 3),
        ("ndec", Decimal("1.23456")),
        ("nts", datetime(2026, 1, 1)),
    ],
)
def test_a_value_it_does_not_encode_itself_is_left_to_fastavro(field: str, value: Any) -> None:
    """Any value outside the exact types the writer encodes makes it refuse the row (the
    staging encoder then gives the row to fastavro: tests/unit/test_envelope.py)."""
    write = compile_writer(ALL_TYPES)
    assert write is not None
    row = random_row(random.Random(1)) | {field: value}
    with pytest.raises(Exception):  # noqa: B017 - any refusal hands the row over
        write(row)


@pytest.mark.parametrize(
    "value", ["1E+9", "-0", "0E+5", "-128", "127", "128", "-129", "-32768", "32767", "99999E+30"]
)
def test_decimal_edges_are_written_as_fastavro_writes_them(value: str) -> None:
    """Positive exponents, negative zero and the byte-size boundaries
    (fastavro sizes -128 from its magnitude: two bytes)."""
    write = compile_writer(ALL_TYPES)
    assert write is not None
    row = random_row(random.Random(5)) | {"dec0": Decimal(value)}
    assert write(row) == fastavro_bytes(ALL_TYPES, row)


def test_aware_datetimes_are_converted_as_fastavro_converts_them() -> None:
    """A time-zone-aware datetime in a timestamp-micros or -millis field (plain or
    nullable): UTC or another offset, before 1970, sub-millisecond parts cut as fastavro
    cuts them, the ends of datetime's range."""
    write = compile_writer(ALL_TYPES)
    assert write is not None
    rng = random.Random(12)
    zones = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    edges = [
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 500, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    ]
    moments = edges + [
        datetime(1900, 1, 1, tzinfo=rng.choice(zones))
        + timedelta(microseconds=rng.randrange(10**17))
        for _ in range(2_000)
    ]
    base = random_row(random.Random(4))
    for moment in moments:
        row = base | {"ts": moment, "tm": moment, "nts": moment}
        assert write(row) == fastavro_bytes(ALL_TYPES, row), moment


def test_a_missing_field_is_left_to_fastavro() -> None:
    """fastavro writes null for a missing nullable field and refuses a missing required
    one; the compiled writer leaves both to it."""
    write = compile_writer(ALL_TYPES)
    assert write is not None
    row = random_row(random.Random(3))
    for name in ("ns", "l"):
        partial = {k: v for k, v in row.items() if k != name}
        with pytest.raises(KeyError):
            write(partial)


@pytest.mark.parametrize(
    "kind",
    [
        "float",
        {"type": "fixed", "name": "F", "size": 4},
        {"type": "array", "items": "long"},
        {"type": "map", "values": "string"},
        {"type": "record", "name": "Inner", "fields": [{"name": "x", "type": "long"}]},
        ["null", "string", "long"],
        ["string", "long"],
        {"type": "fixed", "name": "D", "size": 8, "logicalType": "decimal", "precision": 9},
        {"type": "string", "logicalType": "made-up"},
    ],
)
def test_schemas_outside_what_it_compiles_are_left_to_fastavro(kind: Any) -> None:
    schema = fastavro.parse_schema(
        {"type": "record", "name": "R", "fields": [{"name": "x", "type": kind}]}
    )
    assert compile_writer(schema) is None


def test_every_shipped_schema_compiles() -> None:
    """The connectors' schemas are all within what it compiles (a change that left one
    to fastavro would slow that source silently)."""
    catalog = SchemaCatalog.default()
    root = Path(__file__).resolve().parents[2] / "schemas"
    paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.avsc"))
    assert paths
    for path in paths:
        assert compile_writer(catalog.load(path).parsed) is not None, path


def test_zigzag_matches_the_avro_specification() -> None:
    assert [zigzag(n) for n in (0, -1, 1, -2, 2147483647, -2147483648)] == [
        b"\x00",
        b"\x01",
        b"\x02",
        b"\x03",
        b"\xfe\xff\xff\xff\x0f",
        b"\xff\xff\xff\xff\x0f",
    ]


def test_the_connectors_rows_are_written_by_the_compiled_writer() -> None:
    """A Coinbase trade and a USGS earthquake as their connectors build them are encoded
    by the compiled writer itself (none is handed to fastavro), with fastavro's bytes."""
    catalog = SchemaCatalog.default()
    rows = {
        "coinbase/matches.avsc": trade_row(
            {
                "trade_id": 7,
                "side": "buy",
                "price": "64269.92",
                "size": "0.00090780",
                "time": "2026-12-05T08:00:00.123456Z",
                "maker_order_id": str(uuid.UUID(int=1)),
                "taker_order_id": str(uuid.UUID(int=2)),
            },
            "BTC-USD",
            91_000_000_000,
        ),
        "usgs/earthquakes.avsc": record_of(quake(3)),
    }
    for path, row in rows.items():
        parsed = catalog.load(path).parsed
        write = compile_writer(parsed)
        assert write is not None
        assert write(row) == fastavro_bytes(parsed, row), path
