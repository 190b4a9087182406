"""What a resource has received and not yet staged, and when to stage it.

Each resource has one :class:`ResourceBuffer`: its records in arrival order,
the raw frame each came from (for a dead letter, should the record be
refused), the newest checkpoint ``process`` returned, and the arrival time of
the oldest waiting record. :meth:`ResourceBuffer.due` says when to flush:
``batch_records`` records waiting, or the oldest waiting ``linger_s``. Time is
passed in. Pure code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from foundation.errors import SourceDefinitionError
from source_workers.authoring import Record
from staging.envelope import Checkpoint

LazyCheckpoint = Checkpoint | Callable[[], Checkpoint]


@dataclass(slots=True)
class Pending:
    """A batch taken out of a buffer: records, their frames, and the checkpoint they carry."""

    records: list[Record]
    frames: list[bytes | str]
    checkpoint: Checkpoint | None

    def without(self, index: int) -> Pending:
        """The same batch less one refused record."""
        return Pending(
            self.records[:index] + self.records[index + 1 :],
            self.frames[:index] + self.frames[index + 1 :],
            self.checkpoint,
        )


@dataclass(slots=True)
class ResourceBuffer:
    batch_records: int
    linger_s: float
    records: list[Record] = field(default_factory=list)
    frames: list[bytes | str] = field(default_factory=list)
    checkpoint: LazyCheckpoint | None = None
    """The newest checkpoint from process() (or the function that gives it); it
    waits for records to travel with."""
    oldest_at: float | None = None

    def add(
        self,
        records: Sequence[Record],
        frame: bytes | str,
        checkpoint: LazyCheckpoint | None,
        now: float,
    ) -> None:
        if records:
            if not self.records:
                self.oldest_at = now
            self.records.extend(records)
            self.frames.extend([frame] * len(records))
        if checkpoint is not None:
            self.checkpoint = checkpoint

    def __len__(self) -> int:
        return len(self.records)

    def due(self, now: float) -> bool:
        """Full, or the oldest record has waited long enough."""
        if not self.records:
            return False
        if len(self.records) >= self.batch_records:
            return True
        return self.oldest_at is not None and now - self.oldest_at >= self.linger_s

    def put_back(self, pending: Pending) -> None:
        """A batch that could not be staged goes back in front of what came since."""
        self.records[:0] = pending.records
        self.frames[:0] = pending.frames
        if self.checkpoint is None:
            self.checkpoint = pending.checkpoint

    def take(self) -> Pending:
        """Everything waiting, as one batch; the checkpoint goes with it.

        A checkpoint with no records waiting stays (it cannot travel alone). A
        checkpoint function is called now: every record it describes is in the batch.
        """
        if not self.records:
            return Pending([], [], None)
        checkpoint = self.checkpoint
        if checkpoint is not None and not isinstance(checkpoint, Mapping):
            checkpoint = checkpoint()
            if not isinstance(checkpoint, Mapping):
                raise SourceDefinitionError(
                    f"a checkpoint function returned {checkpoint!r}, not a mapping", source=""
                )
        pending = Pending(self.records, self.frames, checkpoint)
        self.records, self.frames, self.checkpoint, self.oldest_at = [], [], None, None
        return pending
