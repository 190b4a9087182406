"""What the staging layer knows of a Resource: its schema, keys and topic.

Pure value objects. Names are validated here once: a source or resource name
becomes part of a Kafka topic name and of a ClickHouse identifier, so it must
be safe in both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from foundation.config import NAME_PATTERN
from foundation.errors import ConfigError
from staging.schemas import StagedSchema

TOPIC_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,249}$")

CHECKPOINT_TOPIC = "ingest._checkpoints"


def check_name(kind: str, name: str) -> str:
    """Return ``name`` if it is a valid source or resource name, else raise."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ConfigError(
            f"{kind} name {name!r} is invalid: use 1-63 lowercase letters, digits or '_', "
            "starting with a letter"
        )
    return name


def check_topic(topic: str) -> str:
    """Return ``topic`` if Kafka accepts it as a topic name, else raise."""
    if not TOPIC_PATTERN.match(topic) or topic in (".", ".."):
        raise ConfigError(
            f"topic name {topic!r} is invalid: use 1-249 of letters, digits, '.', '_' or '-'"
        )
    return topic


def default_topic(source: str, resource: str) -> str:
    """``ingest.<source>.<resource>``: where a resource's envelopes are staged."""
    return f"ingest.{source}.{resource}"


def dead_letter_topic(topic: str) -> str:
    """``<topic>.dlq``: where a resource's dead letters go."""
    return f"{topic}.dlq"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """How a staging topic is created: partitions and retention (the staging TTL)."""

    name: str
    partitions: int = 3
    retention_ms: int = 7 * 24 * 3600 * 1000
    replication_factor: int = 1
    compacted: bool = False

    def __post_init__(self) -> None:
        check_topic(self.name)
        if self.partitions < 1:
            raise ConfigError(f"topic {self.name}: partitions must be >= 1, not {self.partitions}")
        if self.retention_ms < -1 or self.retention_ms == 0:
            raise ConfigError(
                f"topic {self.name}: retention_ms must be positive (or -1 for forever), "
                f"not {self.retention_ms}"
            )
        if self.replication_factor < 1:
            raise ConfigError(
                f"topic {self.name}: replication_factor must be >= 1, not {self.replication_factor}"
            )

    @property
    def min_insync_replicas(self) -> int:
        """2 when there are 3 or more replicas (one broker may fail), else 1."""
        return 2 if self.replication_factor >= 3 else 1

    def kafka_config(self, *, max_message_bytes: int | None = None) -> dict[str, str]:
        """Topic-level configuration as Kafka's admin API takes it."""
        config = {
            "retention.ms": str(self.retention_ms),
            "min.insync.replicas": str(self.min_insync_replicas),
        }
        if max_message_bytes is not None:
            config["max.message.bytes"] = str(max_message_bytes)
        if self.compacted:
            config["cleanup.policy"] = "compact"
        return config


@dataclass(frozen=True, slots=True)
class StagedResource:
    """One resource of one source, as the staging layer writes and reads it.

    Build it with :meth:`define`, which fills in the default topic names.
    """

    source: str
    name: str
    schema: StagedSchema
    key: tuple[str, ...]
    """Fields whose values form the Kafka key: records with the same key stay in order."""
    id_fields: tuple[str, ...]
    """The natural key: fields that identify an event. Empty: the encoded record does."""
    time_field: str | None
    """Field holding the event time (CloudEvents ``time``); None: the ingest time."""
    topic: TopicSpec
    dlq: TopicSpec

    @classmethod
    def define(
        cls,
        *,
        source: str,
        name: str,
        schema: StagedSchema,
        key: tuple[str, ...],
        id_fields: tuple[str, ...] = (),
        time_field: str | None = None,
        topic: str | None = None,
        partitions: int = 3,
        retention_ms: int = 7 * 24 * 3600 * 1000,
        replication_factor: int = 1,
    ) -> StagedResource:
        """A resource staged to ``topic`` (default ``ingest.<source>.<resource>``)."""
        check_name("source", source)
        check_name("resource", name)
        topic_spec = TopicSpec(
            topic or default_topic(source, name),
            partitions=partitions,
            retention_ms=retention_ms,
            replication_factor=replication_factor,
        )
        dlq_spec = TopicSpec(
            dead_letter_topic(topic_spec.name),
            partitions=1,
            retention_ms=retention_ms,
            replication_factor=replication_factor,
        )
        return cls(
            source, name, schema, tuple(key), tuple(id_fields), time_field, topic_spec, dlq_spec
        )

    def __post_init__(self) -> None:
        check_name("source", self.source)
        check_name("resource", self.name)
        where = f"resource {self.source}.{self.name}"
        if not self.key:
            raise ConfigError(f"{where}: key must name at least one field")
        for label, names in (("key", self.key), ("id_fields", self.id_fields)):
            for name in names:
                if name not in self.schema.field_names:
                    raise ConfigError(
                        f"{where}: {label} field {name!r} is not in schema {self.schema.path}"
                    )
        if self.time_field is not None and self.time_field not in self.schema.field_names:
            raise ConfigError(
                f"{where}: time_field {self.time_field!r} is not in schema {self.schema.path}"
            )

    @property
    def qualified_name(self) -> str:
        return f"{self.source}.{self.name}"
