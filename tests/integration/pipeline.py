"""A live pipeline for fault tests: the Coinbase test exchange trading steadily, a source
worker process and sink worker processes, over a broker the test names, and the exact
checks made at the end (every trade once in ClickHouse, every one staged)."""

from __future__ import annotations

import itertools
import json
import logging
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from staging.checkpoints import entries_in, resume_point
from staging.kafka.checkpoints import apply_record
from staging.resource import CHECKPOINT_TOPIC
from tests.helpers import ask_for_stacks, unique
from tests.integration.conftest import Spawn, python_json
from tests.integration.source_helpers import process_env, wait_for
from tests.servers.coinbase import CoinbaseExchange

ROOT = Path(__file__).resolve().parents[2]
PRODUCTS = ["BTC-USD", "ETH-USD"]

COUNT = textwrap.dedent(
    """
    import json, sys
    from foundation.config import settings_from
    from sink_workers.clickhouse.warehouse import open_warehouse
    client = open_warehouse(settings_from({"data_dir": sys.argv[1]}).clickhouse)
    table = sys.argv[2]
    rows = client.query(f"SELECT product_id, trade_id FROM default.{table} FINAL").result_rows
    raw = client.command(f"SELECT count() FROM default.{table}")
    distinct = client.command(f"SELECT uniqExact(product_id, trade_id) FROM default.{table}")
    print(json.dumps({"final": [list(r) for r in rows], "raw": raw, "distinct": distinct}))
    """
)


@dataclass
class Outcome:
    """What the end of a run found."""

    expected: int
    clickhouse_final: int
    clickhouse_distinct: int
    clickhouse_raw: int
    staged: int
    staged_distinct: int

    @property
    def wire_duplicates(self) -> int:
        return self.staged - self.staged_distinct


class Trading:
    """The exchange making ``rate`` trades a second (spread over the products) in a thread."""

    def __init__(self, exchange: CoinbaseExchange, rate: float = 60.0) -> None:
        self._exchange = exchange
        self._interval = len(PRODUCTS) / rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            for product in PRODUCTS:
                self._exchange.trade(product)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


class CheckpointTail:
    """The checkpoint topic read as it grows, by one consumer kept for the test: what the
    tests poll to see what a sink confirmed. (A checkpoint store's ``load_all`` writes a
    fence and starts a consumer on every call, about a second each: polled every 50 ms
    through broker faults, it loaded the machine the faults were timed on.) The newest
    value per key, as ``load_all`` gives it; a tombstone removes the key."""

    def __init__(self, bootstrap: str) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"checkpoint-tail-{unique()}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 50,
                # Its connection errors during a fault are expected: kept out of the output.
                "logger": logging.getLogger("tests.checkpoint_tail"),
            }
        )
        self._consumer.assign([TopicPartition(CHECKPOINT_TOPIC, 0, OFFSET_BEGINNING)])
        self.saved: dict[str, dict[str, Any]] = {}

    def read(self) -> dict[str, dict[str, Any]]:
        """Everything the topic holds so far (waits at most about 0.2 s for more)."""
        while messages := self._consumer.consume(1_000, 0.2):
            for message in messages:
                if message.error() is None:  # as load_all reads them
                    apply_record(self.saved, message.key(), message.value())
        return self.saved

    def close(self) -> None:
        self._consumer.close()


class Pipeline:
    """One Coinbase source and its sinks as processes, writing the embedded warehouse in
    ``tmp`` (one sink), or a stream target (``target="kafka:derived.{source}.matches"``)
    for several."""

    def __init__(
        self,
        tmp: Path,
        bootstrap: str,
        spawn: Spawn,
        exchange: CoinbaseExchange,
        *,
        kafka: str = "",
        staging: str = "replication_factor = 3\n",
        instances: tuple[str, ...] = (),
        target: str | None = None,
        partitions: int = 3,
    ) -> None:
        self.tmp = tmp
        self._checkpoints: CheckpointTail | None = None
        self.bootstrap = bootstrap
        self.exchange = exchange
        self.source = unique("cb")
        self._spawn = spawn
        resource = (
            f"[sources.{self.source}.resources.matches]\n"
            'schema_file = "coinbase/matches.avsc"\nkey = ["product_id"]\n'
            'id_fields = ["product_id", "trade_id"]\ntime_field = "time"\n'
            f"partitions = {partitions}\n"
        )
        if target is not None:
            resource += f'target = "{target.format(source=self.source)}"\n'
        self.config = tmp / "ingest.toml"
        self.config.write_text(
            textwrap.dedent(
                f"""
                data_dir = "{tmp}"
                [kafka]
                bootstrap = "{bootstrap}"
                session_timeout_ms = 6000
                heartbeat_interval_ms = 1000
                """
            )
            + kafka
            + f"[staging]\n{staging}"
            + f'[sources.{self.source}]\nconnector = "coinbase"\n'
            + f"instances = {json.dumps(list(instances))}\n"
            + f"[sources.{self.source}.runtime]\n"
            + "linger_s = 0.1\nidle_timeout_s = 5\nbackoff_initial_s = 0.1\nbackoff_max_s = 1\n"
            + resource
        )
        self.env = process_env(self.config, "COINBASE_")
        self.env.update(
            COINBASE_WS_URL=exchange.ws_url,
            COINBASE_REST_URL=exchange.rest_url,
            COINBASE_PRODUCTS=",".join(PRODUCTS),
            COINBASE_BACKFILL_GRACE_S="0.3",
            COINBASE_REST_MIN_INTERVAL_S="0",
        )
        self.first = {p: exchange.trade(p)[0].trade_id for p in PRODUCTS}
        self.sources: list[subprocess.Popen[str]] = []
        self.sinks: list[subprocess.Popen[str]] = []
        self._names: dict[int, str] = {}
        self.stopped: set[int] = set()
        """Workers the test stopped on purpose."""

    # --- processes ----------------------------------------------------------------

    def _worker(
        self, name: str, args: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        """A worker process whose output goes to ``<tmp>/<name>.log`` (a pipe nobody reads
        during a long fault could fill and block it)."""
        log = (self.tmp / f"{name}.log").open("w")
        try:
            process = self._spawn(
                [sys.executable, "-m", *args],
                cwd=ROOT,
                env={**self.env, **(env or {})},
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        finally:
            log.close()
        self._names[process.pid] = name
        return process

    def log(self, process: subprocess.Popen[str]) -> str:
        """What a worker this pipeline started has logged so far."""
        return (self.tmp / f"{self._names[process.pid]}.log").read_text(errors="replace")

    def log_tails(self, lines: int = 30) -> str:
        """The last ``lines`` of every worker's log, for a failure message. A worker still
        running is asked for its threads' stacks first (SIGUSR1): where it is waiting."""
        running = [p.pid for p in [*self.sources, *self.sinks] if p.poll() is None]
        if running:
            ask_for_stacks(*running)
            lines += 60
        return "\n".join(
            f"--- {self._names[p.pid]} (exit {p.poll()}):\n"
            + "\n".join(self.log(p).splitlines()[-lines:])
            for p in [*self.sources, *self.sinks]
        )

    def start_sink(self, *args: str) -> subprocess.Popen[str]:
        sink = self._worker(
            f"sink-{len(self.sinks) + 1}", ["sink_workers", "--source", self.source, *args]
        )
        self.sinks.append(sink)
        return sink

    def start_source(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        subscribed = len(self.exchange.subscribe_messages)
        source = self._worker(
            f"source-{len(self.sources) + 1}", ["source_workers", self.source, *args], env
        )
        self.sources.append(source)
        wait_for(
            lambda: len(self.exchange.subscribe_messages) > subscribed or source.poll() is not None,
            90,
            "the source to subscribe",
        )
        assert source.poll() is None, self.log(source)[-3000:]
        return source

    def running(self) -> list[subprocess.Popen[str]]:
        return [p for p in [*self.sources, *self.sinks] if p.poll() is None]

    def stop(self, process: subprocess.Popen[str], signum: int = signal.SIGTERM) -> int:
        """Stop a worker on purpose (SIGTERM, or ``signum``); its exit code."""
        self.stopped.add(process.pid)
        process.send_signal(signum)
        return process.wait(60)

    def exited_by_themselves(self) -> list[str]:
        """Workers that ended without the test stopping them, with their last log lines."""
        return [
            f"{self._names[p.pid]} exited {p.returncode}: {self.log(p)[-2000:]}"
            for p in [*self.sources, *self.sinks]
            if p.poll() is not None and p.pid not in self.stopped
        ]

    def start(self) -> Self:
        self.start_sink()
        self.start_source()
        return self

    # --- checkpoints -----------------------------------------------------------------

    def confirmed(self, instance: str = "") -> dict[str, int]:
        """The trade id per product of the checkpoint a sink confirmed (the resume point)
        for the source's process ``instance``, from the checkpoint topic as read so far."""
        if self._checkpoints is None:
            self._checkpoints = CheckpointTail(self.bootstrap)
        saved = self._checkpoints.read()
        point = resume_point(entries_in(saved, self.source, "matches", instance)) or {}
        products = point.get("products", {})
        return {p: int(v["trade_id"]) for p, v in products.items() if "trade_id" in v}

    def wait_confirmed_all(self, timeout_s: float = 180) -> None:
        """Until the sinks confirmed the exchange's last trade of every product."""
        last = {p: ids[-1] for p, ids in self.exchange.all_trade_ids().items()}
        wait_for(lambda: self.confirmed() == last, timeout_s, f"the sink to confirm {last}")

    # --- the end ----------------------------------------------------------------------

    def expected(self) -> list[tuple[str, int]]:
        return sorted(
            (p, i)
            for p, ids in self.exchange.all_trade_ids().items()
            for i in ids
            if i >= self.first[p]
        )

    def stop_all(self, timeout_s: float = 60) -> None:
        """SIGTERM every worker still running; each must exit 0. (Reading the checkpoints
        ends here too.)"""
        if self._checkpoints is not None:
            self._checkpoints.close()
            self._checkpoints = None
        running = self.running()
        for process in running:
            self.stopped.add(process.pid)
            process.send_signal(signal.SIGTERM)
        for process in running:
            process.wait(timeout_s)
            assert process.returncode == 0, self.log(process)[-3000:]

    def outcome(self, staged: list[tuple[str, int]]) -> Outcome:
        table = python_json(COUNT, str(self.tmp), f"{self.source}_matches")
        final = sorted(tuple(r) for r in table["final"])
        want = self.expected()
        assert final == want, (len(final), len(want), sorted(set(want) - set(final))[:10])
        assert table["distinct"] == len(want)
        assert set(staged) == set(want), sorted(set(want) - set(staged))[:10]
        return Outcome(
            expected=len(want),
            clickhouse_final=len(final),
            clickhouse_distinct=int(table["distinct"]),
            clickhouse_raw=int(table["raw"]),
            staged=len(staged),
            staged_distinct=len(set(staged)),
        )


def resumed_from(stderr: str) -> dict[str, int]:
    """The trade id per product a source said it resumes from (its start-up log line)."""
    found = re.search(r"resource matches: resuming from (\{.*\})", stderr)
    assert found, stderr[-2000:]
    checkpoint: dict[str, Any] = json.loads(found.group(1).replace("'", '"'))
    return {p: int(v["trade_id"]) for p, v in checkpoint.get("products", {}).items()}


def duplicates(values: list[Any]) -> int:
    return sum(n - 1 for n in Counter(values).values() if n > 1)


@dataclass(frozen=True)
class Delivered:
    """One record of a topic, as a reader outside every group sees it."""

    product: str
    trade_id: int
    event_id: str | None
    partition: int
    timestamp_ms: int


def read_topic(
    bootstrap: str, topic: str, timeout_s: float = 90, *, to_watermarks: bool = False
) -> list[Delivered]:
    """Every record of ``topic`` (all partitions, from the start), decoded, duplicates
    included: reads until nothing more arrives for 3 s (the writers have stopped), or, with
    ``to_watermarks`` (Apache Kafka, whose high watermarks are right; Tansu's may not be),
    until every partition is read up to its high watermark as of the start."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from staging.decoder import EnvelopeDecoder, FixedHeaders
    from staging.schemas import SchemaCatalog

    catalog = SchemaCatalog.default()
    catalog.load_all()
    decoder = EnvelopeDecoder(catalog)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique("read"),
            # Its connection errors while a broker is down are expected: kept out of the output.
            "logger": logging.getLogger("tests.read_topic"),
        }
    )
    found: list[Delivered] = []
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        ends = (
            {
                p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in partitions
            }
            if to_watermarks
            else None
        )
        read_to = dict.fromkeys(partitions, 0)
        deadline, quiet = time.monotonic() + timeout_s, time.monotonic() + 3
        while time.monotonic() < min(deadline, quiet):
            if ends is not None and all(read_to[p] >= end for p, end in ends.items()):
                break
            for m in consumer.consume(1_000, 0.5):
                if m.error() is not None:
                    continue
                read_to[m.partition()] = m.offset() + 1
                record = decoder.decode(
                    topic,
                    m.partition(),
                    m.offset(),
                    m.key(),
                    m.value(),
                    FixedHeaders(m.headers()),
                )
                found.append(
                    Delivered(
                        record.record["product_id"],
                        record.record["trade_id"],
                        record.event_id,
                        m.partition(),
                        m.timestamp()[1],
                    )
                )
                quiet = time.monotonic() + 3
    finally:
        consumer.close()
    return found


def pauses(records: list[Delivered], at_least_s: float = 1.0) -> list[float]:
    """The gaps of at least ``at_least_s`` between consecutive deliveries to a topic (by the
    writer's timestamps), longest first: how long a rebalance stopped delivery."""
    times = sorted(r.timestamp_ms for r in records)
    gaps = [(b - a) / 1000 for a, b in itertools.pairwise(times)]
    return sorted((g for g in gaps if g >= at_least_s), reverse=True)
