"""Reading topics outside any consumer group: replay, status and dead-letter tools.

A :class:`TopicScanner` assigns partitions at chosen offsets and reads them
without joining a group or committing anything, so it never disturbs a live
sink's consumer group. It also answers the questions operators ask of a topic:
its partitions, the offsets at a time (``offsets_for_times``), a group's
committed offsets and the watermarks.

The end of a scan is either given (``stop`` offsets, exclusive) or the point
where nothing more arrives for ``idle_s``. Watermarks are not used to find the
end: the embedded broker (Tansu) reports wrong high watermarks (see
docs/operations.md), while offsets read are always right.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from foundation.config import KafkaSettings
from foundation.errors import BrokerUnavailableError, UnknownTopicError
from staging.kafka.client_config import common_config
from staging.kafka.translate import (
    UNKNOWN_TOPIC,
    broker_call,
    client_settings,
    consume_error,
    describe,
    fatal_error,
    kafka_error_of,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record as the broker holds it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp_ms: int | None

    def header(self, name: str) -> str | None:
        for key, raw in self.headers:
            if key == name and raw is not None:
                return raw.decode("utf-8", "replace")
        return None


def _config(kafka: KafkaSettings, group_id: str) -> dict[str, Any]:
    config = common_config(kafka)
    config.update(
        {
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": 100,
            "fetch.queue.backoff.ms": 20,
        }
    )
    return config


_COORDINATOR_MOVING = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
}


class TopicScanner:
    """Group-less reads and offset lookups on one Kafka cluster; ``close()`` it."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._kafka = kafka
        self.ended_by = ""
        """How the last scan ended: ``stop`` (every partition reached its stop offset),
        ``idle`` (nothing new for ``idle_s``) or ``empty`` (nothing to read)."""
        # A group id librdkafka requires, never joined and never committed.
        with client_settings("consumer"):
            self._consumer = Consumer(_config(kafka, f"ingest.scan.{uuid.uuid4().hex[:12]}"))

    @property
    def _timeout(self) -> float:
        return self._kafka.connect_timeout_s

    def partitions(self, topic: str) -> list[int]:
        """The topic's partition numbers; UnknownTopicError if it does not exist.

        A broker that knows the topic but answers with a passing error (a leader not
        elected yet, a broker still loading) is asked again until the timeout, then
        reported as unavailable: "does not exist" would send an operator the wrong way.
        """
        deadline = time.monotonic() + self._timeout
        while True:
            with broker_call(f"reading metadata of {topic}", self._kafka.bootstrap, topic=topic):
                metadata = self._consumer.list_topics(topic, timeout=self._timeout)
            found = metadata.topics.get(topic)
            error = None if found is None else found.error
            if found is None or (error is not None and error.code() in UNKNOWN_TOPIC):
                raise UnknownTopicError(f"topic {topic} does not exist", topic=topic)
            if error is None and found.partitions:
                return sorted(found.partitions)
            if time.monotonic() >= deadline:
                why = describe(error) if error is not None else "no partitions in its metadata"
                raise BrokerUnavailableError(
                    f"topic {topic}: {why} (for {self._timeout:g} s)",
                    bootstrap=self._kafka.bootstrap,
                )
            time.sleep(0.1)

    def offsets_at(self, topic: str, time_ms: int) -> dict[int, int | None]:
        """Per partition, the first offset whose record time is at or after ``time_ms``
        (``None``: no such record yet)."""
        query = [TopicPartition(topic, p, time_ms) for p in self.partitions(topic)]
        with broker_call(f"looking up offsets of {topic} by time", self._kafka.bootstrap):
            found = self._consumer.offsets_for_times(query, timeout=self._timeout)
        return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in found}

    def watermarks(self, topic: str) -> dict[int, tuple[int, int]]:
        """Per partition, the broker's (low, high) watermarks. High is wrong on Tansu."""
        result = {}
        for p in self.partitions(topic):
            with broker_call(f"reading watermarks of {topic}", self._kafka.bootstrap):
                low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=self._timeout
                )
            result[p] = (int(low), int(high))
        return result

    def committed(self, group: str, topic: str) -> dict[int, int]:
        """The group's committed offsets on ``topic`` (partitions without one are absent)."""
        tps = [TopicPartition(topic, p) for p in self.partitions(topic)]
        with client_settings("consumer"):
            reader = Consumer(_config(self._kafka, group))
        deadline = time.monotonic() + self._timeout
        try:
            with broker_call(f"reading committed offsets of group {group}", self._kafka.bootstrap):
                while True:
                    try:
                        found = reader.committed(tps, timeout=self._timeout)
                        break
                    except KafkaException as exc:
                        # A broker loading its groups, or that has just handed them on, says
                        # so for a moment: ask again within the timeout.
                        error = kafka_error_of(exc)
                        moving = error is not None and error.code() in _COORDINATOR_MOVING
                        if not moving or time.monotonic() >= deadline:
                            raise
                        time.sleep(0.2)
        finally:
            reader.close()
        return {tp.partition: tp.offset for tp in found if tp.offset >= 0}

    def scan(
        self,
        topic: str,
        start: Mapping[int, int] | None = None,
        stop: Mapping[int, int] | None = None,
        *,
        idle_s: float = 2.0,
        chunk: int = 1_000,
        headers: bool = True,
    ) -> Iterator[list[RawRecord]]:
        """Chunks of records of ``topic`` from ``start`` (default: the beginning) up to
        ``stop`` (exclusive, per partition; default: until ``idle_s`` passes with nothing new).
        With ``headers=False`` records come without their headers, which cost more to
        fetch than the rest of a record (a replay does not need them).

        Partitions missing from ``start`` are read from the beginning; a partition
        whose ``stop`` is at or before its start is not read.
        """
        partitions = self.partitions(topic)
        begin = {p: (start or {}).get(p, OFFSET_BEGINNING) for p in partitions}
        open_ = {
            p for p in partitions if stop is None or (p in stop and stop[p] > max(begin[p], 0))
        }
        if not open_:
            self.ended_by = "empty"
            return
        self.ended_by = "stop"
        self._consumer.assign([TopicPartition(topic, p, begin[p]) for p in sorted(open_)])
        try:
            last_seen = time.monotonic()
            while open_:
                try:
                    messages = self._consumer.consume(chunk, 0.2)
                except KafkaException as exc:
                    raise consume_error(exc, self._kafka.bootstrap) from None
                out: list[RawRecord] = []
                for m in messages:
                    error = m.error()
                    if error is not None:
                        self._on_error(error, topic)
                        continue
                    p, offset = m.partition() or 0, m.offset() or 0
                    if p not in open_:
                        continue
                    if stop is not None and offset >= stop[p]:
                        open_.discard(p)
                        self._consumer.pause([TopicPartition(topic, p)])
                        continue
                    ts_type, ts = m.timestamp()
                    out.append(
                        RawRecord(
                            topic,
                            p,
                            offset,
                            m.key(),
                            m.value(),
                            tuple(m.headers() or ()) if headers else (),  # type: ignore[arg-type]  # Kafka headers are a list of pairs
                            ts if ts_type else None,
                        )
                    )
                    if stop is not None and offset + 1 >= stop[p]:
                        open_.discard(p)
                        self._consumer.pause([TopicPartition(topic, p)])
                if out:
                    last_seen = time.monotonic()
                    yield out
                elif time.monotonic() - last_seen >= idle_s:
                    self.ended_by = "idle"
                    if stop is not None:
                        log.info(
                            "scan of %s: nothing more after %.1fs; partitions %s end early",
                            topic,
                            idle_s,
                            sorted(open_),
                        )
                    return
        finally:
            # librdkafka keeps a partition paused across assignments: resume what a
            # bounded scan paused, or a later scan of it would read nothing.
            self._consumer.resume([TopicPartition(topic, p) for p in partitions])
            self._consumer.unassign()

    def _on_error(self, error: KafkaError, topic: str) -> None:
        if error.fatal():
            raise fatal_error(error)
        if error.code() == KafkaError._PARTITION_EOF:
            return
        if error.code() in UNKNOWN_TOPIC:
            # The scan began on a topic the metadata showed; a fetch that says otherwise is
            # either a deleted topic or a broker behind on metadata: ask the metadata again.
            self.partitions(topic)
        log.warning("scan of %s: %s", topic, describe(error))

    def close(self) -> None:
        try:
            self._consumer.close()
        except KafkaException as exc:
            log.warning("closing scanner: %s", exc)
