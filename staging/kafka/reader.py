"""The Kafka RecordReader: a consumer-group member that commits only what it is told."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from foundation.clock import SYSTEM_CLOCK, Clock
from foundation.errors import (
    CommitFailedError,
    CorruptRecordError,
    KafkaFatalError,
    StagingClosedError,
    UnknownSchemaError,
)
from staging.decoder import EnvelopeDecoder, StagedRecord
from staging.kafka.stranded import BrokerWatch, warn_renewed
from staging.kafka.translate import (
    broker_call,
    client_settings,
    commit_error,
    consume_error,
    describe,
    fatal_error,
    kafka_error_of,
)
from staging.offsets import CommitLedger, Partition, ranges_of
from staging.protocol import OnCorrupt, StagedBatch

log = logging.getLogger(__name__)

# How long joining the group may take before an idle timeout starts counting anyway.
_JOIN_GRACE_S = 30.0


def _partitions(tps: Sequence[TopicPartition]) -> list[Partition]:
    return [Partition(tp.topic, tp.partition) for tp in tps]


def _close_quietly(consumer: Consumer) -> None:
    try:
        consumer.close()
    except (KafkaException, RuntimeError) as exc:
        log.info("closing a replaced consumer: %s", exc)


class KafkaRecordReader:
    """Reads staged batches from a consumer group; never auto-commits."""

    def __init__(
        self,
        config: dict[str, Any],
        topics: Sequence[str],
        decoder: EnvelopeDecoder,
        *,
        bootstrap: str,
        timeout_s: float,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._clock = clock
        self._config = config
        self._topics = list(topics)
        self._consumer = self._new_consumer()
        self.renewals = 0
        self._decoder = decoder
        self._bootstrap = bootstrap
        self._timeout_s = timeout_s
        self._ledger = CommitLedger()
        self._stopping = False
        self._closed = False
        self._joined = False  # set by the first assignment, even an empty one
        self._idle_from = 0.0
        self._subscribe()

    def _subscribe(self) -> None:
        self._consumer.subscribe(
            self._topics,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    def _new_consumer(self) -> Consumer:
        """A consumer from the reader's settings, watched for being stranded."""
        self.broker_watch = BrokerWatch()
        with client_settings("consumer"):
            return Consumer(self.broker_watch.watch(self._config))

    def _renew(self) -> None:
        """A new consumer in the group for one that knows no broker any more (see
        :mod:`staging.kafka.stranded`): its partitions count as lost, so nothing read
        through the old one is committed; their new owner, this reader or another, reads
        them again from the group's committed offsets."""
        warn_renewed("consumer", self._bootstrap, " and joins the group again")
        if self._ledger.assigned:
            self._release_lost(sorted(self._ledger.assigned))
        old = self._consumer
        # Closing leaves the group, which a consumer without brokers may wait on: not here.
        threading.Thread(target=_close_quietly, args=(old,), daemon=True).start()
        self._consumer = self._new_consumer()
        self._joined = False
        self._subscribe()
        self.renewals += 1

    # -- rebalance callbacks (run inside consume()) --------------------------

    # A consumer replaced by _renew() may still call these while it closes (on its own
    # thread): only the current consumer's assignments count.

    def _on_assign(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        if consumer is not self._consumer:
            return
        self._joined = True
        self._ledger.assign(_partitions(tps))
        log.info("assigned %s", ", ".join(str(p) for p in _partitions(tps)) or "nothing")

    def _on_revoke(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        if consumer is not self._consumer:
            return
        self._ledger.release(_partitions(tps))
        log.info("revoked %s", ", ".join(str(p) for p in _partitions(tps)) or "nothing")

    def _on_lost(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        if consumer is not self._consumer:
            return
        self._release_lost(_partitions(tps))

    def _release_lost(self, partitions: list[Partition]) -> None:
        self._ledger.release(partitions)
        log.warning(
            "lost %s: nothing will be committed for them", ", ".join(str(p) for p in partitions)
        )

    # -- reading ---------------------------------------------------------------

    def iter_batches(
        self,
        chunk_size: int,
        *,
        poll_timeout_s: float = 1.0,
        idle_timeout_s: float | None = None,
        on_corrupt: OnCorrupt = "raise",
        decode: bool = True,
        yield_empty: bool = False,
    ) -> Iterator[StagedBatch]:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, not {chunk_size}")
        self._check_open()
        recognise = self._decoder.decode if decode else self._decoder.frame
        idle_since = started = self._clock.monotonic()
        while not self._stopping:
            if self.broker_watch.stranded:
                self._renew()
                started = self._clock.monotonic()  # joining again: not idle yet
            try:
                messages = self._consumer.consume(chunk_size, poll_timeout_s)
            except KafkaException as exc:
                raise consume_error(exc, self._bootstrap) from None
            records: list[StagedRecord] = []
            corrupt: list[CorruptRecordError] = []
            firsts: dict[tuple[str, int], int] = {}
            lasts: dict[tuple[str, int], int] = {}
            # Offsets are tracked per run of one partition (a fetch returns runs),
            # touching the dicts only when the partition changes: this loop runs once
            # per record and is most of what a sink spends in Python.
            run_topic: str | None = None
            run_partition = run_last = -1
            append = records.append
            for message in messages:
                error = message.error()
                if error is not None:
                    self._on_message_error(error)
                    continue
                topic = message.topic() or ""
                partition = message.partition() or 0
                offset = message.offset() or 0
                if partition != run_partition or topic != run_topic:
                    if run_topic is not None:
                        lasts[run_topic, run_partition] = run_last
                    firsts.setdefault((topic, partition), offset)
                    run_topic, run_partition = topic, partition
                run_last = offset
                try:
                    # The message itself is the header source: headers are
                    # fetched only if someone asks (they cost more than the rest).
                    append(
                        recognise(topic, partition, offset, message.key(), message.value(), message)
                    )
                except CorruptRecordError as exc:
                    if on_corrupt == "raise":
                        self._rewind(messages)
                        raise
                    corrupt.append(exc)
                except UnknownSchemaError:
                    self._rewind(messages)
                    raise
            if run_topic is not None:
                lasts[run_topic, run_partition] = run_last
            if lasts:
                idle_since = self._clock.monotonic()
                yield StagedBatch(tuple(records), ranges_of(firsts, lasts), tuple(corrupt))
            elif not self._joined and self._clock.monotonic() - started < max(
                _JOIN_GRACE_S, idle_timeout_s or 0
            ):
                idle_since = self._clock.monotonic()  # still joining the group: not idle yet
            elif (
                idle_timeout_s is not None
                and self._clock.monotonic() - max(idle_since, self._idle_from) >= idle_timeout_s
            ):
                return
            if yield_empty and not lasts:
                yield StagedBatch((), ())

    def _on_message_error(self, error: KafkaError) -> None:
        if error.fatal():
            raise fatal_error(error)
        if error.code() == KafkaError._PARTITION_EOF:
            return
        log.warning("consumer: %s", describe(error))

    def _rewind(self, messages: list[Message]) -> None:
        """Seek every partition of this chunk back to its first offset in the chunk.

        Covers the whole chunk, not only what was handled before the failure:
        records of other partitions later in the chunk must not be skipped.
        """
        firsts: dict[tuple[str, int], int] = {}
        for message in messages:
            if message.error() is None:
                firsts.setdefault(
                    (message.topic() or "", message.partition() or 0), message.offset() or 0
                )
        for (topic, partition), offset in firsts.items():
            try:
                self._consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                if Partition(topic, partition) in self._ledger.assigned:
                    # Going on would skip records this member still owns.
                    raise KafkaFatalError(
                        f"cannot rewind {topic}[{partition}] to {offset}: {exc}", code="SEEK"
                    ) from None
                log.info("not rewinding %s[%d]: no longer assigned", topic, partition)

    # -- committing ------------------------------------------------------------

    def commit(self, batch: StagedBatch) -> dict[Partition, int]:
        self._check_open()
        plan = self._ledger.plan(batch.offsets)
        skipped = set(batch.commit_offsets) - set(plan)
        if skipped:
            log.info(
                "not committing %s: not owned, or already committed", sorted(map(str, skipped))
            )
        if not plan:
            return {}
        offsets = [TopicPartition(p.topic, p.partition, o) for p, o in plan.items()]
        try:
            results = self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            error = kafka_error_of(exc)
            if error is None:
                raise CommitFailedError(f"offsets were not committed: {exc}") from None
            raise commit_error(error) from None
        for tp in results or []:
            if tp.error is not None:
                raise commit_error(tp.error)
        self._ledger.record(plan)
        return plan

    def committed(self) -> dict[Partition, int]:
        self._check_open()
        assigned = sorted(self._ledger.assigned)
        if not assigned:
            return {}
        with broker_call("reading committed offsets", self._bootstrap):
            tps = self._consumer.committed(
                [TopicPartition(p.topic, p.partition) for p in assigned], timeout=self._timeout_s
            )
        return {Partition(tp.topic, tp.partition): tp.offset for tp in tps if tp.offset >= 0}

    def assignment(self) -> frozenset[Partition]:
        return self._ledger.assigned

    def ends(self) -> dict[Partition, int]:
        found = {}
        for part in self._ledger.assigned:
            # cached: the high watermark of the last fetch response, no broker request.
            _, high = self._consumer.get_watermark_offsets(
                TopicPartition(part.topic, part.partition), cached=True
            )
            if high is not None and high >= 0:
                found[part] = int(high)
        return found

    def wait(self, seconds: float) -> None:
        """Wait while staying in the group: pause every partition, keep polling.

        Polling keeps ``max.poll.interval.ms`` from expiring and serves
        rebalances; nothing is consumed. A record that still arrives (from a
        partition assigned meanwhile) is sought back so that it is read later.
        """
        self._check_open()
        deadline = self._clock.monotonic() + seconds
        paused = self._consumer.assignment()
        self._consumer.pause(paused)
        try:
            while (remaining := deadline - self._clock.monotonic()) > 0 and not self._stopping:
                try:
                    messages = self._consumer.consume(100, min(remaining, 0.2))
                except KafkaException as exc:
                    raise consume_error(exc, self._bootstrap) from None
                if messages:
                    self._rewind(messages)
                    self._consumer.pause(self._consumer.assignment())
        finally:
            self._consumer.resume(self._consumer.assignment())
            self._idle_from = self._clock.monotonic()  # a wait is not idleness

    def stop(self) -> None:
        self._stopping = True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stopping = True
        try:
            self._consumer.close()
        except KafkaException as exc:
            log.warning("closing consumer: %s", exc)
        self._ledger.release(self._ledger.assigned)

    def _check_open(self) -> None:
        if self._closed:
            raise StagingClosedError("reader is closed")
