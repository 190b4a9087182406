"""The Checkpoint Store contract, and where a source resumes from.

A checkpoint is a small JSON object saved only after the write it describes
is durable. Implementations:
:class:`staging.kafka.checkpoints.KafkaCheckpointStore` (a compacted topic)
and :class:`staging.memory.checkpoints.InMemoryCheckpointStore`.

Sinks save one entry per partition: the newest checkpoint whose carrying
record they wrote there, under ``<resource>/<partition>``, together with the
write's time and the partitions it touched (:func:`partition_entry`). A write
is in the warehouse once every partition it touched has an entry at least as
new; :func:`resume_point` picks the newest such write. This holds with any
number of sink members, each saving only the partitions it owns. Several
processes of one source may stage into the same topics when each has an
instance name: its entries are saved under ``<resource>@<instance>/<partition>``
and it resumes from its own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from staging.envelope import (
    H_CHECKPOINT,
    H_CHECKPOINT_INSTANCE,
    H_CHECKPOINT_PARTITIONS,
    H_CHECKPOINT_PREV,
    H_CHECKPOINT_SEQ,
    H_INGESTTIME,
    H_TYPE,
    Checkpoint,
)

CARRIER_HEADERS = frozenset(
    (
        H_CHECKPOINT,
        H_CHECKPOINT_PARTITIONS,
        H_CHECKPOINT_SEQ,
        H_CHECKPOINT_PREV,
        H_CHECKPOINT_INSTANCE,
        H_INGESTTIME,
        H_TYPE,
    )
)
"""The headers a checkpoint's carrier holds it in (see :func:`carried_in`)."""


@dataclass(frozen=True, slots=True)
class CarriedCheckpoint:
    """A checkpoint as a staged record carries it, and where that record is.

    The one shape of a carried checkpoint: a record's headers give it
    (:func:`carried_in`), a batch lists the newest per partition
    (``StagedBatch.checkpoints``), and a sink saves it as a partition entry
    (:meth:`entry`).
    """

    resource: str
    checkpoint: dict[str, Any]
    write_time: str
    """``ce_ingesttime`` of the write: RFC 3339 with fixed width, so it sorts as text."""
    partitions: tuple[int, ...]
    """Every partition the write touched; each carries this checkpoint at its end of the write."""
    seq: int | None = None
    """The write's sequence number (None: staged before sequences existed)."""
    prev: dict[int, int] = field(default_factory=dict)
    """For each partition the write did not touch: the writer's last earlier write there."""
    instance: str = ""
    """The source process that wrote it (its ``--instance``), or empty."""
    topic: str = ""
    partition: int = -1
    offset: int = -1
    """The carrying record's position (``-1`` before it is known)."""

    def at(self, topic: str, partition: int, offset: int) -> CarriedCheckpoint:
        return replace(self, topic=topic, partition=partition, offset=offset)

    def entry(self) -> dict[str, Any]:
        """What a sink saves for the carrier's partition (:func:`partition_entry`)."""
        return partition_entry(
            self.checkpoint, self.write_time, self.partitions, seq=self.seq, prev=self.prev
        )


def carried_in(headers: Mapping[str, bytes], partition: int) -> CarriedCheckpoint | None:
    """The checkpoint in a record's :data:`CARRIER_HEADERS` (None: it carries none);
    ``partition`` is the record's, the default of a write that names no partitions.
    ValueError for malformed headers."""
    if H_CHECKPOINT not in headers:
        return None
    value = json.loads(headers[H_CHECKPOINT])
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    parts = headers.get(H_CHECKPOINT_PARTITIONS, str(partition).encode()).decode()
    prev_text = headers.get(H_CHECKPOINT_PREV, b"").decode()
    return CarriedCheckpoint(
        resource=headers.get(H_TYPE, b"").decode("utf-8", "replace"),
        checkpoint=value,
        write_time=headers.get(H_INGESTTIME, b"").decode("ascii", "replace"),
        partitions=tuple(sorted(int(p) for p in parts.split(","))),
        seq=int(headers[H_CHECKPOINT_SEQ]) if H_CHECKPOINT_SEQ in headers else None,
        prev={
            int(p): int(q)
            for p, _, q in (item.partition(":") for item in prev_text.split(",") if item)
        },
        instance=headers.get(H_CHECKPOINT_INSTANCE, b"").decode("utf-8", "replace"),
    )


class CheckpointStore(Protocol):
    """Where sinks save checkpoints (after the commit) and sources load them (at start)."""

    def load(self, source: str, resource: str) -> dict[str, Any] | None:
        """The newest value saved under (source, resource), or None."""
        ...

    def load_all(self) -> dict[str, dict[str, Any]]:
        """Every saved value, by ``<source>/<resource>`` key."""
        ...

    def save(self, source: str, resource: str, checkpoint: Checkpoint) -> None:
        """Store durably; returns only once the store confirmed it."""
        ...

    def close(self) -> None:
        """Release the store's clients; idempotent."""
        ...


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def checkpoint_key(source: str, resource: str) -> str:
    """The key a checkpoint is stored under: ``<source>/<resource>``."""
    return f"{source}/{resource}"


def partition_slot(resource: str, partition: int, instance: str = "") -> str:
    """The store's resource slot for one partition's entry: ``<resource>/<partition>``, or
    ``<resource>@<instance>/<partition>`` for a source process with an instance name."""
    return f"{instance_slot(resource, instance)}/{partition}"


def instance_slot(resource: str, instance: str = "") -> str:
    """``<resource>``, or ``<resource>@<instance>``: whose entries a source resumes from."""
    return f"{resource}@{instance}" if instance else resource


def partition_entry(
    checkpoint: Mapping[str, Any],
    write_time: str,
    partitions: tuple[int, ...],
    *,
    seq: int | None = None,
    prev: Mapping[int, int] | None = None,
) -> dict[str, Any]:
    """What a sink saves for a partition after writing a carrying record."""
    entry: dict[str, Any] = {
        "checkpoint": dict(checkpoint),
        "write_time": write_time,
        "partitions": list(partitions),
    }
    if seq is not None:
        entry["seq"] = seq
        entry["prev"] = {str(p): q for p, q in sorted((prev or {}).items())}
    return entry


def partition_entries(
    store: CheckpointStore, source: str, resource: str, instance: str = ""
) -> dict[int, dict[str, Any]]:
    """The per-partition entries sinks saved for one resource (reads the whole store)."""
    return entries_in(store.load_all(), source, resource, instance)


def entries_in(
    saved: Mapping[str, Mapping[str, Any]], source: str, resource: str, instance: str = ""
) -> dict[int, dict[str, Any]]:
    """One resource's per-partition entries (of one source instance), out of everything
    ``load_all`` returned."""
    prefix = f"{checkpoint_key(source, instance_slot(resource, instance))}/"
    entries = {}
    for key, value in saved.items():
        tail = key[len(prefix) :]
        if key.startswith(prefix) and tail.isdigit():
            entries[int(tail)] = dict(value)
    return entries


def resume_point(entries: Mapping[int, Mapping[str, Any]]) -> dict[str, Any] | None:
    """The newest checkpoint whose write, and every write before it, is in the warehouse.

    A write is complete when every partition it touched has an entry from it or
    a later write, and every partition it did not touch has an entry at least as
    new as the last earlier write there (``prev``). Per partition, records are
    written in offset order, so a newer carrier there means the older writes'
    records there are written. Writes are ordered by ``seq``; an entry saved
    before sequences existed counts with its write time in microseconds as its
    sequence and no ``prev`` (what could be known then).
    """
    seqs = {q: _seq_of(entry) for q, entry in entries.items()}
    best: Mapping[str, Any] | None = None
    best_seq = -1
    for q, entry in entries.items():
        seq = seqs[q]
        touched = all(p in seqs and seqs[p] >= seq for p in entry["partitions"])
        earlier = all(
            int(p) in seqs and seqs[int(p)] >= s for p, s in dict(entry.get("prev") or {}).items()
        )
        if touched and earlier and seq > best_seq:
            best, best_seq = entry, seq
    return dict(best["checkpoint"]) if best is not None else None


def _seq_of(entry: Mapping[str, Any]) -> int:
    if "seq" in entry:
        return int(entry["seq"])
    return write_time_micros(str(entry["write_time"]))


def write_time_micros(text: str) -> int:
    """``2026-11-22T04:33:54.532427Z`` as microseconds since the epoch."""
    moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)
