"""librdkafka settings built from :class:`KafkaSettings`, safe by construction.

The producer is always idempotent with ``acks=all``; the consumer never auto
commits and never auto-stores offsets, and names its ``auto.offset.reset``.
These dictionaries hold secrets: never log them.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from foundation.config import KafkaSettings
from foundation.log_throttle import LogThrottle

LIBRDKAFKA_LOGGER = logging.getLogger("staging.kafka.librdkafka")
REPEAT_WINDOW_S = 60.0
_VARIABLE = re.compile(r"\d+|rdkafka#[\w-]+")


class _Repeats(logging.Filter):
    """One of each kind of librdkafka message per minute: an unreachable broker
    otherwise logs the same refused connection for every client, many times a second."""

    def __init__(self) -> None:
        super().__init__()
        self._throttle = LogThrottle(REPEAT_WINDOW_S)

    def filter(self, record: logging.LogRecord) -> bool:
        return self._throttle.allow(_VARIABLE.sub("#", record.getMessage())) is not None


LIBRDKAFKA_LOGGER.addFilter(_Repeats())


# Room for the record batch framing around one record of max_record_bytes.
_BATCH_OVERHEAD = 64 * 1024


def common_config(kafka: KafkaSettings) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": kafka.bootstrap,
        "client.id": kafka.client_id,
        "security.protocol": kafka.security_protocol,
        "logger": LIBRDKAFKA_LOGGER,
    }
    if kafka.debug:
        config["debug"] = kafka.debug
    if kafka.sasl_mechanism is not None:
        config["sasl.mechanism"] = kafka.sasl_mechanism
    if kafka.sasl_username is not None:
        config["sasl.username"] = kafka.sasl_username
    if kafka.sasl_password is not None:
        config["sasl.password"] = kafka.sasl_password.get_secret_value()
    optional = {
        "ssl.ca.location": kafka.ssl_ca_location,
        "ssl.certificate.location": kafka.ssl_certificate_location,
        "ssl.key.location": kafka.ssl_key_location,
    }
    config.update({k: v for k, v in optional.items() if v is not None})
    if kafka.sasl_oauthbearer_method == "oidc":
        config["sasl.oauthbearer.method"] = "oidc"
        config["sasl.oauthbearer.client.id"] = kafka.sasl_oauthbearer_client_id
        if kafka.sasl_oauthbearer_client_secret is not None:
            config["sasl.oauthbearer.client.secret"] = (
                kafka.sasl_oauthbearer_client_secret.get_secret_value()
            )
        config["sasl.oauthbearer.token.endpoint.url"] = kafka.sasl_oauthbearer_token_endpoint_url
        if kafka.sasl_oauthbearer_scope is not None:
            config["sasl.oauthbearer.scope"] = kafka.sasl_oauthbearer_scope
    if kafka.ssl_key_password is not None:
        config["ssl.key.password"] = kafka.ssl_key_password.get_secret_value()
    if "SSL" in kafka.security_protocol:
        config["ssl.endpoint.identification.algorithm"] = (
            "https" if kafka.ssl_endpoint_identification else "none"
        )
    return config


def topic_max_message_bytes(max_record_bytes: int) -> int:
    """``max.message.bytes`` for staging topics: one largest record plus batch framing."""
    return max(1_048_588, max_record_bytes + _BATCH_OVERHEAD)


def admin_config(kafka: KafkaSettings) -> dict[str, Any]:
    return common_config(kafka)


def producer_config(kafka: KafkaSettings, *, max_record_bytes: int) -> dict[str, Any]:
    config = common_config(kafka)
    config.update(
        {
            "linger.ms": kafka.linger_ms,
            "delivery.timeout.ms": kafka.delivery_timeout_ms,
            "message.max.bytes": max(1_000_000, max_record_bytes + _BATCH_OVERHEAD),
        }
    )
    config.update(kafka.producer)
    # Last, so nothing above can weaken them (the settings model refuses it too).
    config.update({"enable.idempotence": True, "acks": "all"})
    return config


def consumer_config(kafka: KafkaSettings, *, group_id: str) -> dict[str, Any]:
    config = common_config(kafka)
    config.update(
        {
            "group.id": group_id,
            "auto.offset.reset": kafka.auto_offset_reset,
            "session.timeout.ms": kafka.session_timeout_ms,
            "heartbeat.interval.ms": kafka.heartbeat_interval_ms,
            "max.poll.interval.ms": kafka.max_poll_interval_ms,
            "fetch.wait.max.ms": 100,
            "fetch.queue.backoff.ms": 20,
            "isolation.level": "read_committed",
        }
    )
    config.update(kafka.consumer)
    config.update({"enable.auto.commit": False, "enable.auto.offset.store": False})
    return config
