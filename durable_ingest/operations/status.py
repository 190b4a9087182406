"""``ingest status``, pure: per resource and partition, offsets, lag, checkpoint, freshness.

The command (:mod:`durable_ingest.commands.status`) reads the broker and hands
the facts here as :class:`PartitionProbe` values; this module turns them into
lag with its caveat, and renders a table or a JSON document (see
docs/operations.md for every field). No I/O here.

Lag is ``end - committed``, where ``end`` is the partition's true end. The
broker's high watermark gives it on Kafka, but not on every Kafka-compatible
broker: Tansu, the embedded one, reports a high watermark below offsets it
serves. So the command also reads the backlog from the committed offset (up
to a limit), and the watermark is believed only where it is consistent with
what was read: at least the committed offset and above every offset read
before it was asked for. Where it is not, the end read is used; where the read
stopped at its limit and the watermark is wrong, the lag is unknown (with the
lower bound the read proves), never a wrong number.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from durable_ingest.render import text_table
from staging.checkpoints import resume_point, write_time_micros
from staging.times import rfc3339

JSON_VERSION = 1


@dataclass(frozen=True, slots=True)
class PartitionProbe:
    """What was read of one partition of a staged topic."""

    partition: int
    committed: int | None
    """The sink group's committed next offset (None: nothing committed yet)."""
    low: int
    high: int
    """The broker's watermarks; ``high`` asked after every read below."""
    last_read: int | None
    """The highest offset read (the record before ``committed`` and the backlog)."""
    read_to_limit: bool
    """The backlog read stopped at its limit, not at the end of the partition."""
    last_written_event_us: int | None = None
    """Event time (``ce_time``) of the record at ``committed - 1``: the newest one written."""


@dataclass(frozen=True, slots=True)
class PartitionStatus:
    partition: int
    committed: int | None
    low: int
    high: int
    watermark_ok: bool
    """False when the high watermark contradicts what was read (wrong on this broker)."""
    end: int | None
    """The partition's end as used for the lag (None: unknown)."""
    end_source: str | None
    """``watermark`` or ``read`` (the watermark was wrong, the end was read), or None."""
    lag: int | None
    lag_at_least: int
    """What the reads prove: the lag is at least this (equal to ``lag`` when known)."""
    last_written_event_us: int | None


def partition_status(probe: PartitionProbe) -> PartitionStatus:
    """Lag of one partition; unknown rather than wrong when the watermark cannot be believed."""
    base = probe.committed if probe.committed is not None else probe.low
    read_end = probe.last_read + 1 if probe.last_read is not None else None
    watermark_ok = probe.high >= base and (read_end is None or probe.high >= read_end)
    seen_end = max(base, read_end) if read_end is not None else base
    end: int | None
    if watermark_ok:
        end, source = max(probe.high, seen_end), "watermark"
    elif not probe.read_to_limit:
        end, source = seen_end, "read"
    else:
        end, source = None, None
    lag = end - base if end is not None else None
    return PartitionStatus(
        partition=probe.partition,
        committed=probe.committed,
        low=probe.low,
        high=probe.high,
        watermark_ok=watermark_ok,
        end=end,
        end_source=source,
        lag=lag,
        lag_at_least=lag if lag is not None else seen_end - base,
        last_written_event_us=probe.last_written_event_us,
    )


@dataclass(frozen=True, slots=True)
class CheckpointStatus:
    resume_from: dict[str, Any] | None
    """What the source resumes from (:func:`staging.checkpoints.resume_point`)."""
    written_at_us: int | None
    """When the source staged the write that checkpoint describes (``ce_ingesttime``)."""
    partitions_saved: tuple[int, ...]
    """Partitions that have a saved entry."""


def checkpoint_status(entries: Mapping[int, Mapping[str, Any]]) -> CheckpointStatus:
    """The resume point of a resource's saved entries, and when its write was staged."""
    resume = resume_point(entries)
    written: int | None = None
    if resume is not None:
        times = [
            _micros(str(e.get("write_time", "")))
            for e in entries.values()
            if dict(e.get("checkpoint") or {}) == resume
        ]
        known = [t for t in times if t is not None]
        written = max(known) if known else None
    return CheckpointStatus(resume, written, tuple(sorted(entries)))


@dataclass(frozen=True, slots=True)
class DeadLetterCounts:
    topic: str
    total: int
    """Dead letters the topic holds (within its retention)."""
    open: int
    """Not handled by ``ingest dlq retry`` yet (at or after the ``ingest.dlq.<source>`` offset)."""
    newest_reason: str | None = None
    newest_time: str | None = None


@dataclass(frozen=True, slots=True)
class ResourceStatus:
    source: str
    resource: str
    topic: str
    group: str
    exists: bool
    partitions: tuple[PartitionStatus, ...] = ()
    checkpoint: CheckpointStatus | None = None
    dead_letters: DeadLetterCounts | None = None

    @property
    def lag(self) -> int | None:
        """The sum over partitions; None when any partition's lag is unknown."""
        lags = [p.lag for p in self.partitions]
        return None if any(x is None for x in lags) else sum(x for x in lags if x is not None)

    @property
    def lag_at_least(self) -> int:
        return sum(p.lag_at_least for p in self.partitions)

    @property
    def newest_written_event_us(self) -> int | None:
        times = [p.last_written_event_us for p in self.partitions if p.last_written_event_us]
        return max(times) if times else None

    @property
    def watermarks_ok(self) -> bool:
        return all(p.watermark_ok for p in self.partitions)


def _micros(text: str) -> int | None:
    try:
        return write_time_micros(text)
    except ValueError:
        return None


def event_time_us(header: str | None) -> int | None:
    """``ce_time`` (RFC 3339 with microseconds) as microseconds, None if absent or odd."""
    return _micros(header) if header else None


def age_s(now_us: int, then_us: int | None) -> float | None:
    return round((now_us - then_us) / 1e6, 3) if then_us is not None else None


# --- JSON ---------------------------------------------------------------------


def _time(micros: int | None) -> str | None:
    return rfc3339(micros) if micros is not None else None


def _partition_json(p: PartitionStatus, now_us: int) -> dict[str, Any]:
    return {
        "partition": p.partition,
        "committed": p.committed,
        "low": p.low,
        "high": p.high,
        "watermark_ok": p.watermark_ok,
        "end": p.end,
        "end_source": p.end_source,
        "lag": p.lag,
        "lag_at_least": p.lag_at_least,
        "last_written_event_time": _time(p.last_written_event_us),
        "freshness_s": age_s(now_us, p.last_written_event_us),
    }


def resource_json(status: ResourceStatus, now_us: int) -> dict[str, Any]:
    checkpoint = status.checkpoint
    letters = status.dead_letters
    newest = status.newest_written_event_us
    return {
        "source": status.source,
        "resource": status.resource,
        "topic": status.topic,
        "group": status.group,
        "exists": status.exists,
        "lag": status.lag if status.exists else None,
        "lag_at_least": status.lag_at_least,
        "watermarks_ok": status.watermarks_ok,
        "freshness": {
            "last_written_event_time": _time(newest),
            "age_s": age_s(now_us, newest),
        },
        "checkpoint": None
        if checkpoint is None
        else {
            "resume_from": checkpoint.resume_from,
            "written_at": _time(checkpoint.written_at_us),
            "partitions_saved": list(checkpoint.partitions_saved),
        },
        "dead_letters": None
        if letters is None
        else {
            "topic": letters.topic,
            "total": letters.total,
            "open": letters.open,
            "newest_reason": letters.newest_reason,
            "newest_time": letters.newest_time,
        },
        "partitions": [_partition_json(p, now_us) for p in status.partitions],
    }


def status_json(statuses: Sequence[ResourceStatus], now_us: int) -> dict[str, Any]:
    """The ``ingest status --json`` document (version 1; see docs/operations.md)."""
    return {
        "version": JSON_VERSION,
        "generated_at": rfc3339(now_us),
        "resources": [resource_json(s, now_us) for s in statuses],
    }


# --- table --------------------------------------------------------------------


def format_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 0:
        return "0s (event time ahead of this clock)"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def lag_text(lag: int | None, at_least: int, end_source: str | None = None) -> str:
    if lag is None:
        return f"unknown (>= {at_least})"
    return f"{lag}*" if end_source == "read" else str(lag)


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def render_resource(status: ResourceStatus, now_us: int) -> list[str]:
    head = f"{status.source}.{status.resource}  topic {status.topic}  group {status.group}"
    if not status.exists:
        return [head, "  topic does not exist yet (ingest stack up or a worker creates it)"]
    read = any(p.end_source == "read" for p in status.partitions)
    total_source = "read" if read and status.lag is not None else None
    lines = [
        head,
        f"  lag        {lag_text(status.lag, status.lag_at_least, total_source)}"
        f"  over {len(status.partitions)} partition(s)",
    ]
    newest = status.newest_written_event_us
    fresh = format_age(age_s(now_us, newest))
    lines.append(
        f"  freshness  {fresh}"
        + (
            f"  (newest written event {_time(newest)})"
            if newest is not None
            else "  (nothing written)"
        )
    )
    checkpoint = status.checkpoint
    if checkpoint is None or checkpoint.resume_from is None:
        lines.append("  checkpoint none: the source starts from its live feed")
    else:
        text = json.dumps(checkpoint.resume_from, sort_keys=True, separators=(",", ":"))
        lines.append(
            f"  checkpoint {_short(text, 70)}  (written {_time(checkpoint.written_at_us) or '?'})"
        )
    letters = status.dead_letters
    if letters is None:
        lines.append("  dead letters: no topic")
    else:
        text = f"  dead letters {letters.total} ({letters.open} open)"
        if letters.newest_reason is not None:
            text += f"  newest {letters.newest_time or '?'}: {_short(letters.newest_reason, 60)}"
        lines.append(text)
    columns = ("PARTITION", "COMMITTED", "HIGH WATERMARK", "END", "LAG", "FRESHNESS")
    rows = []
    for p in status.partitions:
        rows.append(
            [
                str(p.partition),
                "-" if p.committed is None else str(p.committed),
                str(p.high) + ("" if p.watermark_ok else " (wrong)"),
                "?" if p.end is None else str(p.end),
                lag_text(p.lag, p.lag_at_least, p.end_source),
                format_age(age_s(now_us, p.last_written_event_us)),
            ]
        )
    lines += ["    " + line for line in text_table(columns, rows).splitlines()]
    return lines


def render_table(statuses: Sequence[ResourceStatus], now_us: int) -> str:
    """The terminal table: one block per resource, then the footnotes that apply."""
    if not statuses:
        return "no sources are configured (add [sources.<name>] to ingest.toml)"
    blocks = ["\n".join(render_resource(s, now_us)) for s in statuses]
    notes = []
    if any(p.end_source == "read" for s in statuses for p in s.partitions):
        notes.append("* lag counted by reading the partition: its high watermark is wrong")
    if any(p.lag is None for s in statuses for p in s.partitions):
        notes.append(
            "unknown: the high watermark is wrong and the backlog is over the read limit "
            "(--scan-limit)"
        )
    if notes:
        notes.append("(see docs/operations.md, 'High watermarks')")
    return "\n\n".join(blocks) + ("\n\n" + "\n".join(notes) if notes else "")
