"""Dead letters: records that can never be written, kept with why and where from.

A dead letter is staged to the resource's ``.dlq`` topic with the original
key, value and headers (so it can be re-driven once fixed) plus headers that
say why and from where:

``ingest_dlq_reason``, ``ingest_dlq_code`` (an error class or server code),
``ingest_dlq_origin`` (``<topic>[<partition>]@<offset>``, or the source for
records refused before staging) and ``ingest_dlq_time``. Pure code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from foundation.clock import SYSTEM_CLOCK
from foundation.errors import CorruptRecordError
from staging.times import rfc3339

H_REASON = "ingest_dlq_reason"
H_CODE = "ingest_dlq_code"
H_ORIGIN = "ingest_dlq_origin"
H_TIME = "ingest_dlq_time"
_MAX_REASON = 2_000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record for a resource's dead-letter topic."""

    resource: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    reason: str
    code: str
    origin: str

    def kafka_headers(self, now_us: int | None = None) -> list[tuple[str, bytes | None]]:
        """The original headers, then the dead-letter ones."""
        now_us = SYSTEM_CLOCK.wall_us() if now_us is None else now_us
        return [
            *self.headers,
            (H_REASON, self.reason[:_MAX_REASON].encode()),
            (H_CODE, self.code.encode()),
            (H_ORIGIN, self.origin.encode()),
            (H_TIME, rfc3339(now_us).encode()),
        ]

    @classmethod
    def of_corrupt(cls, resource: str, error: CorruptRecordError) -> DeadLetter:
        return cls(
            resource,
            error.key,
            error.value,
            error.headers,
            error.reason,
            type(error).__name__,
            f"{error.topic}[{error.partition}]@{error.offset}",
        )


class DeadLetterWriter(Protocol):
    def send(self, letters: Sequence[DeadLetter]) -> None:
        """Stage every letter to its resource's dead-letter topic; returns once all are acknowledged."""
        ...
