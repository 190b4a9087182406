"""What ``ingest replay`` reads and how it reports: the pure core of a replay.

No I/O here (see :mod:`durable_ingest.operations.replay` for the loop around it):

* :func:`parse_bound` reads ``--from`` / ``--to``: ``earliest``, an RFC 3339
  time, ``offset:N`` (every partition) or ``P:N[,P:N...]`` (per partition);
* :func:`plan_replay` turns two bounds and what the broker said (low
  watermarks, offsets by time, the earliest retained record's time) into a
  :class:`ReplayPlan`, refusing a range before retention or reversed;
* :class:`PartitionGate` applies a plan's time bounds to the records read:
  a broker's time index may point earlier than asked (the embedded broker's
  does), so records are also compared with the bound times themselves;
* :func:`live_table_warning` says when a replay into the live table is not
  protected by the insert-token window, and what protects it instead;
* :class:`ReplayReport` counts rows read, written, deduplicated and corrupt.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from foundation.errors import ReplayRangeError
from sink_workers.tables import DEDUP_WINDOW

_PER_PARTITION = re.compile(r"^\d+:\d+(,\d+:\d+)*$")
_EVERY = re.compile(r"^offset:(\d+)$")
SYNTAX = (
    "use an RFC 3339 time (2026-11-22T03:00:00Z), offset:N (every partition), "
    "P:N[,P:N...] (per partition) or earliest"
)


@dataclass(frozen=True, slots=True)
class Earliest:
    """The oldest retained record of every partition."""

    text: str = "earliest"


@dataclass(frozen=True, slots=True)
class AtTime:
    """The first record of each partition whose timestamp is at or after ``ms``."""

    ms: int
    text: str


@dataclass(frozen=True, slots=True)
class AtOffsets:
    """An offset for every partition (``every``) or for the partitions named."""

    text: str
    every: int | None = None
    per_partition: Mapping[int, int] = field(default_factory=dict)


Bound = Earliest | AtTime | AtOffsets


def parse_bound(text: str, option: str = "--from") -> Bound:
    """``--from`` / ``--to`` text as a bound; ReplayRangeError naming the syntax."""
    value = text.strip()
    if value == "earliest":
        return Earliest()
    every = _EVERY.match(value)
    if every:
        return AtOffsets(value, every=int(every.group(1)))
    if _PER_PARTITION.match(value):
        pairs = [item.split(":") for item in value.split(",")]
        per = {int(p): int(o) for p, o in pairs}
        if len(per) != len(pairs):
            raise ReplayRangeError(f"{option} {text!r} names a partition twice")
        return AtOffsets(value, per_partition=per)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ReplayRangeError(f"{option} {text!r} is not a time or offsets: {SYNTAX}") from None
    if moment.tzinfo is None:
        raise ReplayRangeError(
            f"{option} {text!r} has no time zone: add Z or an offset such as +01:00"
        )
    ms = int(moment.timestamp() * 1000)
    if ms < 0:
        raise ReplayRangeError(f"{option} {text!r} is before 1970: no staged record is that old")
    return AtTime(ms, value)


def format_ms(ms: int | None) -> str:
    """A record time as RFC 3339 UTC with milliseconds (``-`` for none)."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


@dataclass(frozen=True, slots=True)
class PartitionPlan:
    """One partition's range: seek to ``start``, end before ``stop`` (None: the current end).

    ``since_ms``: records before this time are skipped until the first at or
    after it. ``until_ms``: the partition ends at its first record at or after
    this time (the default ``--to`` is the moment the replay started).
    """

    partition: int
    start: int
    stop: int | None = None
    since_ms: int | None = None
    until_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    topic: str
    partitions: tuple[PartitionPlan, ...]
    gaps: tuple[str, ...] = ()
    """Ranges that start before the retained data, accepted with ``--allow-gap``."""


GAP_HINT = "; replay from there with --allow-gap, or pick a later --from"


def check_order(start: Bound, stop: Bound | None, now_ms: int) -> None:
    """What can be refused before asking the broker: ``--to earliest``, and a time
    ``--from`` that is not before the time ``--to`` (default: now)."""
    if isinstance(stop, Earliest):
        raise ReplayRangeError("--to earliest is no end of a range: give a time or offsets")
    until = stop.ms if isinstance(stop, AtTime) else now_ms
    if isinstance(start, AtTime) and start.ms >= until:
        limit = f"--to {stop.text}" if isinstance(stop, AtTime) else f"now ({format_ms(now_ms)})"
        raise ReplayRangeError(f"--from {start.text} is not before {limit}")


def plan_replay(
    topic: str,
    partitions: Sequence[int],
    start: Bound,
    stop: Bound | None,
    *,
    low: Mapping[int, int],
    offsets_at_start: Mapping[int, int | None] | None = None,
    first_times: Mapping[int, int | None] | None = None,
    now_ms: int,
    retention_ms: int = -1,
    allow_gap: bool = False,
) -> ReplayPlan:
    """The range to read on each partition of ``topic``.

    ``low``: the low watermark per partition (the first retained offset).
    ``offsets_at_start``: for a time ``start``, the broker's offsets by time.
    ``first_times``: for a time ``start``, the time of the first retained
    record of each partition whose low watermark is above 0 (None: none left).
    A range that begins before the retained data raises ReplayRangeError
    naming where the data starts, unless ``allow_gap``.
    """
    check_order(start, stop, now_ms)
    until = stop.ms if isinstance(stop, AtTime) else now_ms
    known = set(partitions)
    for bound, option in ((start, "--from"), (stop, "--to")):
        if isinstance(bound, AtOffsets) and bound.per_partition:
            unknown = sorted(set(bound.per_partition) - known)
            if unknown:
                raise ReplayRangeError(
                    f"{option} names partition {unknown[0]}, but {topic} has partitions "
                    f"{', '.join(map(str, sorted(known)))}",
                    topic=topic,
                    partition=unknown[0],
                )
    gaps: list[str] = []
    plans = []
    for p in sorted(known):
        first = low.get(p, 0)
        if isinstance(start, Earliest):
            begin: int | None = first
        elif isinstance(start, AtOffsets):
            begin = start.every if start.every is not None else start.per_partition.get(p)
            if begin is not None and begin < first:
                gap = (
                    f"--from offset {begin} of {topic}[{p}] is below its retained data, "
                    f"which starts at offset {first}"
                )
                if not allow_gap:
                    raise ReplayRangeError(gap + GAP_HINT, topic=topic, partition=p)
                gaps.append(gap)
                begin = first
        else:
            hint = (offsets_at_start or {}).get(p)
            time_gap = _time_gap(topic, p, start, first, first_times or {}, now_ms, retention_ms)
            if time_gap is not None:
                if not allow_gap:
                    raise ReplayRangeError(time_gap + GAP_HINT, topic=topic, partition=p)
                gaps.append(time_gap)
            begin = None if hint is None else max(hint, first)
        if begin is None:
            continue  # not named, or no record at or after --from
        end: int | None = None
        if isinstance(stop, AtOffsets):
            end = stop.every if stop.every is not None else stop.per_partition.get(p)
        exact_start = not isinstance(start, AtTime)
        if end is not None and exact_start and begin > end:
            raise ReplayRangeError(
                f"--from (offset {begin}) is after --to (offset {end}) on {topic}[{p}]",
                topic=topic,
                partition=p,
            )
        plans.append(
            PartitionPlan(
                p,
                begin,
                end,
                since_ms=start.ms if isinstance(start, AtTime) else None,
                until_ms=None if end is not None else until,
            )
        )
    if isinstance(stop, AtOffsets) and stop.per_partition:
        planned = {pp.partition for pp in plans}
        extra = sorted(set(stop.per_partition) - planned)
        if extra and isinstance(start, AtOffsets) and start.per_partition:
            raise ReplayRangeError(
                f"--to names partition {extra[0]}, which --from does not replay",
                topic=topic,
                partition=extra[0],
            )
    return ReplayPlan(topic, tuple(plans), tuple(gaps))


def _time_gap(
    topic: str,
    p: int,
    start: AtTime,
    low: int,
    first_times: Mapping[int, int | None],
    now_ms: int,
    retention_ms: int,
) -> str | None:
    """Why ``start`` lies before the retained data of partition ``p``, or None."""
    if low <= 0:
        return None  # nothing was ever deleted from this partition
    first = first_times.get(p)
    if first is not None:
        if first <= start.ms:
            return None
        return (
            f"--from {start.text} is before the retained data of {topic}[{p}], which "
            f"starts at offset {low} written {format_ms(first)}"
        )
    if retention_ms >= 0 and start.ms >= now_ms - retention_ms:
        return None  # every deleted record was older than the retention period
    return (
        f"--from {start.text} may be before the retained data of {topic}[{p}]: it holds no "
        f"records any more (offsets below {low} were deleted)"
    )


Verdict = Literal["skip", "take", "end"]


class PartitionGate:
    """Applies one partition's time bounds to the records read, in offset order."""

    __slots__ = ("_plan", "_started", "ended")

    def __init__(self, plan: PartitionPlan) -> None:
        self._plan = plan
        self._started = plan.since_ms is None
        self.ended = False

    def admit(self, offset: int, timestamp_ms: int | None) -> Verdict:
        """``take`` a record in range, ``skip`` one before ``--from``, ``end`` at the end."""
        plan = self._plan
        if self.ended:
            return "end"
        if plan.stop is not None and offset >= plan.stop:
            self.ended = True
            return "end"
        if timestamp_ms is not None:
            if plan.until_ms is not None and timestamp_ms >= plan.until_ms:
                self.ended = True
                return "end"
            if not self._started:
                if plan.since_ms is not None and timestamp_ms < plan.since_ms:
                    return "skip"
                self._started = True
        if plan.stop is not None and offset + 1 >= plan.stop:
            self.ended = True  # the last record of the range: taken, and the partition is done
        return "take"


def live_table_warning(
    plan: ReplayPlan,
    committed: Mapping[int, int],
    *,
    table: str,
    group: str,
    id_fields: Sequence[str],
    window: int = DEDUP_WINDOW,
) -> str | None:
    """The warning for a replay into a resource's live table, or None.

    It fires when some partition's range starts below the live group's
    committed offset (rows the live sink already wrote) or reaches past it
    (rows the live sink has yet to write, perhaps at the same time).
    """
    overlap = {}
    ahead = []
    for pp in plan.partitions:
        done = committed.get(pp.partition, 0)
        if pp.start < done:
            overlap[pp.partition] = (min(pp.stop, done) if pp.stop is not None else done) - pp.start
        if pp.stop is None or pp.stop > done:
            ahead.append(pp.partition)
    if not overlap and not ahead:
        return None
    keys = ", ".join(id_fields)
    lines = [f"replaying into the live table {table}:"]
    if overlap:
        where = ", ".join(f"[{p}] {n}" for p, n in sorted(overlap.items()))
        lines.append(
            f"  up to {sum(overlap.values())} records of the range were already written and "
            f"committed by the live sink (group {group}; records per partition: {where})."
        )
    if ahead:
        lines.append(
            f"  partitions {', '.join(map(str, ahead))} reach past the live group's committed "
            "offsets: a running sink may write those records too."
        )
    lines += [
        f"  ClickHouse's insert-token deduplication (the table remembers its last {window} "
        "inserts) does not protect these rows: the replay cuts its inserts differently from the "
        "sink, so no token matches.",
        f"  What protects them: the replay inserts only rows whose natural key ({keys}) the table "
        "does not hold yet, and ReplacingMergeTree keeps one row per natural key when it merges.",
        "  Residual risk: a live sink writing the same keys at the same moment can leave a "
        "physical duplicate until ClickHouse merges; SELECT ... FINAL reads one row per key.",
    ]
    return "\n".join(lines)


@dataclass(slots=True)
class PartitionCounts:
    """What a replay did on one partition."""

    partition: int
    start: int
    stop: int | None
    first: int | None = None
    last: int | None = None
    read: int = 0
    """Records of the range handed to the replay (decoded or corrupt)."""
    written: int = 0
    deduplicated: int = 0
    """Rows whose natural key the table already held, or held twice in the range."""
    corrupt: int = 0
    skipped: int = 0
    """Records read before ``--from`` (a coarse time index on the broker), not counted as read."""

    def saw(self, offset: int) -> None:
        if self.first is None:
            self.first = offset
        self.last = offset
        self.read += 1


@dataclass(slots=True)
class ReplayReport:
    source: str
    resource: str
    topic: str
    table: str
    live: bool
    dry_run: bool
    partitions: list[PartitionCounts]
    warnings: list[str] = field(default_factory=list)

    def total(self, name: str) -> int:
        return sum(int(getattr(p, name)) for p in self.partitions)

    def as_json(self) -> dict[str, Any]:
        """The report as ``ingest replay --json`` prints it (written/deduplicated are
        None in a dry run: nothing was compared with the table)."""
        counts = ("read", "written", "deduplicated", "corrupt", "skipped")

        def numbers(source: Any) -> dict[str, int | None]:
            return {
                n: None if self.dry_run and n in ("written", "deduplicated") else source(n)
                for n in counts
            }

        return {
            "source": self.source,
            "resource": self.resource,
            "topic": self.topic,
            "table": self.table,
            "live_table": self.live,
            "dry_run": self.dry_run,
            "partitions": [
                {
                    "partition": p.partition,
                    "start": p.start,
                    "stop": p.stop,
                    "first_read": p.first,
                    "last_read": p.last,
                    **numbers(lambda n, p=p: getattr(p, n)),
                }
                for p in self.partitions
            ],
            "totals": numbers(self.total),
            "warnings": list(self.warnings),
        }
