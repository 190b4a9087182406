"""librdkafka errors into durable-ingest errors: the one place that does it.

Nothing outside :mod:`staging.kafka` sees a ``KafkaException`` or a
``KafkaError``; the adapter's modules call these helpers at every edge.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from confluent_kafka import KafkaError, KafkaException

from foundation.errors import (
    BrokerUnavailableError,
    CommitFailedError,
    ConfigError,
    DeliveryFailedError,
    DeliveryRejectedError,
    DeliveryUnknownError,
    IngestError,
    KafkaFatalError,
    TopicError,
    UnknownTopicError,
)

_TIMEOUTS = {KafkaError._MSG_TIMED_OUT, KafkaError._TIMED_OUT, KafkaError.REQUEST_TIMED_OUT}
_UNREACHABLE = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT}
UNKNOWN_TOPIC = {KafkaError._UNKNOWN_TOPIC, KafkaError.UNKNOWN_TOPIC_OR_PART}
"""The codes that mean a topic does not exist (the broker's, and librdkafka's own)."""


def describe(error: KafkaError) -> str:
    return f"{error.name()}: {error.str()}"


def kafka_error_of(exc: KafkaException) -> KafkaError | None:
    arg = exc.args[0] if exc.args else None
    return arg if isinstance(arg, KafkaError) else None


def delivery_error(topic: str, errors: Sequence[KafkaError], undelivered: int) -> IngestError:
    """One typed error for the failed deliveries of one batch.

    Timeouts alone mean "unknown": the records may have been written.
    """
    fatal = [e for e in errors if e.fatal() or e.code() == KafkaError._FATAL]
    if fatal:
        return KafkaFatalError(
            f"Kafka producer hit a fatal error on {topic}: {describe(fatal[0])}",
            code=fatal[0].name(),
        )
    timeouts = sum(1 for e in errors if e.code() in _TIMEOUTS)
    others = [e for e in errors if e.code() not in _TIMEOUTS]
    if not others:
        count = timeouts + undelivered
        return DeliveryUnknownError(
            f"{count} record(s) to {topic} were not confirmed in time; they may or may not "
            "be written: resend the same records (event ids are deterministic)",
            topic=topic,
            undelivered=count,
        )
    first = others[0]
    message = f"{len(others)} record(s) to {topic} were refused: {describe(first)}"
    if first.retriable() or first.code() in _UNREACHABLE:
        return DeliveryFailedError(message, topic=topic, code=first.name(), failed=len(others))
    return DeliveryRejectedError(message, topic=topic, code=first.name(), failed=len(others))


def fatal_error(error: KafkaError) -> KafkaFatalError:
    return KafkaFatalError(f"Kafka client hit a fatal error: {describe(error)}", code=error.name())


def commit_error(error: KafkaError) -> IngestError:
    if error.fatal():
        return fatal_error(error)
    return CommitFailedError(
        f"offsets were not committed ({describe(error)}); the batch will be read again",
        code=error.name(),
    )


def consume_error(exc: KafkaException, bootstrap: str) -> IngestError:
    error = kafka_error_of(exc)
    if error is not None and error.fatal():
        return fatal_error(error)
    return BrokerUnavailableError(
        f"consuming from Kafka at {bootstrap} failed: {exc}", bootstrap=bootstrap
    )


def produce_error(exc: KafkaException, topic: str) -> IngestError:
    """``produce()`` itself refused a record (not a delivery report)."""
    error = kafka_error_of(exc)
    if error is not None and (error.fatal() or error.code() == KafkaError._FATAL):
        return fatal_error(error)
    code = error.name() if error is not None else "UNKNOWN"
    return DeliveryFailedError(
        f"producing to {topic} failed: {exc}", topic=topic, code=code, failed=1
    )


@contextmanager
def client_settings(kind: str) -> Iterator[None]:
    """Translate librdkafka's refusal of a setting when a client is created."""
    try:
        yield
    except (KafkaException, ValueError, TypeError) as exc:
        error = kafka_error_of(exc) if isinstance(exc, KafkaException) else None
        reason = error.str() if error is not None else str(exc)
        raise ConfigError(f"kafka.{kind}: librdkafka refused the settings: {reason}") from None


@contextmanager
def broker_call(what: str, bootstrap: str, *, topic: str | None = None) -> Iterator[None]:
    """Translate a ``KafkaException`` raised by an admin or metadata call."""
    try:
        yield
    except KafkaException as exc:
        error = kafka_error_of(exc)
        if error is None:
            raise BrokerUnavailableError(f"{what}: {exc}", bootstrap=bootstrap) from None
        if error.fatal():
            raise KafkaFatalError(f"{what}: {describe(error)}", code=error.name()) from None
        if topic is not None and error.code() in UNKNOWN_TOPIC:
            raise UnknownTopicError(f"{what}: topic {topic} does not exist", topic=topic) from None
        if error.code() in _UNREACHABLE or error.retriable():
            raise BrokerUnavailableError(
                f"{what}: cannot reach Kafka at {bootstrap} ({describe(error)})",
                bootstrap=bootstrap,
            ) from None
        raise TopicError(f"{what}: {describe(error)}", topic=topic or "") from None
