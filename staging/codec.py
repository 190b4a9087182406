"""Avro single-object encoding: the bytes of every staged record value.

A staged value is, per the Avro specification's *single-object encoding*::

    C3 01 | 8-byte little-endian CRC-64-AVRO fingerprint | Avro binary body

The fingerprint is taken over the schema's Parsing Canonical Form, so any
reader holding the same ``.avsc`` file recognises the schema without a
registry. The body is fastavro's ``schemaless_writer`` output; the envelope
encoder and decoder (:mod:`staging.envelope`, :mod:`staging.decoder`) add
and check the header. Pure code: no I/O, no Kafka.
"""

from __future__ import annotations

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
