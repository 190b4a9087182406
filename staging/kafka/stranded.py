"""Kafka clients that librdkafka has left with no broker, and a producer renewed then.

librdkafka (since 2.10) drops every broker a metadata answer does not list, and
its bootstrap servers once it has learned the cluster's own. A broker in a
controlled shutdown answers metadata without itself; the last broker of a
cluster that stops as a whole answers with no broker at all. A client that
asks it then (a producer whose partition just lost its leader does) keeps no
broker, and it never asks again: the re-bootstrap that
``metadata.recovery.strategy`` promises starts with a metadata request, which
it cannot send. Its records wait until they time out, for as long as the
process runs, though the cluster is back. Seen in a test of a whole 3-broker
cluster stopped and started again: the sink's checkpoint producer timed out
every save after the cluster had returned.

:class:`BrokerWatch` reads the client's statistics (every
:data:`STATS_INTERVAL_MS`) and says when it knows no broker.
:class:`RenewingProducer` hands out a producer, and a new one, built from the
same settings and so bootstrapping again, when the old one has been stranded;
the reader (:mod:`staging.kafka.reader`) renews its consumer the same way.
What the old one still held was already reported undelivered (or is reported
so now, through its delivery callback), and its callers resend it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import Producer

log = logging.getLogger(__name__)

STATS_INTERVAL_MS = 5_000
"""How often librdkafka reports its brokers to a :class:`BrokerWatch`."""

_REAL_BROKERS = frozenset({"configured", "learned"})
"""Broker handles that can answer a metadata request (not ``internal`` or ``logical``)."""


def warn_renewed(client: str, bootstrap: object, then: str = "") -> None:
    """The one log line of a client replaced because it knew no broker any more."""
    log.warning(
        "Kafka %s knows no broker any more (a metadata answer listed none, as a cluster's "
        "last broker answers while it shuts down): replaced by a new one that bootstraps "
        "from %s%s",
        client,
        bootstrap,
        then,
    )


class BrokerWatch:
    """librdkafka's statistics callback: whether the client still knows a broker."""

    def __init__(self) -> None:
        self.stranded = False

    def __call__(self, stats_json: str) -> None:
        try:
            brokers = json.loads(stats_json).get("brokers", {})
        except (ValueError, AttributeError):
            return  # not statistics we can read: say nothing
        if not isinstance(brokers, dict):
            return
        self.stranded = not any(
            isinstance(b, dict) and b.get("source") in _REAL_BROKERS for b in brokers.values()
        )

    def watch(self, config: dict[str, Any]) -> dict[str, Any]:
        """``config`` with this watch as its statistics callback."""
        return {**config, "statistics.interval.ms": STATS_INTERVAL_MS, "stats_cb": self}


class RenewingProducer:
    """One producer at a time, built by ``build`` from librdkafka settings, replaced by a
    new one when it has lost every broker. Thread-safe."""

    def __init__(self, config: dict[str, Any], build: Callable[[dict[str, Any]], Producer]):
        self._config = config
        self._build = build
        self._lock = threading.Lock()
        self.broker_watch = BrokerWatch()
        self._producer = build(self.broker_watch.watch(config))
        self.renewals = 0

    def current(self) -> Producer:
        """The producer to use now: a new one if the last lost every broker."""
        with self._lock:
            if self.broker_watch.stranded:
                self._renew()
            return self._producer

    def _renew(self) -> None:
        old = self._producer
        warn_renewed("producer", self._config.get("bootstrap.servers"))
        old.purge(in_queue=True, in_flight=True)
        old.flush(0)  # serves the purged records' reports: they count as undelivered
        self.broker_watch = BrokerWatch()
        self._producer = self._build(self.broker_watch.watch(self._config))
        self.renewals += 1

    def flush(self, timeout_s: float) -> int:
        with self._lock:
            return int(self._producer.flush(timeout_s))
