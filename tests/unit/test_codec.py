"""Avro single-object encoding and the CRC-64-AVRO fingerprint."""

from __future__ import annotations

import fastavro.schema

from staging.codec import MAGIC, fingerprint64, single_object_header
from staging.schemas import SchemaCatalog


def test_fingerprint_matches_the_avro_specification_vector() -> None:
    """The fingerprint of the schema "null" is the value the Avro spec's test suite lists."""
    assert fingerprint64(b'"null"') == 7195948357588979594


def test_fingerprint_agrees_with_fastavro(catalog: SchemaCatalog) -> None:
    """Our little-endian header bytes equal fastavro's CRC-64-AVRO fingerprint hex."""
    schema = catalog.load("coinbase/matches.avsc")
    expected = fastavro.schema.fingerprint(schema.canonical_form, "CRC-64-AVRO")
    assert schema.header[2:].hex() == expected
    assert single_object_header(schema.canonical_form) == MAGIC + bytes.fromhex(expected)
