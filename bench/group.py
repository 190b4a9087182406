"""Consumer-group timings a sink sees: first join, and the pause when a member joins, leaves
or dies, on each broker, with the product's own consumer settings.

Each member is a process of its own running a consumer built by
``staging.kafka.client_config.consumer_config`` (``session.timeout.ms`` 6000,
``heartbeat.interval.ms`` 1500: the defaults of ``KafkaSettings``) on a topic of 6
partitions, printing its assignment events with timestamps. Measured, per broker:

- **first join**: a new group's only member, from ``subscribe()`` to its assignment;
- **member joins**: a second member subscribes; from then until both hold partitions;
- **member leaves**: that member closes (SIGTERM, as a sink stops); until the first holds
  all 6 again;
- **member dies**: a third member is killed with -9; until the first holds all 6 again
  (bounded below by ``session.timeout.ms``).

Brokers: Tansu; Apache Kafka as ``ingest stack up --engine kafka`` runs it
(``group.initial.rebalance.delay.ms=0``, as in Kafka's own development config); and Apache
Kafka with the broker default a production cluster keeps (3000 ms).

Run: ``.venv/bin/python bench/group.py [--repeats 3]``. It prints medians; timings are
figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from durable_ingest.apache_kafka import KafkaCluster
from durable_ingest.stack import Broker, EmbeddedBroker, broker_port
from foundation.config import KafkaSettings
from staging.kafka.admin import TopicAdmin
from staging.resource import TopicSpec

ROOT = Path(__file__).resolve().parents[1]

PARTITIONS = 6
MEMBER = """
import json, signal, sys, time
from confluent_kafka import Consumer
from foundation.config import KafkaSettings
from staging.kafka.client_config import consumer_config

bootstrap, group, topic = sys.argv[1:4]
consumer = Consumer(consumer_config(KafkaSettings(bootstrap=bootstrap), group_id=group))
held = set()
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))

def say(event, **fields):
    print(json.dumps({"event": event, "t": time.time(), **fields}), flush=True)

def assigned(_c, tps):
    held.update(tp.partition for tp in tps)
    say("assigned", held=sorted(held))

def revoked(_c, tps):
    held.difference_update(tp.partition for tp in tps)
    say("revoked", held=sorted(held))

say("subscribe")
consumer.subscribe([topic], on_assign=assigned, on_revoke=revoked, on_lost=revoked)
while not stop:
    consumer.poll(0.1)
say("closing")
consumer.close()
say("closed")
"""


class Member:
    """One group member in a process of its own; its events as they arrive."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self.events: list[dict[str, Any]] = []
        self.process = subprocess.Popen(
            [sys.executable, "-c", MEMBER, bootstrap, group, topic],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.events.append(json.loads(line))

    def time_of(self, event: str) -> float:
        return next(e["t"] for e in self.events if e["event"] == event)

    def held(self) -> list[int]:
        found = [e for e in self.events if e["event"] in ("assigned", "revoked")]
        return list(found[-1]["held"]) if found else []

    def wait(self, condition: Any, timeout_s: float = 120) -> float:
        """Wait until ``condition(self)``; the time of the event that made it true."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition(self):
                return float(self.events[-1]["t"])
            time.sleep(0.02)
        raise RuntimeError(f"timed out; events: {self.events[-5:]}")


def one_round(bootstrap: str) -> dict[str, float]:
    topic = f"bench.group.{uuid.uuid4().hex[:8]}"
    TopicAdmin(KafkaSettings(bootstrap=bootstrap)).ensure([TopicSpec(topic, partitions=PARTITIONS)])
    group = f"bench.group.{uuid.uuid4().hex[:8]}"
    everything = list(range(PARTITIONS))
    members: list[Member] = []

    def member() -> Member:
        members.append(Member(bootstrap, group, topic))
        return members[-1]

    first = member()
    found: dict[str, float] = {}
    try:
        got = first.wait(lambda m: m.held() == everything)
        found["first join"] = got - first.time_of("subscribe")

        second = member()
        both = second.wait(lambda m: bool(m.held()) and len(first.held()) < PARTITIONS)
        first.wait(lambda m: bool(m.held()) and len(m.held()) + len(second.held()) == PARTITIONS)
        found["member joins"] = max(both, first.events[-1]["t"]) - second.time_of("subscribe")

        second.process.send_signal(signal.SIGTERM)
        left = time.time()
        got = first.wait(lambda m: m.held() == everything)
        found["member leaves (close)"] = got - left
        second.process.wait(60)

        third = member()
        third.wait(lambda m: bool(m.held()))
        first.wait(lambda m: len(m.held()) + len(third.held()) == PARTITIONS)
        time.sleep(1)
        third.process.kill()
        died = time.time()
        got = first.wait(lambda m: m.held() == everything)
        found["member dies (kill -9)"] = got - died
        third.process.wait(10)
    finally:
        for each in members:
            if each.process.poll() is None:
                each.process.kill()
            each.process.wait(10)
    return found


@contextmanager
def broker(engine: str, properties: dict[str, str]) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="bench-group-") as folder:
        started: Broker = (
            EmbeddedBroker(broker_port(0))
            if engine == "tansu"
            else KafkaCluster(Path(folder) / "kafka", port=0, properties=properties)
        )
        started.start()
        try:
            yield started.bootstrap
        finally:
            started.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    brokers = [
        ("Tansu", "tansu", {}),
        ("Apache Kafka, group delay 0 (ingest stack up)", "kafka", {}),
        (
            "Apache Kafka, group delay 3000 ms (broker default)",
            "kafka",
            {"group.initial.rebalance.delay.ms": "3000"},
        ),
    ]
    print(
        f"consumer: session.timeout.ms {KafkaSettings().session_timeout_ms}, "
        f"heartbeat.interval.ms {KafkaSettings().heartbeat_interval_ms} (KafkaSettings "
        f"defaults); {PARTITIONS} partitions; medians of {args.repeats}"
    )
    print(f"{'broker':52s} {'first join':>11s} {'joins':>8s} {'leaves':>8s} {'dies':>8s}")
    for label, engine, properties in brokers:
        with broker(engine, properties) as bootstrap:
            rounds = [one_round(bootstrap) for _ in range(args.repeats)]
        med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        print(
            f"{label:52s} {med['first join']:>10.2f}s {med['member joins']:>7.2f}s "
            f"{med['member leaves (close)']:>7.2f}s {med['member dies (kill -9)']:>7.2f}s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
