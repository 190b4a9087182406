"""Every error durable-ingest raises, grouped by what the caller must do.

::

    IngestError                      base class; never raised itself
    ├── RetryError                   repeat the same operation; it is idempotent
    │   ├── DeliveryUnknownError     produce timed out: maybe written; resend, same ids
    │   └── CommitFailedError        offsets not committed; the batch will be re-read
    ├── BackoffError                 a dependency is unavailable: wait, then retry
    │   ├── BrokerUnavailableError   Kafka cannot be reached within the timeout
    │   ├── DeliveryFailedError      the broker refused a record for a transient cause
    │   ├── WarehouseUnavailableError ClickHouse is down, slow or overloaded (by server code)
    │   ├── ConnectionLostError      a provider connection dropped, failed or went silent
    │   └── RateLimitedError         a provider answered 429 (or 503): wait as it asks
    ├── DeadLetterError              this record can never succeed: dead-letter it,
    │   │                            count it, continue with the rest
    │   ├── SchemaMismatchError      a row does not fit its resource's Avro schema
    │   ├── RecordTooLargeError      an encoded record is over the size limit
    │   ├── BatchRejectedError       ClickHouse refused a batch for its content: split it
    │   ├── CorruptRecordError       staged bytes that cannot be decoded
    │   └── MalformedFrameError      a provider frame that is too large, too deep, not
    │                                JSON, or that a resource cannot parse or process
    └── StopError                    retrying will not help: stop with this message
        ├── ConfigError              the configuration is invalid or unsafe
        ├── UnknownResourceError     a source or resource nobody declared
        ├── SourceDefinitionError    a connector's definition or process() result is wrong
        ├── ProviderRefusedError     a provider refused for good (bad key, unknown product)
        ├── SchemaError              a schema file is missing or not valid Avro
        │   └── UnknownSchemaError   staged bytes name a schema the schemas folder lacks
        ├── CheckpointError          a checkpoint is not plain JSON
        ├── SchemaEvolutionError     a schema change the table cannot follow
        ├── TopicError               a staging topic is missing or cannot be created
        │   └── UnknownTopicError    the broker does not know the topic (yet)
        ├── ReplayRangeError         a replay range that is malformed, reversed or
        │                            before the retained data
        ├── DeliveryRejectedError    the broker refused a record for good (e.g. ACL)
        ├── KafkaFatalError          the Kafka client hit a fatal error
        ├── StagingClosedError       the staging session was already closed
        ├── WarehouseError           the warehouse cannot be opened
        │   ├── WarehouseInUseError  another process owns the embedded warehouse
        │   └── QueryError           a query (ingest sql, replay's key check) was refused
        ├── StackError               the embedded stack cannot start
        └── CaptureError             a feed capture cannot be read or written

Errors carry structured fields (``topic``, ``partition``, ``offset``,
``resource``, ``field``, ``code``...) besides their message, so callers route
them without parsing strings. Messages never contain secrets: configuration
errors are built from field locations, never from input values.

Third-party exceptions (librdkafka, clickhouse-connect, chDB) are translated
into these classes in one place per adapter; nothing else catches them.
"""

from __future__ import annotations


class IngestError(Exception):
    """Base class of every durable-ingest error."""


# --- retry -----------------------------------------------------------------


class RetryError(IngestError):
    """The operation may be repeated as it is: it is idempotent."""


class DeliveryUnknownError(RetryError):
    """A produce timed out: the records may or may not have been written.

    Resend the same records: their event ids are deterministic, so the sink
    deduplicates whatever was written twice.
    """

    def __init__(self, message: str, *, topic: str, undelivered: int) -> None:
        super().__init__(message)
        self.topic = topic
        self.undelivered = undelivered


class CommitFailedError(RetryError):
    """Offsets were not committed; the batch will be delivered again.

    The write it describes is idempotent, so re-reading it is harmless.
    """

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


# --- back off --------------------------------------------------------------


class BackoffError(IngestError):
    """A dependency is unavailable: wait (with backoff), then retry."""


class BrokerUnavailableError(BackoffError):
    """Kafka could not be reached within the configured timeout."""

    def __init__(self, message: str, *, bootstrap: str) -> None:
        super().__init__(message)
        self.bootstrap = bootstrap


class DeliveryFailedError(BackoffError):
    """The broker refused records for a cause that may pass (leader change...)."""

    def __init__(self, message: str, *, topic: str, code: str, failed: int) -> None:
        super().__init__(message)
        self.topic = topic
        self.code = code
        self.failed = failed


class WarehouseUnavailableError(BackoffError):
    """ClickHouse is unreachable, slow or overloaded: retry the identical batch later."""

    def __init__(self, message: str, *, code: int | None) -> None:
        super().__init__(message)
        self.code = code


class ConnectionLostError(BackoffError):
    """A provider connection could not be opened, dropped, or went silent.

    ``url`` never holds credentials: query parameters are masked.
    """

    def __init__(self, message: str, *, url: str, reason: str) -> None:
        super().__init__(message)
        self.url = url
        self.reason = reason


class RateLimitedError(BackoffError):
    """A provider asked us to slow down (HTTP 429/503); ``retry_after_s`` if it said."""

    def __init__(self, message: str, *, url: str, status: int, retry_after_s: float | None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.retry_after_s = retry_after_s


# --- dead-letter and continue ----------------------------------------------


class DeadLetterError(IngestError):
    """This record can never succeed: dead-letter it and go on with the rest."""


class BatchRejectedError(DeadLetterError):
    """ClickHouse refused a batch for its content: split it to find the bad records."""

    def __init__(self, message: str, *, code: int | None) -> None:
        super().__init__(message)
        self.code = code


class SchemaMismatchError(DeadLetterError):
    """A record does not fit its resource's Avro schema."""

    def __init__(
        self, message: str, *, resource: str, field: str | None, record_index: int
    ) -> None:
        super().__init__(message)
        self.resource = resource
        self.field = field
        self.record_index = record_index


class MalformedFrameError(DeadLetterError):
    """A provider frame that cannot become records: dead-letter it, count it, go on.

    ``resource`` is the resource whose parse or process refused it, or None when
    the frame failed before any resource saw it (size, depth, JSON).
    """

    def __init__(
        self, message: str, *, source: str, resource: str | None, reason: str, frame: bytes
    ) -> None:
        super().__init__(message)
        self.source = source
        self.resource = resource
        self.reason = reason
        self.frame = frame


class RecordTooLargeError(DeadLetterError):
    """An encoded record is larger than the configured limit."""

    def __init__(
        self, message: str, *, resource: str, size: int, limit: int, record_index: int
    ) -> None:
        super().__init__(message)
        self.resource = resource
        self.size = size
        self.limit = limit
        self.record_index = record_index


class CorruptRecordError(DeadLetterError):
    """Staged bytes that cannot be decoded into a record of a known schema."""

    def __init__(
        self,
        message: str,
        *,
        topic: str,
        partition: int,
        offset: int,
        reason: str,
        key: bytes | None = None,
        value: bytes | None = None,
        headers: tuple[tuple[str, bytes | None], ...] = (),
    ) -> None:
        super().__init__(message)
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.reason = reason
        # The raw record, so that a dead-letter writer can copy it unchanged.
        self.key = key
        self.value = value
        self.headers = headers


# --- stop ------------------------------------------------------------------


class StopError(IngestError):
    """Retrying will not help: stop and show this message to a person."""


class ConfigError(StopError):
    """The configuration is invalid or unsafe."""


class UnknownResourceError(StopError):
    """A source or resource name that nobody declared: a wiring mistake, not bad data."""

    def __init__(self, message: str, *, source: str, resource: str) -> None:
        super().__init__(message)
        self.source = source
        self.resource = resource


class SourceDefinitionError(StopError):
    """A connector is wired wrongly: a bad definition, or process() returned a wrong shape."""

    def __init__(self, message: str, *, source: str, resource: str | None = None) -> None:
        super().__init__(message)
        self.source = source
        self.resource = resource


class ProviderRefusedError(StopError):
    """The provider refused us for good: bad credentials, unknown product or table."""

    def __init__(self, message: str, *, source: str, reason: str) -> None:
        super().__init__(message)
        self.source = source
        self.reason = reason


class SchemaError(StopError):
    """A schema file is missing, unreadable or not valid Avro."""


class UnknownSchemaError(SchemaError):
    """A staged record's fingerprint matches no schema in the schemas folder.

    Not a dead letter: the record is probably fine and the reader's schemas
    folder out of date. Stop before anything is committed past it.
    """

    def __init__(self, message: str, *, topic: str, partition: int, offset: int) -> None:
        super().__init__(message)
        self.topic = topic
        self.partition = partition
        self.offset = offset


class SchemaEvolutionError(StopError):
    """A schema change the warehouse table cannot follow; names the field and both types."""

    def __init__(
        self,
        message: str,
        *,
        field: str,
        table_type: str | None = None,
        schema_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.field = field
        self.table_type = table_type
        self.schema_type = schema_type


class CheckpointError(StopError):
    """A checkpoint that cannot be stored: not plain JSON, or nothing to carry it."""


class TopicError(StopError):
    """A staging topic is missing, misconfigured, or could not be created."""

    def __init__(self, message: str, *, topic: str) -> None:
        super().__init__(message)
        self.topic = topic


class UnknownTopicError(TopicError):
    """A topic the broker does not know: missing, or created a moment ago and not yet
    known to the broker that answered."""


class ReplayRangeError(StopError):
    """``ingest replay --from/--to`` names a range that cannot be read as asked:
    malformed, reversed, or starting before the topic's retained data."""

    def __init__(
        self, message: str, *, topic: str | None = None, partition: int | None = None
    ) -> None:
        super().__init__(message)
        self.topic = topic
        self.partition = partition


class DeliveryRejectedError(StopError):
    """The broker refused records for good (authorization, invalid topic...)."""

    def __init__(self, message: str, *, topic: str, code: str, failed: int) -> None:
        super().__init__(message)
        self.topic = topic
        self.code = code
        self.failed = failed


class KafkaFatalError(StopError):
    """The Kafka client reported a fatal error; it must be recreated."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


class StagingClosedError(StopError):
    """The staging session (or its writer or reader) was already closed."""


class WarehouseError(StopError):
    """The warehouse could not be opened (bad DSN, embedded path in use...)."""


class WarehouseInUseError(WarehouseError):
    """The embedded warehouse is open in another process (one process owns it)."""


class QueryError(WarehouseError):
    """The warehouse refused a query: bad SQL, unknown table, or a write on a read-only path."""


class StackError(StopError):
    """The embedded stack could not start: binary missing, port taken, no answer."""


class CaptureError(StopError):
    """A captured feed file is missing, malformed (with its line) or already exists."""

    def __init__(self, message: str, *, path: str = "", line: int = 0) -> None:
        super().__init__(message)
        self.path = path
        self.line = line
