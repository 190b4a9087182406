"""Dead letters: reading them with their reasons and state (``ingest dlq show``).

Re-driving them (``ingest dlq retry``) is :mod:`durable_ingest.operations.redrive`.

A resource's dead-letter topic ``<topic>.dlq`` holds two kinds of letters
(:mod:`staging.deadletters`), told apart by ``ingest_dlq_origin``:

* ``<topic>[<partition>]@<offset>``: a staged record a sink refused (or could
  not decode). The value is the staged Avro record, the headers its own.
  Re-driven by producing key, value and headers (less the ``ingest_dlq_*``
  and checkpoint headers) back to the staged topic, in the partition it came
  from; the live sink writes it, and the event id and the table's natural key
  make a repeat harmless. A value no schema in the folder decodes is not
  re-driven (the sink would stop on it or refuse it again).
* ``source:<name>``: a provider frame a source could not parse or process.
  Re-driven through a fresh instance of the connector's resources (decode,
  ``parse``, ``process``) and staged with the resource's writer **without a
  checkpoint**: a re-drive never moves where the source resumes.

Progress is the group ``ingest.dlq.<source>``: its committed offset on the
dead-letter topic says every letter before it was handled, and is committed
only after everything the handling wrote was acknowledged (write, then
commit). A letter that still fails is handled too: it is dead-lettered again
at the end of the topic, with the new reason, ``ingest_dlq_requeued_from``
and ``ingest_dlq_attempts``, so it stays open without blocking the letters
after it. A crash before the commit repeats the chunk (at least once).
See docs/operations.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from durable_ingest.operations.status import DeadLetterCounts
from foundation.config import Settings
from staging.checkpoints import write_time_micros
from staging.deadletters import H_CODE, H_ORIGIN, H_REASON, H_TIME
from staging.kafka.scan import RawRecord, TopicScanner

H_REQUEUED_FROM = "ingest_dlq_requeued_from"
"""On a letter that failed again: ``<partition>:<offset>`` of the letter it replaces."""
H_ATTEMPTS = "ingest_dlq_attempts"
"""On a letter that failed again: how many re-drives it failed."""
_ORIGIN = re.compile(r"^(?P<topic>[A-Za-z0-9._-]+)\[(?P<partition>\d+)\]@(?P<offset>\d+)$")


def dlq_group(source: str) -> str:
    """The consumer group that records re-drive progress: ``ingest.dlq.<source>``."""
    return f"ingest.dlq.{source}"


@dataclass(frozen=True, slots=True)
class Letter:
    """One dead letter as read: its own headers apart from why and where from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    """The original headers, without any ``ingest_dlq_*`` one."""
    reason: str
    code: str
    origin: str
    time: str | None
    requeued_from: tuple[int, int] | None = None
    attempts: int = 0

    @property
    def kind(self) -> str:
        """``sink`` (a staged record refused), ``source`` (a frame) or ``unknown``."""
        if _ORIGIN.match(self.origin):
            return "sink"
        return "source" if self.origin.startswith("source:") else "unknown"

    @property
    def position(self) -> tuple[str, int, int] | None:
        """Where a sink-refused record was staged: (topic, partition, offset)."""
        found = _ORIGIN.match(self.origin)
        if found is None:
            return None
        return found["topic"], int(found["partition"]), int(found["offset"])

    @property
    def stage(self) -> str:
        """Where a source letter failed: ``frame``, ``control``, ``parse/process``, ``stage``."""
        return self.reason.split(":", 1)[0].strip()

    @property
    def time_us(self) -> int | None:
        try:
            return write_time_micros(self.time) if self.time else None
        except ValueError:
            return None


def parse_letter(record: RawRecord) -> Letter:
    """A dead-letter record into a :class:`Letter` (a foreign record gets empty fields)."""
    requeued = record.header(H_REQUEUED_FROM)
    where: tuple[int, int] | None = None
    if requeued and ":" in requeued:
        p, _, o = requeued.partition(":")
        if p.isdigit() and o.isdigit():
            where = (int(p), int(o))
    attempts = record.header(H_ATTEMPTS) or "0"
    return Letter(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers=tuple((k, v) for k, v in record.headers if not k.startswith("ingest_dlq_")),
        reason=record.header(H_REASON) or "",
        code=record.header(H_CODE) or "",
        origin=record.header(H_ORIGIN) or "",
        time=record.header(H_TIME),
        requeued_from=where,
        attempts=int(attempts) if attempts.isdigit() else 0,
    )


def read_records(
    settings: Settings,
    topic: str,
    start: Mapping[int, int] | None = None,
    stop: Mapping[int, int] | None = None,
    *,
    idle_s: float,
) -> list[RawRecord]:
    """Every record of a scan, each scan with a scanner of its own (a TopicScanner
    leaves the partitions a bounded scan stopped paused for its later scans)."""
    scanner = TopicScanner(settings.kafka)
    try:
        return [r for chunk in scanner.scan(topic, start, stop, idle_s=idle_s) for r in chunk]
    finally:
        scanner.close()


def load_letters(settings: Settings, topic: str, *, idle_s: float) -> list[Letter]:
    """Every dead letter of ``topic`` (raises TopicError when it does not exist)."""
    records = read_records(settings, topic, idle_s=idle_s)
    return sorted((parse_letter(r) for r in records), key=lambda x: (x.partition, x.offset))


def is_open(letter: Letter, committed: Mapping[int, int]) -> bool:
    return letter.offset >= committed.get(letter.partition, 0)


def states(letters: Sequence[Letter], committed: Mapping[int, int]) -> list[tuple[str, int | None]]:
    """Per letter: ``open``, ``re-driven`` or ``requeued`` (failed again; with its new offset)."""
    again = {x.requeued_from: x.offset for x in letters if x.requeued_from is not None}
    result: list[tuple[str, int | None]] = []
    for x in letters:
        if is_open(x, committed):
            result.append(("open", None))
        elif (x.partition, x.offset) in again:
            result.append(("requeued", again[(x.partition, x.offset)]))
        else:
            result.append(("re-driven", None))
    return result


def counts(topic: str, letters: Sequence[Letter], committed: Mapping[int, int]) -> DeadLetterCounts:
    """Totals for ``ingest status``: all, open, and the newest reason."""
    newest = max(letters, key=lambda x: x.time or "", default=None)
    return DeadLetterCounts(
        topic=topic,
        total=len(letters),
        open=sum(1 for x in letters if is_open(x, committed)),
        newest_reason=newest.reason if newest is not None else None,
        newest_time=newest.time if newest is not None else None,
    )
