"""Offset bookkeeping: which offsets a batch makes safe to commit.

Offsets travel with the data (as in Arroyo): a batch carries, per partition,
the first and last offset it read, and after a successful write exactly
``last + 1`` is committed for each, never "whatever was polled last".
:class:`CommitLedger` keeps a reader honest: it commits only partitions the
reader still owns and never moves an offset backwards. Pure code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class Partition:
    """One partition of one topic."""

    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]"


@dataclass(frozen=True, slots=True)
class OffsetRange:
    """The offsets of one partition that one batch covers, both ends included."""

    topic: str
    partition: int
    first: int
    last: int

    @property
    def key(self) -> Partition:
        return Partition(self.topic, self.partition)

    @property
    def next_offset(self) -> int:
        """The offset to commit once this range is written: ``last + 1``."""
        return self.last + 1

    def dedup_token(self) -> str:
        """Deterministic insert-deduplication token: the same range, the same token."""
        return f"{self.topic}:{self.partition}:{self.first}-{self.last}"


def offset_ranges(positions: Iterable[tuple[str, int, int]]) -> tuple[OffsetRange, ...]:
    """Collapse ``(topic, partition, offset)`` positions into one range per partition.

    Ranges come out in the order their partitions first appear. Offsets must
    increase within a partition; anything else is a bookkeeping bug and raises
    ``ValueError``.
    """
    firsts: dict[Partition, int] = {}
    lasts: dict[Partition, int] = {}
    for topic, partition, offset in positions:
        key = Partition(topic, partition)
        previous = lasts.get(key)
        if previous is None:
            firsts[key] = offset
        elif offset <= previous:
            raise ValueError(f"{key}: offset {offset} does not follow {previous}")
        lasts[key] = offset
    return tuple(OffsetRange(k.topic, k.partition, firsts[k], lasts[k]) for k in firsts)


def ranges_of(
    firsts: Mapping[tuple[str, int], int], lasts: Mapping[tuple[str, int], int]
) -> tuple[OffsetRange, ...]:
    """Ranges from first and last offsets kept per ``(topic, partition)`` by a read loop."""
    return tuple(OffsetRange(t, p, firsts[(t, p)], last) for (t, p), last in lasts.items())


def next_offsets(ranges: Iterable[OffsetRange]) -> dict[Partition, int]:
    """The next offset to commit per partition for these ranges (highest wins)."""
    result: dict[Partition, int] = {}
    for r in ranges:
        if r.next_offset > result.get(r.key, -1):
            result[r.key] = r.next_offset
    return result


class CommitLedger:
    """What a reader owns and has committed; plans commits that are safe to make."""

    def __init__(self) -> None:
        self._assigned: set[Partition] = set()
        self._committed: dict[Partition, int] = {}

    @property
    def assigned(self) -> frozenset[Partition]:
        return frozenset(self._assigned)

    @property
    def committed(self) -> Mapping[Partition, int]:
        return dict(self._committed)

    def assign(self, partitions: Iterable[Partition]) -> None:
        self._assigned.update(partitions)

    def release(self, partitions: Iterable[Partition]) -> None:
        """Partitions revoked or lost: nothing more may be committed for them."""
        for p in partitions:
            self._assigned.discard(p)

    def plan(self, ranges: Iterable[OffsetRange]) -> dict[Partition, int]:
        """Next offsets to commit: owned partitions only, and only forwards."""
        return {
            p: offset
            for p, offset in next_offsets(ranges).items()
            if p in self._assigned and offset > self._committed.get(p, -1)
        }

    def record(self, commits: Mapping[Partition, int]) -> None:
        """Remember offsets the broker confirmed."""
        for p, offset in commits.items():
            if offset > self._committed.get(p, -1):
                self._committed[p] = offset
