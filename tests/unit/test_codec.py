"""Avro single-object encoding and the CRC-64-AVRO fingerprint."""

from __future__ import annotations

import fastavro.schema
import pytest

from staging.codec import (
    HEADER_SIZE,
    MAGIC,
    decode_body,
    encode_body,
    fingerprint64,
    single_object_header,
    split_single_object,
)
from staging.schemas import SchemaCatalog
from tests.helpers import trade


def test_fingerprint_matches_the_avro_specification_vector() -> None:
    """The fingerprint of the schema "null" is the value the Avro spec's test suite lists."""
    assert fingerprint64(b'"null"') == 7195948357588979594


def test_fingerprint_agrees_with_fastavro(catalog: SchemaCatalog) -> None:
    """Our little-endian header bytes equal fastavro's CRC-64-AVRO fingerprint hex."""
    schema = catalog.load("coinbase/matches.avsc")
    expected = fastavro.schema.fingerprint(schema.canonical_form, "CRC-64-AVRO")
    assert schema.header[2:].hex() == expected
    assert single_object_header(schema.canonical_form) == MAGIC + bytes.fromhex(expected)


def test_body_round_trips(catalog: SchemaCatalog) -> None:
    """A record encoded then decoded comes back equal."""
    schema = catalog.load("coinbase/matches.avsc")
    row = trade(7)
    assert decode_body(schema.parsed, encode_body(schema.parsed, row)) == row


def test_trailing_bytes_are_refused(catalog: SchemaCatalog) -> None:
    """Bytes after a complete record mean the body is not what it claims."""
    schema = catalog.load("coinbase/matches.avsc")
    with pytest.raises(ValueError, match="trailing"):
        decode_body(schema.parsed, encode_body(schema.parsed, trade(1)) + b"\x00")


@pytest.mark.parametrize(
    ("value", "message"),
    [(b"\xc3\x01\x00", "shorter"), (b"\x00\x01" + b"\x00" * 20, "marker")],
)
def test_split_refuses_values_that_are_not_single_object(value: bytes, message: str) -> None:
    """A value without the full 10-byte header or the C3 01 marker is refused."""
    with pytest.raises(ValueError, match=message):
        split_single_object(value)


def test_split_returns_header_and_body() -> None:
    """The header is the first ten bytes, the body the rest."""
    header, body = split_single_object(MAGIC + b"12345678" + b"body")
    assert len(header) == HEADER_SIZE and bytes(body) == b"body"
