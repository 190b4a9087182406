"""Dead letters: read them with their reasons (``ingest dlq show``) and re-drive them (``retry``).

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
import time
import zlib
from collections.abc import Mapping, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from typing import Any

from durable_ingest.compose import staging_provider
from durable_ingest.config import Settings
from durable_ingest.errors import CorruptRecordError
from durable_ingest.status import DeadLetterCounts
from source_workers.authoring import Source, normalize
from source_workers.frames import FrameLimits, decode_frame
from staging.checkpoints import write_time_micros
from staging.deadletters import H_CODE, H_ORIGIN, H_REASON, H_TIME, DeadLetter
from staging.decoder import EnvelopeDecoder, FixedHeaders
from staging.envelope import (
    H_CHECKPOINT,
    H_CHECKPOINT_PARTITIONS,
    H_CHECKPOINT_PREV,
    H_CHECKPOINT_SEQ,
    EnvelopeEncoder,
)
from staging.kafka.redrive import OutgoingRecord, RecordCopier, commit_offsets
from staging.kafka.scan import RawRecord, TopicScanner
from staging.protocol import StagingContext
from staging.resource import StagedResource
from staging.schemas import SchemaCatalog

H_REQUEUED_FROM = "ingest_dlq_requeued_from"
"""On a letter that failed again: ``<partition>:<offset>`` of the letter it replaces."""
H_ATTEMPTS = "ingest_dlq_attempts"
"""On a letter that failed again: how many re-drives it failed."""
H_REDRIVEN_FROM = "ingest_redriven_from"
"""On a re-driven staged record: the dead letter it came from, ``<dlq topic>[<p>]@<o>``."""
_DROPPED_ON_REDRIVE = (H_CHECKPOINT, H_CHECKPOINT_PARTITIONS, H_CHECKPOINT_SEQ, H_CHECKPOINT_PREV)
_ORIGIN = re.compile(r"^(?P<topic>[A-Za-z0-9._-]+)\[(?P<partition>\d+)\]@(?P<offset>\d+)$")
_EVERY_RESOURCE = ("frame", "control")
"""Stages of a source letter that failed before any resource saw the frame."""


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


# --- retry --------------------------------------------------------------------


@dataclass(slots=True)
class RetryReport:
    redriven: int = 0
    """Letters handled for good: re-produced, staged again, or now consumed with nothing to stage."""
    records_copied: int = 0
    rows_staged: int = 0
    still_failing: int = 0
    skipped: int = 0
    """Letters before the group's offset: handled by an earlier retry."""
    failures: list[tuple[int, str]] = field(default_factory=list)
    """(offset, why) of each letter that still fails."""
    dry_run: bool = False


class FrameRedrive:
    """Source frames through a fresh instance of the connector's resources."""

    def __init__(self, source: Source, limits: FrameLimits) -> None:
        self.source = source
        self.limits = limits

    def rows(self, letter: Letter, resource: str) -> dict[str, list[Mapping[str, Any]]]:
        """Rows per resource the frame gives now; raises why it still cannot.

        A frame that failed before any resource saw it goes to the protocol
        handler and every resource, as a new frame would; otherwise only to
        the resource whose parse or process refused it (the others took it then).
        """
        source = self.source
        value = decode_frame(source.name, letter.value or b"", self.limits)
        everyone = letter.stage in _EVERY_RESOURCE
        if everyone and source.control is not None and source.control(value):
            return {}  # a protocol message, consumed: nothing to stage
        targets = source.resources if everyone else (source.resource(resource),)
        received_us = letter.time_us or time.time_ns() // 1_000
        out: dict[str, list[Mapping[str, Any]]] = {}
        claimed = False
        for target in targets:
            payload = target.parse(value)
            if payload is None:
                continue
            claimed = True
            records, _checkpoint = normalize(
                source.name, target.name, target.process(payload, received_us)
            )
            if records:
                out[target.name] = list(records)
        if not claimed:
            raise ValueError(f"no resource of source {source.name} recognises the frame")
        return out


@dataclass(slots=True)
class _Plan:
    copies: list[OutgoingRecord] = field(default_factory=list)
    rows: list[tuple[str, list[Mapping[str, Any]]]] = field(default_factory=list)
    again: list[DeadLetter] = field(default_factory=list)


class Redriver:
    """Re-drives one resource's open dead letters, chunk by chunk, write then commit."""

    def __init__(
        self,
        settings: Settings,
        resource: StagedResource,
        resources: Sequence[StagedResource],
        *,
        catalog: SchemaCatalog,
        frames: FrameRedrive | None,
        dry_run: bool = False,
        chunk: int = 500,
    ) -> None:
        self.settings = settings
        self.resource = resource
        self.resources = {r.name: r for r in resources}
        catalog.load_all()  # records staged with an older schema version still decode
        self.catalog = catalog
        self.decoder = EnvelopeDecoder(catalog)
        self.frames = frames
        self.dry_run = dry_run
        self.chunk = chunk
        self.group = dlq_group(resource.source)

    def run(
        self, letters: Sequence[Letter], committed: Mapping[int, int], partitions: int
    ) -> RetryReport:
        """Handle the open ``letters``; ``partitions``: the staged topic's partition count."""
        report = RetryReport(dry_run=self.dry_run)
        pending = [x for x in letters if is_open(x, committed)]
        report.skipped = len(letters) - len(pending)
        if not pending:
            return report
        with ExitStack() as stack:
            copier = session = None
            if not self.dry_run:
                copier = stack.enter_context(
                    closing(
                        RecordCopier(
                            self.settings.kafka,
                            max_record_bytes=self.settings.staging.max_record_bytes,
                        )
                    )
                )
                provider = staging_provider(self.settings, self.catalog)
                context = StagingContext(
                    source=self.resource.source, resources=tuple(self.resources.values())
                )
                session = stack.enter_context(provider.allocate_session(context))
            for begin in range(0, len(pending), self.chunk):
                part = pending[begin : begin + self.chunk]
                plan = _Plan()
                for letter in part:
                    self._plan(letter, partitions, plan, report)
                if copier is None or session is None:
                    continue
                copier.send(plan.copies)
                for name, rows in plan.rows:
                    session.writer(name).write_batch(rows)  # no checkpoint: it must not move
                session.dead_letters().send(plan.again)
                ends: dict[int, int] = {}
                for letter in part:
                    ends[letter.partition] = max(ends.get(letter.partition, 0), letter.offset + 1)
                commit_offsets(self.settings.kafka, self.group, self.resource.dlq.name, ends)
        return report

    def _plan(self, letter: Letter, partitions: int, plan: _Plan, report: RetryReport) -> None:
        try:
            if letter.kind == "sink":
                plan.copies.append(self._copy(letter, partitions))
                report.records_copied += 1
            elif letter.kind == "source":
                staged = self._frame_rows(letter)
                plan.rows.extend(staged)
                report.rows_staged += sum(len(rows) for _, rows in staged)
            else:
                raise ValueError(
                    f"origin {letter.origin!r} is neither <topic>[<partition>]@<offset> "
                    "nor source:<name>"
                )
        except Exception as exc:  # noqa: BLE001 - still failing: whatever the cause, it stays dead
            why = f"{type(exc).__name__}: {exc}"
            report.still_failing += 1
            report.failures.append((letter.offset, why))
            plan.again.append(
                DeadLetter(
                    resource=self.resource.name,
                    key=letter.key,
                    value=letter.value,
                    headers=(
                        *letter.headers,
                        (H_REQUEUED_FROM, f"{letter.partition}:{letter.offset}".encode()),
                        (H_ATTEMPTS, str(letter.attempts + 1).encode()),
                    ),
                    # A source letter keeps its stage first: it says where a frame goes.
                    reason=(f"{letter.stage}: " if letter.kind == "source" else "")
                    + f"retry {letter.attempts + 1}: {why}",
                    code=type(exc).__name__,
                    origin=letter.origin,
                )
            )
            return
        report.redriven += 1

    def _copy(self, letter: Letter, partitions: int) -> OutgoingRecord:
        position = letter.position
        assert position is not None  # a sink letter
        topic, partition, offset = position
        if letter.value is None:
            raise ValueError("the dead letter has no value")
        try:
            self.decoder.decode(
                topic, partition, offset, letter.key, letter.value, FixedHeaders(letter.headers)
            )
        except CorruptRecordError as exc:
            raise ValueError(f"the value still cannot be decoded: {exc.reason}") from None
        if partition >= partitions:
            partition = zlib.crc32(letter.key or b"") % partitions
        headers = tuple(
            (k, v)
            for k, v in letter.headers
            if k not in _DROPPED_ON_REDRIVE and k != H_REDRIVEN_FROM
        )
        here = f"{letter.topic}[{letter.partition}]@{letter.offset}".encode()
        return OutgoingRecord(
            self.resource.topic.name,
            partition,
            letter.key,
            letter.value,
            (*headers, (H_REDRIVEN_FROM, here)),
        )

    def _frame_rows(self, letter: Letter) -> list[tuple[str, list[Mapping[str, Any]]]]:
        if self.frames is None:
            raise ValueError(f"source {self.resource.source} has no connector to re-run")
        staged = list(self.frames.rows(letter, self.resource.name).items())
        for name, rows in staged:
            target = self.resources.get(name)
            if target is None:
                raise ValueError(f"resource {name} of the frame is not configured")
            # What write_batch would refuse, refused before anything is written.
            EnvelopeEncoder(
                target, max_record_bytes=self.settings.staging.max_record_bytes
            ).encode_batch(rows, ingest_time_us=time.time_ns() // 1_000)
        return staged
