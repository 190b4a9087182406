"""Configuration, validated in one place.

Settings come from, lowest precedence first: built-in defaults, a TOML file
(``--config``, else ``$INGEST_CONFIG``, else ``./ingest.toml`` when present),
then environment variables ``INGEST_<SECTION>_<FIELD>`` (for example
``INGEST_KAFKA_BOOTSTRAP``, ``INGEST_CLICKHOUSE_DSN``,
``INGEST_KAFKA_SASL_PASSWORD``) and ``INGEST_DATA_DIR``.

Every model is frozen, keyword-only and refuses unknown keys. Unsafe settings
are refused at construction: auto commit, a producer without idempotence or
without ``acks=all``, secrets in free-form client overrides or in a DSN.
Secrets are :class:`pydantic.SecretStr`: they print as ``**********`` in reprs,
dumps and logs; validation errors are built from field locations, never
from the values given (an unsafe, non-secret override like ``acks='1'`` is
quoted, a secret-looking key is refused before its value is looked at).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from foundation.errors import ConfigError

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
"""Source, resource and instance names: 1-63 lowercase letters, digits or '_'."""
"""Source, resource and instance names (also part of topic and table names)."""
ENV_PREFIX = "INGEST_"
ENV_CONFIG_FILE = "INGEST_CONFIG"
DEFAULT_CONFIG_FILE = Path("ingest.toml")
ModelT = TypeVar("ModelT", bound=BaseModel)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


# librdkafka settings that must not be overridden through the free-form maps.
_UNSAFE_PRODUCER = {
    "enable.idempotence": ("true",),
    "acks": ("all", "-1"),
    "request.required.acks": ("all", "-1"),
}
_UNSAFE_CONSUMER = {
    "enable.auto.commit": ("false",),
}
_OWNED_KEYS = {"bootstrap.servers", "group.id", "client.id"}
_SECRET_WORDS = ("password", "secret", "jaas", "sasl.oauthbearer.config")


def _check_overrides(
    kind: str, overrides: Mapping[str, str], rules: Mapping[str, tuple[str, ...]]
) -> None:
    for key, value in overrides.items():
        lowered = key.lower()
        if any(word in lowered for word in _SECRET_WORDS):
            raise ValueError(
                f"kafka.{kind}: {key!r} looks like a secret; use the kafka.sasl_password "
                "or kafka.ssl_key_password settings, which are masked"
            )
        if lowered in _OWNED_KEYS:
            raise ValueError(f"kafka.{kind}: {key!r} is set by durable-ingest; use its own setting")
        allowed = rules.get(lowered)
        if allowed is not None and str(value).strip().lower() not in allowed:
            raise ValueError(
                f"kafka.{kind}: {key}={value!r} is unsafe; durable-ingest requires "
                f"{key}={allowed[0]} (see docs/delivery-guarantees.md)"
            )


class KafkaSettings(_Model):
    """How workers reach Kafka. Security settings go straight to librdkafka."""

    bootstrap: str = "127.0.0.1:9092"
    client_id: str = "durable-ingest"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: SecretStr | None = None
    ssl_endpoint_identification: bool = True
    sasl_oauthbearer_method: Literal["default", "oidc"] = "default"
    sasl_oauthbearer_client_id: str | None = None
    sasl_oauthbearer_client_secret: SecretStr | None = None
    sasl_oauthbearer_token_endpoint_url: str | None = None
    sasl_oauthbearer_scope: str | None = None
    connect_timeout_s: float = Field(10.0, gt=0)
    """How long to wait for the first metadata answer before BrokerUnavailableError."""
    command_timeout_s: float = Field(3.0, gt=0)
    """The same for the operations commands (``ingest status``, ``dlq``, ``replay``): a
    person waits for them, so an unreachable broker is said sooner (the shorter wins)."""
    delivery_timeout_ms: int = Field(30_000, ge=1_000)
    linger_ms: int = Field(5, ge=0)
    session_timeout_ms: int = Field(6_000, ge=1_000)
    heartbeat_interval_ms: int = Field(1_500, ge=100)
    max_poll_interval_ms: int = Field(300_000, ge=10_000)
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    debug: str | None = None
    """librdkafka debug contexts (e.g. ``broker,security``), logged through Python logging."""
    producer: dict[str, str] = Field(default_factory=dict)
    """Extra librdkafka producer settings. Idempotence and acks=all cannot be weakened."""
    consumer: dict[str, str] = Field(default_factory=dict)
    """Extra librdkafka consumer settings. Auto commit cannot be turned on."""

    @model_validator(mode="after")
    def _safe(self) -> KafkaSettings:
        _check_overrides("producer", self.producer, _UNSAFE_PRODUCER)
        _check_overrides("consumer", self.consumer, _UNSAFE_CONSUMER)
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ValueError(
                "kafka.heartbeat_interval_ms must be at most a third of kafka.session_timeout_ms"
            )
        if self.security_protocol.startswith("SASL_"):
            if self.sasl_mechanism is None:
                raise ValueError(f"kafka.sasl_mechanism is required with {self.security_protocol}")
            if self.sasl_mechanism != "OAUTHBEARER" and (
                self.sasl_username is None or self.sasl_password is None
            ):
                raise ValueError(
                    f"kafka.sasl_username and kafka.sasl_password are required with "
                    f"{self.sasl_mechanism}"
                )
        if self.sasl_oauthbearer_method == "oidc" and (
            self.sasl_oauthbearer_client_id is None
            or self.sasl_oauthbearer_client_secret is None
            or self.sasl_oauthbearer_token_endpoint_url is None
        ):
            raise ValueError(
                "kafka.sasl_oauthbearer_method = oidc needs sasl_oauthbearer_client_id, "
                "sasl_oauthbearer_client_secret and sasl_oauthbearer_token_endpoint_url"
            )
        for host in self.bootstrap.split(","):
            if not host.strip() or ":" not in host:
                raise ValueError("kafka.bootstrap must be host:port[,host:port...]")
        return self


class ClickHouseSettings(_Model):
    """Where rows are written: ``chdb://<dir>`` (embedded) or ``http(s)://host:port``."""

    dsn: str
    """Default (when unset): ``chdb://<data_dir>/warehouse``."""
    database: str = "default"
    username: str | None = None
    password: SecretStr | None = None
    verify_tls: bool = True
    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    avro_input: bool = True
    """Sinks hand the staged Avro to ClickHouse, which parses it (``FORMAT Avro``);
    false: decode in Python and insert columns, several times slower (for a server
    whose Avro input differs; see docs/type-mapping.md)."""

    @model_validator(mode="after")
    def _dsn(self) -> ClickHouseSettings:
        parts = urlsplit(self.dsn)
        if parts.scheme not in ("chdb", "http", "https"):
            raise ValueError("clickhouse.dsn must start with chdb://, http:// or https://")
        query_keys = {k.lower() for k, _ in parse_qsl(parts.query)}
        if parts.password or query_keys & {"password", "access_token"}:
            raise ValueError(
                "clickhouse.dsn must not contain a password; set clickhouse.password "
                "(or INGEST_CLICKHOUSE_PASSWORD), which is masked"
            )
        if parts.scheme == "chdb" and not (parts.netloc + parts.path):
            raise ValueError(
                "clickhouse.dsn chdb:// needs a directory, e.g. chdb://.ingest/warehouse"
            )
        return self

    @property
    def embedded_path(self) -> Path | None:
        """The chDB directory when the DSN is embedded, else None."""
        parts = urlsplit(self.dsn)
        if parts.scheme != "chdb":
            return None
        return Path(parts.netloc + parts.path)


class ResourceSettings(_Model):
    """How one resource is staged."""

    schema_file: str
    """Avro schema, relative to the schemas folder, e.g. ``coinbase/matches.avsc``."""
    key: list[str] = Field(min_length=1)
    id_fields: list[str] = Field(default_factory=list)
    time_field: str | None = None
    topic: str | None = None
    partitions: int = Field(3, ge=1)
    retention_ms: int = Field(7 * 24 * 3600 * 1000, ge=-1)
    replication_factor: int | None = Field(None, ge=1)
    """Replication factor of the resource's topics; default ``staging.replication_factor``."""
    target: str = "clickhouse"
    """Where sinks write it: ``clickhouse`` (a table) or ``kafka:<topic>`` (another stream)."""

    @model_validator(mode="after")
    def _target(self) -> ResourceSettings:
        if self.target != "clickhouse" and not (
            self.target.startswith("kafka:") and len(self.target) > len("kafka:")
        ):
            raise ValueError("target must be 'clickhouse' or 'kafka:<topic>'")
        return self

    @property
    def stream_topic(self) -> str | None:
        """The destination topic of a ``kafka:<topic>`` target, else None."""
        return self.target.removeprefix("kafka:") if self.target.startswith("kafka:") else None


class RuntimeSettings(_Model):
    """How a source worker's Durable Runtime behaves (``[sources.<name>.runtime]``)."""

    @model_validator(mode="before")
    @classmethod
    def _former_names(cls, data: Any) -> Any:
        """``batch_rows`` is the former name of ``batch_records``; it is still read."""
        if isinstance(data, Mapping) and "batch_rows" in data:
            if "batch_records" in data:
                raise ValueError("batch_rows is the former name of batch_records: give one")
            data = {("batch_records" if k == "batch_rows" else k): v for k, v in data.items()}
        return data

    batch_records: int = Field(500, ge=1, le=100_000)
    """Stage a resource's buffered records once this many are waiting..."""
    linger_s: float = Field(0.2, gt=0, le=60)
    """...or once the oldest has waited this long."""
    idle_timeout_s: float = Field(30.0, gt=0)
    """A connection that delivers no frame for this long is dead: reconnect."""
    connect_timeout_s: float = Field(10.0, gt=0)
    backoff_initial_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    backoff_reset_after_s: float = Field(60.0, gt=0)
    """A connection that stayed up this long resets the backoff to its start."""
    max_frame_bytes: int = Field(1_048_576, ge=1_024)
    """Largest websocket frame (or HTTP body) accepted; a larger one closes the
    connection (websocket) or is dead-lettered (HTTP)."""
    max_json_depth: int = Field(32, ge=2, le=512)
    websocket_compression: Literal["deflate", "none"] = "deflate"
    """Offer permessage-deflate to the provider's websocket. ``none`` saves the
    decompression (a bare client reads about 1.4 times more Coinbase frames a second
    without it) for more bytes on the wire."""
    shutdown_timeout_s: float = Field(15.0, gt=0)
    """SIGTERM/SIGINT: stop reading, flush and exit within about this long."""

    @model_validator(mode="after")
    def _backoff(self) -> RuntimeSettings:
        if self.backoff_initial_s > self.backoff_max_s:
            raise ValueError("backoff_initial_s must not exceed backoff_max_s")
        return self


class SourceSettings(_Model):
    connector: str | None = None
    """Which connector runs this source (default: the source's own name), so one
    connector can run as several sources, e.g. ``coinbase_eu``."""
    resources: dict[str, ResourceSettings] = Field(default_factory=dict)
    """Staging settings per resource; the connector's defaults fill in the rest."""
    runtime: RuntimeSettings = RuntimeSettings()
    instances: list[str] = Field(default_factory=list)
    """Names of the processes this source runs as, when several stage into the same
    topics (e.g. one per product): each runs ``ingest source run <source> --instance
    <name>`` and resumes from its own checkpoints; sinks keep each one's apart."""

    @model_validator(mode="after")
    def _instances(self) -> SourceSettings:
        for name in self.instances:
            if not NAME_PATTERN.match(name):
                raise ValueError(
                    f"instance name {name!r} is invalid: use 1-63 lowercase letters, digits "
                    "or '_', starting with a letter"
                )
        if len(set(self.instances)) != len(self.instances):
            raise ValueError("instances must not repeat a name")
        return self


class StagingSettings(_Model):
    max_record_bytes: int = Field(1_000_000, ge=1_024)
    """Largest staged record (key + value + headers). Enforced before produce."""
    checkpoint_topic: str = "ingest._checkpoints"
    replication_factor: int = Field(1, ge=1)
    """Replication factor of every topic durable-ingest creates (staged, dead-letter,
    stream and checkpoint topics) unless a resource or the checkpoint topic sets its
    own; ``min.insync.replicas`` is 2 from 3 replicas on. Use 3 in production."""
    checkpoint_replication_factor: int | None = Field(None, ge=1)
    """The checkpoint topic's replication factor; default ``replication_factor``."""
    schemas_dir: Path | None = None
    """Folder of ``.avsc`` files; default: the ``schemas/`` shipped with durable-ingest."""


class AdminSettings(_Model):
    """The workers' admin port (``--admin-port``)."""

    sql_token: SecretStr | None = None
    """Lets clients from other hosts use a sink's ``POST /sql`` when they send it
    (``INGEST_ADMIN_SQL_TOKEN``; ``ingest sql`` sends it too). Without it, ``/sql``
    answers clients on the sink's own host only."""


class Settings(_Model):
    """Everything a worker needs, validated."""

    data_dir: Path = Path(".ingest")
    kafka: KafkaSettings = KafkaSettings()
    clickhouse: ClickHouseSettings
    staging: StagingSettings = StagingSettings()
    admin: AdminSettings = AdminSettings()
    sources: dict[str, SourceSettings] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _default_warehouse(cls, data: Any) -> Any:
        """The embedded warehouse lives in the data directory unless a DSN is given."""
        if isinstance(data, Mapping):
            clickhouse = dict(data.get("clickhouse") or {})
            if "dsn" not in clickhouse:
                data_dir = data.get("data_dir", ".ingest")
                clickhouse["dsn"] = f"chdb://{Path(str(data_dir)).as_posix()}/warehouse"
                data = {**data, "clickhouse": clickhouse}
        return data


SECTIONS: dict[str, type[_Model]] = {  # the sections INGEST_<SECTION>_<FIELD> can set
    "kafka": KafkaSettings,
    "clickhouse": ClickHouseSettings,
    "staging": StagingSettings,
    "admin": AdminSettings,
}


def error_lines(error: ValidationError, where: Callable[[list[str]], str]) -> str:
    """Each error as ``<where>: <message>``, from field locations only (never values)."""
    return "; ".join(
        f"{where([str(part) for part in item['loc']])}: {item['msg']}"
        for item in error.errors(include_input=False, include_url=False)
    )


def _describe(error: ValidationError, origin: str) -> str:
    lines = error_lines(error, lambda loc: ".".join(loc) or "settings")
    return f"invalid configuration ({origin}): {lines}"


def settings_from(data: Mapping[str, Any], origin: str = "settings") -> Settings:
    """Validate a settings mapping; raises :class:`ConfigError` without echoing values."""
    try:
        return Settings.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origin)) from None
