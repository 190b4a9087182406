"""An in-memory log with topics, partitions and consumer groups (thread-safe)."""

from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass

from foundation.errors import TopicError
from staging.offsets import Partition
from staging.resource import TopicSpec


@dataclass(frozen=True, slots=True)
class StoredRecord:
    key: bytes | None
    value: bytes | None
    header_list: tuple[tuple[str, bytes], ...]

    def headers(self) -> tuple[tuple[str, bytes], ...]:
        """Like a Kafka message: the headers, on demand."""
        return self.header_list


class MemoryBroker:
    """Topics of partitioned logs, committed offsets and group membership."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logs: dict[str, list[list[StoredRecord]]] = {}
        self._committed: dict[tuple[str, Partition], int] = {}
        # group -> member id -> subscribed topics, in join order
        self._members: dict[str, dict[str, tuple[str, ...]]] = {}
        self._generation: dict[str, int] = {}
        self._next_member = 0

    # -- topics ------------------------------------------------------------

    def create_topic(self, spec: TopicSpec) -> bool:
        """Create ``spec`` unless it exists; True if created."""
        with self._lock:
            if spec.name in self._logs:
                return False
            self._logs[spec.name] = [[] for _ in range(spec.partitions)]
            return True

    def topics(self) -> dict[str, int]:
        with self._lock:
            return {name: len(parts) for name, parts in self._logs.items()}

    def append(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: tuple[tuple[str, bytes], ...],
        partition: int | None = None,
    ) -> tuple[int, int]:
        """Append one record; returns (partition, offset). Keys pick partitions stably."""
        with self._lock:
            partitions = self._logs.get(topic)
            if partitions is None:
                raise TopicError(f"topic {topic} does not exist", topic=topic)
            if partition is not None:
                index = partition
            else:
                index = zlib.crc32(key) % len(partitions) if key is not None else 0
            partitions[index].append(StoredRecord(key, value, headers))
            return index, len(partitions[index]) - 1

    def fetch(self, part: Partition, offset: int, limit: int) -> list[StoredRecord]:
        with self._lock:
            log = self._logs[part.topic][part.partition]
            return log[offset : offset + limit]

    def end_offset(self, part: Partition) -> int:
        with self._lock:
            return len(self._logs[part.topic][part.partition])

    # -- groups ------------------------------------------------------------

    def join(self, group: str, topics: tuple[str, ...]) -> str:
        with self._lock:
            for topic in topics:
                if topic not in self._logs:
                    raise TopicError(f"topic {topic} does not exist", topic=topic)
            self._next_member += 1
            member = f"member-{self._next_member}"
            self._members.setdefault(group, {})[member] = topics
            self._generation[group] = self._generation.get(group, 0) + 1
            return member

    def leave(self, group: str, member: str) -> None:
        with self._lock:
            if self._members.get(group, {}).pop(member, None) is not None:
                self._generation[group] = self._generation.get(group, 0) + 1

    def assignment(self, group: str, member: str) -> tuple[int, frozenset[Partition]]:
        """(generation, partitions of ``member``): partitions dealt round-robin by join order."""
        with self._lock:
            members = self._members.get(group, {})
            if member not in members:
                return self._generation.get(group, 0), frozenset()
            topics = sorted({t for ts in members.values() for t in ts})
            every = [Partition(t, p) for t in topics for p in range(len(self._logs[t]))]
            order = list(members)
            mine = frozenset(
                part
                for i, part in enumerate(every)
                if order[i % len(order)] == member and part.topic in members[member]
            )
            return self._generation[group], mine

    def commit(self, group: str, member: str, offsets: dict[Partition, int]) -> bool:
        """Commit if ``member`` still owns every partition; False otherwise (like Kafka)."""
        _, owned = self.assignment(group, member)
        with self._lock:
            if not set(offsets) <= owned:
                return False
            for part, offset in offsets.items():
                self._committed[(group, part)] = offset
            return True

    def committed(self, group: str, part: Partition) -> int | None:
        with self._lock:
            return self._committed.get((group, part))
