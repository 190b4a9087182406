"""Shared pieces of the benchmarks in this folder.

Not a benchmark itself: the fixtures (realistic Coinbase trades), the timing
helpers (:class:`Window` for consumers, :func:`timed` for the rest), the raw
stages both benchmarks measure (plain consume, fastavro decode), the fresh
staged resources and contexts each repeat uses, and the pieces of the report
(medians, library versions, peak RSS) and of the command line they share.

The scripts import it as ``benchlib`` (``python bench/<script>.py`` puts
bench/ first on ``sys.path``). No file here may be named like a package of the
project (``staging``, ``sink_workers``...): it would shadow that package.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import confluent_kafka
import fastavro
from confluent_kafka import Consumer

from durable_ingest.stack import make_broker
from staging.protocol import StagingContext
from staging.resource import StagedResource
from staging.schemas import StagedSchema

SCHEMA_PATH = "coinbase/matches.avsc"
SOURCE = "bench"
PARTITIONS = 3
ID_FIELDS = ("product_id", "trade_id")
"""The fields that identify a trade (its event id; the sink's table order)."""
POLL_TIMEOUT_S = 0.2
IDLE_TIMEOUT_S = 60.0
"""How long a consumer may see nothing (group join included) before giving up."""

# product, start price, price decimals, size decimals, mean size, weight
PRODUCTS = (
    ("BTC-USD", 64_250.0, 2, 8, 0.05, 40),
    ("ETH-USD", 3_420.0, 2, 8, 0.8, 30),
    ("SOL-USD", 148.0, 2, 8, 12.0, 15),
    ("DOGE-USD", 0.1612, 5, 1, 4_000.0, 10),
    ("USDT-USD", 1.0001, 5, 2, 2_500.0, 5),
)


# -- data ----------------------------------------------------------------------


def build_trades(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """``n`` Coinbase trades: a random walk per product, ids increasing."""
    rng = random.Random(seed)
    names = [p[0] for p in PRODUCTS]
    weights = [p[5] for p in PRODUCTS]
    spec = {p[0]: p for p in PRODUCTS}
    price = {p[0]: p[1] for p in PRODUCTS}
    trade_id = {name: 700_000_000 + 10_000_000 * i for i, name in enumerate(names)}
    sequence = 91_000_000_000
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    trades = []
    for product in rng.choices(names, weights, k=n):
        _, _, price_dp, size_dp, mean_size, _ = spec[product]
        price[product] *= 1 + rng.gauss(0, 0.0002)
        size = max(rng.expovariate(1 / mean_size), 10.0**-size_dp)
        trade_id[product] += 1
        sequence += rng.randint(1, 40)
        now += timedelta(microseconds=rng.randint(1, 4_000))
        trades.append(
            {
                "product_id": product,
                "trade_id": trade_id[product],
                "sequence": sequence,
                "time": now,
                "side": "buy" if rng.random() < 0.5 else "sell",
                "price": Decimal(f"{price[product]:.{price_dp}f}"),
                "size": Decimal(f"{size:.{size_dp}f}"),
                "maker_order_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "taker_order_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            }
        )
    return trades


# -- timing helpers ------------------------------------------------------------


@dataclass(slots=True)
class Window:
    """Counts records and times them from the end of the first batch to the last record."""

    total: int
    count: int = 0
    base: int = 0
    started: float | None = None
    ended: float = 0.0

    def add(self, n: int) -> bool:
        """Count ``n`` handled records; True once all ``total`` are in."""
        self.count += n
        now = time.perf_counter()
        if self.started is None:
            if n:
                self.started, self.base = now, self.count
        else:
            self.ended = now
        return self.count >= self.total

    @property
    def seconds(self) -> float:
        return self.ended - self.started if self.started is not None else 0.0

    @property
    def timed_records(self) -> int:
        return self.count - self.base

    def rate(self) -> float:
        if self.count < self.total:
            raise RuntimeError(f"read {self.count} of {self.total} records before going idle")
        if self.seconds <= 0:
            return float("nan")
        return self.timed_records / self.seconds


def timed(n: int, run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return n / (time.perf_counter() - started)


# -- raw stages ----------------------------------------------------------------


def raw_consume(bootstrap: str, topic: str, n: int, chunk: int) -> float:
    """A plain Consumer in a fresh group reading ``topic`` until ``n`` values were taken."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-raw-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1500,
            "fetch.wait.max.ms": 100,
            "fetch.queue.backoff.ms": 20,
        }
    )
    consumer.subscribe([topic])
    window = Window(n)
    idle_since = time.monotonic()
    try:
        while time.monotonic() - idle_since < IDLE_TIMEOUT_S:
            messages = consumer.consume(chunk, POLL_TIMEOUT_S)
            got = 0
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.fatal():
                        raise RuntimeError(f"raw consume: {error}")
                    continue
                message.value()
                got += 1
            if got:
                idle_since = time.monotonic()
                if window.add(got):
                    break
    finally:
        consumer.close()
    return window.rate()


def raw_decode(parsed: Any, payloads: Sequence[bytes], skip: int = 0) -> float:
    """fastavro ``schemaless_reader`` per payload, past its first ``skip`` bytes.

    Bare Avro bodies need no skip; staged values skip their single-object header.
    """
    reader = fastavro.schemaless_reader
    new_buffer = io.BytesIO
    out: list[Any] = []
    append = out.append

    def bodies() -> None:
        for body in payloads:
            append(reader(new_buffer(body), parsed, None))

    def values() -> None:
        for value in payloads:
            buf = new_buffer(value)
            buf.seek(skip)
            append(reader(buf, parsed, None))

    return timed(len(payloads), values if skip else bodies)


# -- staged resources ----------------------------------------------------------


def bench_resource(schema: StagedSchema) -> StagedResource:
    """A fresh trades resource (its own topic) of ``PARTITIONS`` partitions."""
    return StagedResource.define(
        source=SOURCE,
        name=f"matches_{uuid.uuid4().hex[:12]}",
        schema=schema,
        key=("product_id",),
        id_fields=ID_FIELDS,
        time_field="time",
        partitions=PARTITIONS,
    )


def context(*resources: StagedResource) -> StagingContext:
    """A staging context on ``resources`` with a fresh consumer group."""
    return StagingContext(source=SOURCE, resources=resources, group_id=f"bench-{uuid.uuid4().hex}")


# -- report --------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def package_version(package: str) -> str:
    """The installed version of ``package``, or ``-``."""
    try:
        return version(package)
    except PackageNotFoundError:
        return "-"


def versions_line(*extra: str) -> str:
    """Python and library versions (``extra`` after fastavro) and the CPU count."""
    parts = [
        f"python {sys.version.split()[0]}",
        f"confluent-kafka {confluent_kafka.__version__} "
        f"(librdkafka {confluent_kafka.libversion()[0]})",
        f"fastavro {fastavro.__version__}",
        *extra,
        f"{os.cpu_count()} CPUs",
    ]
    return ", ".join(parts)


def peak_rss_line(broker_pid: int | None, note: str = "") -> str:
    """Peak RSS of this process (``note`` after it) and of the broker it started, if any."""
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    line = f"peak RSS: this process {peak_mib:,.0f} MiB{note}"
    broker_hwm = vm_hwm_mib(broker_pid)
    if broker_hwm is not None:
        line += f", broker {broker_hwm:,.0f} MiB"
    return line


def vm_hwm_mib(pid: int | None) -> float | None:
    """Peak resident memory of process ``pid`` in MiB, from /proc (None if unknown)."""
    if pid is None:
        return None
    with suppress(OSError, ValueError), open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


# -- setup ---------------------------------------------------------------------


ENGINES = {"tansu": "Tansu (embedded)", "kafka": "Apache Kafka (one KRaft node)"}


def engines(args: argparse.Namespace) -> list[str]:
    """The brokers ``--engine`` names, in the order they run (``both``: Tansu, then Kafka)."""
    return list(ENGINES) if args.engine == "both" else [args.engine]


@contextmanager
def kafka_bootstrap(engine: str = "tansu") -> Iterator[tuple[str, int | None]]:
    """``INGEST_KAFKA_BOOTSTRAP`` (pid None), or a broker of ``engine`` started for the run
    (Tansu, or one Apache Kafka node with its data in a temporary folder) and its pid."""
    external = os.environ.get("INGEST_KAFKA_BOOTSTRAP")
    if external:
        yield external, None
        return
    with tempfile.TemporaryDirectory(prefix="bench-broker-") as folder:
        broker = make_broker(engine, Path(folder), 0)
        broker.start()
        try:
            pids = broker.pids()
            yield broker.bootstrap, pids[0] if pids else None
        finally:
            broker.stop()


def engine_banner(engine: str, bootstrap: str) -> str:
    name = (
        "external (INGEST_KAFKA_BOOTSTRAP)"
        if os.environ.get("INGEST_KAFKA_BOOTSTRAP")
        else ENGINES[engine]
    )
    return f"== broker: {name} at {bootstrap}"


def arg_parser(description: str, chunk_help: str) -> argparse.ArgumentParser:
    """A parser with the options every benchmark takes: --records, --repeats, --chunk."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--records", type=int, default=200_000, help="trades per stage")
    parser.add_argument("--repeats", type=int, default=3, help="runs of every stage")
    parser.add_argument("--chunk", type=int, default=5_000, help=chunk_help)
    parser.add_argument(
        "--engine",
        choices=[*ENGINES, "both"],
        default="tansu",
        help="the broker to run on: tansu (default), kafka (Apache Kafka, one KRaft node; "
        "needs Java 17), or both, one after the other in this run",
    )
    return parser


def parse_checked(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, first_batch: str
) -> argparse.Namespace:
    """Parse and check the common options; ``first_batch`` names the untimed first batch."""
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.chunk < 1:
        parser.error("--repeats and --chunk must be >= 1")
    if args.records < 2 * args.chunk:
        parser.error(f"--records must be at least twice --chunk (the {first_batch} is untimed)")
    return args
