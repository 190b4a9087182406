"""Staged Avro bodies into one Avro Object Container File, for ClickHouse's Avro input.

Pure code. A staged value is a single-object header and an Avro body
(:mod:`staging.codec`). ClickHouse's ``FORMAT Avro`` reads an *Object
Container File* (Avro specification, "Object Container Files")::

    "Obj" 01 | metadata map {avro.schema: <writer schema JSON>, avro.codec: null} | sync (16)
    block:     count (long) | size (long) | the bodies, concatenated | sync (16)

The bodies of one writer schema are copied, untouched, into one block under
that schema: nothing is decoded. The sync marker is derived from the schema's
fingerprint, so the same records always give the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

from staging.codec import HEADER_SIZE
from staging.schemas import StagedSchema

MAGIC = b"Obj\x01"


def zigzag_long(n: int) -> bytes:
    """An Avro ``long``: zig-zag, then a variable-length base-128 integer."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _avro_bytes(data: bytes) -> bytes:
    return zigzag_long(len(data)) + data


class ContainerFormat:
    """The container file head of one writer schema, built once and reused per insert."""

    __slots__ = ("head", "schema", "sync")

    def __init__(self, schema: StagedSchema) -> None:
        self.schema = schema
        self.sync = schema.header[2:] * 2
        metadata = (
            (b"avro.schema", schema.full_form.encode("utf-8")),
            (b"avro.codec", b"null"),
        )
        self.head = (
            MAGIC
            + zigzag_long(len(metadata))
            + b"".join(_avro_bytes(k) + _avro_bytes(v) for k, v in metadata)
            + zigzag_long(0)
            + self.sync
        )

    def container(self, values: Sequence[bytes]) -> bytes:
        """A container file of one block holding the bodies of ``values`` (staged
        values of this schema: each starts with its 10-byte single-object header)."""
        body = b"".join([value[HEADER_SIZE:] for value in values])
        return b"".join(
            (self.head, zigzag_long(len(values)), zigzag_long(len(body)), body, self.sync)
        )
