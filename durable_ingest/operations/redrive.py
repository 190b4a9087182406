"""Re-driving dead letters once their cause is fixed: ``ingest dlq retry``.

What a re-drive does with each kind of letter, and how progress is kept,
is in :mod:`durable_ingest.operations.dlq` and docs/operations.md.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Mapping, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from typing import Any

from durable_ingest.operations.dlq import H_ATTEMPTS, H_REQUEUED_FROM, Letter, dlq_group, is_open
from foundation.config import Settings
from foundation.errors import CorruptRecordError
from source_workers.authoring import Source, normalize
from source_workers.frames import FrameLimits, decode_frame
from staging.compose import staging_provider
from staging.deadletters import DeadLetter
from staging.decoder import EnvelopeDecoder, FixedHeaders
from staging.envelope import (
    H_CHECKPOINT,
    H_CHECKPOINT_INSTANCE,
    H_CHECKPOINT_PARTITIONS,
    H_CHECKPOINT_PREV,
    H_CHECKPOINT_SEQ,
    EnvelopeEncoder,
)
from staging.kafka.redrive import OutgoingRecord, RecordCopier, commit_offsets
from staging.protocol import StagingContext
from staging.resource import StagedResource
from staging.schemas import SchemaCatalog

H_REDRIVEN_FROM = "ingest_redriven_from"
"""On a re-driven staged record: the dead letter it came from, ``<dlq topic>[<p>]@<o>``."""
_DROPPED_ON_REDRIVE = (
    H_CHECKPOINT,
    H_CHECKPOINT_PARTITIONS,
    H_CHECKPOINT_SEQ,
    H_CHECKPOINT_PREV,
    H_CHECKPOINT_INSTANCE,
)
_EVERY_RESOURCE = ("frame", "control")
"""Stages of a source letter that failed before any resource saw the frame."""

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
