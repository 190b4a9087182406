"""Avro single-object encoding: the bytes of every staged record value.

A staged value is, per the Avro specification's *single-object encoding*::

    C3 01 | 8-byte little-endian CRC-64-AVRO fingerprint | Avro binary body

The fingerprint is taken over the schema's Parsing Canonical Form, so any
reader holding the same ``.avsc`` file recognises the schema without a
registry. Pure code: no I/O, no Kafka.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import fastavro

MAGIC = b"\xc3\x01"
HEADER_SIZE = len(MAGIC) + 8

_EMPTY = 0xC15D213AA4D7A795
_MASK = 0xFFFFFFFFFFFFFFFF


def _fp_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY & -(fp & 1))
        table.append(fp & _MASK)
    return tuple(table)


_FP_TABLE = _fp_table()


def fingerprint64(data: bytes) -> int:
    """CRC-64-AVRO (Rabin) fingerprint of ``data``, as the Avro spec defines it."""
    fp = _EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _FP_TABLE[(fp ^ byte) & 0xFF]
    return fp


def single_object_header(canonical_form: str) -> bytes:
    """The 10-byte prefix that identifies a schema in single-object encoding."""
    return MAGIC + fingerprint64(canonical_form.encode("utf-8")).to_bytes(8, "little")


def split_single_object(value: bytes) -> tuple[bytes, memoryview]:
    """Split a single-object encoded value into (10-byte header, Avro body).

    Raises ``ValueError`` when the value is too short or lacks the marker.
    """
    if len(value) < HEADER_SIZE:
        raise ValueError(f"value is {len(value)} bytes, shorter than the {HEADER_SIZE}-byte header")
    if value[:2] != MAGIC:
        raise ValueError(f"value starts with {value[:2].hex()}, not the Avro marker c301")
    return value[:HEADER_SIZE], memoryview(value)[HEADER_SIZE:]


def encode_body(parsed_schema: Any, record: Mapping[str, Any]) -> bytes:
    """Avro binary body of ``record`` (no header)."""
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed_schema, record)
    return buf.getvalue()


def decode_body(parsed_schema: Any, body: bytes | memoryview) -> dict[str, Any]:
    """Decode an Avro binary body; raises on truncated or trailing bytes."""
    buf = io.BytesIO(body)
    record = fastavro.schemaless_reader(buf, parsed_schema, None)
    if buf.tell() != len(body):
        raise ValueError(f"{len(body) - buf.tell()} trailing bytes after the Avro record")
    if not isinstance(record, dict):
        raise ValueError("schema does not describe a record")
    return record
