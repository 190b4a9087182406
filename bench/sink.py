"""Sink throughput: our sink loop against the raw limits of its parts.

Run as ``python bench/sink.py [--records N] [--repeats R] [--chunk C]``
(quick check: ``--records 20000 --repeats 1``; add ``--profile`` for a cProfile
of our loop). It starts the embedded Tansu broker, or uses
``INGEST_KAFKA_BOOTSTRAP`` when that is set, and opens ClickHouse's engine
in-process (chDB, on one temporary directory for the whole run: a process may
open only one chDB path), or the server in ``INGEST_CLICKHOUSE_DSN`` (other
``INGEST_CLICKHOUSE_*`` variables are passed on too). It builds N realistic
Coinbase trades (``schemas/coinbase/matches.avsc``, 9 fields), and in every
repeat stages them, untimed, with ``session.writer().write_batch`` in writes
of 5,000 rows to a fresh 3-partition topic, as a source does. Then it
measures, in one process and on one Python thread, rows per second of:

raw (what the libraries alone can do)
  consume  a plain confluent-kafka Consumer in a fresh group reading the staged
           topic with ``consume(C, 0.2)`` (fetch.wait.max.ms=100 and
           fetch.queue.backoff.ms=20, as our reader), taking each value.
  decode   fastavro ``schemaless_reader`` per staged value, past its 10-byte
           single-object header (timestamps become aware datetimes and
           decimals Decimals, as in our reader).
  insert   clickhouse-connect ``client.insert(..., column_oriented=True)`` of
           pre-built columns (the decoded values) in chunks of C rows into a
           fresh table made by ``table_spec`` + ``ClickHouseTableWriter.ensure``,
           with async_insert=0, insert_deduplicate=1 and a token per chunk.

ours (the project's sink loop, in-process)
  sink     ``SinkWorker(session, {topic: TableTarget(ClickHouseTableWriter)},
           chunk_size=C).run()`` on a fresh group and a fresh table: consume,
           decode into StagedRecords, group per partition, build columns, one
           deduplicated insert per partition of each batch, commit.

Timing: the clock of a consumer (raw consume, ours) starts once its first
batch has been handled (for ours: committed), so the consumer-group join
(seconds on Tansu) is not counted, and stops when all N records were counted
(for ours: committed; watermarks are wrong on Tansu, so none are used). Ours
is observed, not changed: a thin wrapper around the session's reader counts
each commit and stops the worker once all N records are committed, and one
around the table writer adds up the time spent inside inserts. Nothing is
produced while timing, so no producer warm-up is needed; instead the first
insert of the process (about 0.25 s slower than the next: client and engine
start) is made once, untimed, into a throwaway table. The fixtures (trades,
values, columns) are held in tuples, which the garbage collector stops
tracking, so that they do not slow down the full collections that happen
during ours (a real sink does not hold them). Every repeat uses fresh topics,
groups, databases and tables; the four stages are interleaved and their order
rotates from one repeat to the next, because CPU speed here drifts by up to
~2.8x between runs (see /work/shared/ENVIRONMENT.md). After each insert stage
the table's row count is checked. Progress goes to stderr, the table to
stdout.

How to read the table: compare figures within one run only. "ratio" is ours
over the slowest raw stage. One thread that pays consume, decode and insert
for every record can reach at most 1 / (1/consume + 1/decode + 1/insert);
that one-thread bound is printed, and ours over it is the share of the bound
our loop reaches (the rest is our own per-record work: records, grouping,
columns, commits, metrics). The issue's aim is >= 100,000 rows/s per sink
process on 2 cores; a one-thread bound below it means the aim needs both
cores (or a cheaper decode), whatever the loop does. The breakdown splits
ours per row into time inside inserts (ours inserts each partition of a batch
on its own, so about C/3 rows per insert against C for raw insert), inside
commits, and the rest (consume, decode, grouping, columns, metrics). Peak RSS
of this process includes the chDB engine when it is embedded.
"""

from __future__ import annotations

import os
import sys

# bench/ holds staging.py, named like the ``staging`` package, and ``python
# bench/sink.py`` puts bench/ first on sys.path, where it would shadow that
# package: drop it.
if os.path.abspath(sys.path[0] or os.curdir) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

import argparse
import cProfile
import gc
import io
import pstats
import random
import resource
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import confluent_kafka
import fastavro
from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer

from durable_ingest.config import ClickHouseSettings, KafkaSettings, settings_from
from durable_ingest.stack import EmbeddedBroker, free_port
from durable_ingest.warehouse import open_warehouse
from sink_workers.clickhouse.writer import ClickHouseTableWriter
from sink_workers.tables import TableSpec, table_spec
from sink_workers.worker import SinkWorker, TableTarget
from staging.codec import HEADER_SIZE
from staging.envelope import encode_value
from staging.kafka.provider import KafkaStagingProvider
from staging.protocol import StagedBatch, StagingContext
from staging.resource import StagedResource
from staging.schemas import SchemaCatalog, StagedSchema

SCHEMA_PATH = "coinbase/matches.avsc"
SOURCE = "bench"
PARTITIONS = 3
ORDER_BY = ("product_id", "trade_id")
STAGE_CHUNK = 5_000
"""Rows per ``write_batch`` when staging (untimed), as a source writes."""
AIM = 100_000
"""The issue's aim: rows/s per sink process on 2 cores."""
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


def column_chunks(
    records: Sequence[dict[str, Any]], names: Sequence[str], chunk: int
) -> tuple[tuple[tuple[Any, ...], ...], ...]:
    """Decoded records as one sequence per column, cut into chunks of ``chunk`` rows."""
    columns = [tuple(r[name] for r in records) for name in names]
    return tuple(tuple(c[i : i + chunk] for c in columns) for i in range(0, len(records), chunk))


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


def raw_decode(parsed: Any, values: Sequence[bytes]) -> float:
    reader = fastavro.schemaless_reader
    new_buffer = io.BytesIO
    out: list[Any] = []
    append = out.append

    def run() -> None:
        for value in values:
            buf = new_buffer(value)
            buf.seek(HEADER_SIZE)
            append(reader(buf, parsed, None))

    return timed(len(values), run)


def raw_insert(client: Client, spec: TableSpec, chunks: Sequence[Sequence[Sequence[Any]]]) -> float:
    names = spec.column_names
    prefix = uuid.uuid4().hex

    def run() -> None:
        for i, columns in enumerate(chunks):
            client.insert(
                spec.table,
                columns,
                column_names=names,
                database=spec.database,
                column_oriented=True,
                settings={
                    "async_insert": 0,
                    "insert_deduplicate": 1,
                    "insert_deduplication_token": f"raw:{prefix}:{i}",
                },
            )

    return timed(sum(len(c[0]) for c in chunks), run)


# -- ours: the real worker, observed -----------------------------------------


class WatchedReader:
    """The session's reader; each commit feeds the window, the last one stops the loop."""

    def __init__(self, reader: Any, window: Window, on_start: Callable[[], None]) -> None:
        self._reader = reader
        self._window = window
        self._on_start = on_start
        self.commit_s = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)

    def commit(self, batch: StagedBatch) -> Any:
        window = self._window
        started = time.perf_counter()
        committed = self._reader.commit(batch)
        if window.started is not None:
            self.commit_s += time.perf_counter() - started
        first = window.started is None
        if window.add(len(batch.records) + len(batch.corrupt)):
            self._reader.stop()  # as SinkWorker.stop(): ends the run after this batch
        if first:
            self._on_start()
        return committed


class WatchedSession:
    """A staging session whose reader is a :class:`WatchedReader`."""

    def __init__(self, session: Any, window: Window, on_start: Callable[[], None]) -> None:
        self._session = session
        self._window = window
        self._on_start = on_start
        self.watched: WatchedReader | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def reader(self) -> WatchedReader:
        self.watched = WatchedReader(self._session.reader(), self._window, self._on_start)
        return self.watched


class TimedTable:
    """A table writer that adds up the time spent inside inserts once the window runs."""

    def __init__(self, writer: ClickHouseTableWriter, window: Window) -> None:
        self._writer = writer
        self._window = window
        self.spec = writer.spec
        self.seconds = 0.0

    def insert(self, columns: Sequence[Sequence[Any]], token: str) -> int:
        started = time.perf_counter()
        rows = self._writer.insert(columns, token)
        if self._window.started is not None:
            self.seconds += time.perf_counter() - started
        return rows


@dataclass(frozen=True, slots=True)
class SinkRun:
    rate: float
    records: int
    """Records inside the timed window (all but the first batch)."""
    seconds: float
    insert_s: float
    commit_s: float


def ours_sink(
    provider: KafkaStagingProvider,
    writer: ClickHouseTableWriter,
    res: StagedResource,
    n: int,
    chunk: int,
    on_start: Callable[[], None] = lambda: None,
) -> SinkRun:
    window = Window(n)
    table = TimedTable(writer, window)
    with provider.allocate_session(context(res)) as session:
        watched = WatchedSession(session, window, on_start)
        worker = SinkWorker(watched, {res.topic.name: TableTarget(table)}, chunk_size=chunk)
        stats = worker.run(idle_timeout_s=IDLE_TIMEOUT_S)
    if stats.rows_written != n or stats.dead_letters:
        raise RuntimeError(f"ours: wrote {stats.rows_written} of {n}, {stats.dead_letters} DLQ")
    commit_s = watched.watched.commit_s if watched.watched is not None else 0.0
    return SinkRun(window.rate(), window.timed_records, window.seconds, table.seconds, commit_s)


def bench_resource(schema: StagedSchema) -> StagedResource:
    return StagedResource.define(
        source=SOURCE,
        name=f"matches_{uuid.uuid4().hex[:12]}",
        schema=schema,
        key=("product_id",),
        id_fields=ORDER_BY,
        time_field="time",
        partitions=PARTITIONS,
    )


def context(*resources: StagedResource) -> StagingContext:
    return StagingContext(source=SOURCE, resources=resources, group_id=f"bench-{uuid.uuid4().hex}")


# -- the run -------------------------------------------------------------------

RAW_CONSUME = "raw consume (Consumer)"
RAW_DECODE = "raw decode (fastavro reader)"
RAW_INSERT = "raw insert (column-oriented)"
OURS = "ours (SinkWorker.run)"
RAW = (RAW_CONSUME, RAW_DECODE, RAW_INSERT)
STAGES = (*RAW, OURS)


@dataclass
class Bench:
    bootstrap: str
    client: Client
    rows: tuple[dict[str, Any], ...]
    chunk: int
    catalog: SchemaCatalog = field(default_factory=SchemaCatalog.default)
    results: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    sink_runs: list[SinkRun] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.schema = self.catalog.load(SCHEMA_PATH)
        self.provider = KafkaStagingProvider(
            KafkaSettings(bootstrap=self.bootstrap),
            catalog=self.catalog,
            max_record_bytes=1_000_000,
        )
        # Fixtures are kept in tuples of atomic values, which the garbage collector
        # stops tracking: held in lists, they would make every full collection
        # during ours slower (by ~25 ms at 200k rows), which a real sink does not pay.
        # The staged values, as our writer encodes them, and decoded once for the columns.
        self.values = tuple(encode_value(self.schema, row) for row in self.rows)
        parsed = self.schema.parsed
        decoded = [
            fastavro.schemaless_reader(io.BytesIO(v[HEADER_SIZE:]), parsed, None)
            for v in self.values
        ]
        names = [f["name"] for f in parsed["fields"]]
        self.chunks = column_chunks(decoded, names, self.chunk)
        self.database = ""
        self.resource: StagedResource | None = None

    @property
    def n(self) -> int:
        return len(self.rows)

    def record(self, stage: str, rate: float, note: str = "") -> None:
        self.results[stage].append(rate)
        print(f"    {stage:<30} {rate:>12,.0f} rows/s{note}", file=sys.stderr, flush=True)

    def table(self, kind: str) -> ClickHouseTableWriter:
        spec = table_spec(
            self.schema.parsed["fields"],
            database=self.database,
            table=f"{kind}_{uuid.uuid4().hex[:12]}",
            order_by=ORDER_BY,
        )
        writer = ClickHouseTableWriter(self.client, spec)
        writer.ensure()
        return writer

    def check_rows(self, spec: TableSpec) -> None:
        rows = self.client.command(f"SELECT count() FROM {spec.qualified}")
        if int(rows) != self.n:
            raise RuntimeError(f"{spec.qualified} holds {rows} rows, not {self.n}")

    def stage(self) -> StagedResource:
        """Stage the trades to a fresh topic, untimed, as a source writes them."""
        res = bench_resource(self.schema)
        with self.provider.allocate_session(context(res)) as session:
            writer = session.writer()
            for start in range(0, self.n, STAGE_CHUNK):
                part = self.rows[start : start + STAGE_CHUNK]
                writer.write_batch(part, checkpoint={"trade_id": part[-1]["trade_id"]})
        return res

    def raw_consume(self) -> None:
        assert self.resource is not None
        topic = self.resource.topic.name
        self.record(RAW_CONSUME, raw_consume(self.bootstrap, topic, self.n, self.chunk))

    def raw_decode(self) -> None:
        self.record(RAW_DECODE, raw_decode(self.schema.parsed, self.values))

    def raw_insert(self) -> None:
        writer = self.table("raw")
        self.record(RAW_INSERT, raw_insert(self.client, writer.spec, self.chunks))
        self.check_rows(writer.spec)

    def ours(self) -> None:
        assert self.resource is not None
        writer = self.table("ours")
        run = ours_sink(self.provider, writer, self.resource, self.n, self.chunk)
        self.sink_runs.append(run)
        share = run.insert_s / run.seconds if run.seconds else float("nan")
        self.record(OURS, run.rate, f"  ({share:.0%} in inserts)")
        self.check_rows(writer.spec)

    def warm_up(self) -> None:
        """One untimed insert: the first of a process costs ~0.25 s more (client and engine start)."""
        self.database = f"bench_sink_{uuid.uuid4().hex[:12]}"
        try:
            raw_insert(self.client, self.table("warmup").spec, self.chunks[:1])
        finally:
            self.client.command(f"DROP DATABASE IF EXISTS `{self.database}`")

    def run(self, repeats: int) -> None:
        self.warm_up()
        stages: list[Callable[[], None]] = [self.raw_consume, self.raw_decode, self.raw_insert]
        stages.append(self.ours)
        for step in range(repeats):
            order = stages[step % len(stages) :] + stages[: step % len(stages)]
            names = ", ".join(s.__name__ for s in order)
            print(f"  repeat {step + 1}/{repeats}: staging...", file=sys.stderr, flush=True)
            self.resource = self.stage()
            self.database = f"bench_sink_{uuid.uuid4().hex[:12]}"
            print(f"  repeat {step + 1}/{repeats} ({names})", file=sys.stderr, flush=True)
            try:
                for stage in order:
                    gc.collect()
                    stage()
            finally:
                self.client.command(f"DROP DATABASE IF EXISTS `{self.database}`")

    def profile(self, top: int) -> None:
        """One more run of ours under cProfile, from its first commit to its last."""
        print("  profiling ours...", file=sys.stderr, flush=True)
        self.resource = self.stage()
        self.database = f"bench_sink_{uuid.uuid4().hex[:12]}"
        profiler = cProfile.Profile()
        try:
            gc.collect()
            run = ours_sink(
                self.provider,
                self.table("ours"),
                self.resource,
                self.n,
                self.chunk,
                on_start=profiler.enable,
            )
        finally:
            profiler.disable()
            self.client.command(f"DROP DATABASE IF EXISTS `{self.database}`")
        print_profile(pstats.Stats(profiler), run, top)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "-"


def report(bench: Bench, args: argparse.Namespace, warehouse: str, broker_pid: int | None) -> None:
    med = {stage: median(rates) for stage, rates in bench.results.items()}
    slowest = min(RAW, key=lambda s: med[s])
    bound = 1 / sum(1 / med[s] for s in RAW)
    ours = med[OURS]
    print()
    print(
        f"durable-ingest sink benchmark: {bench.n:,} trades x {args.repeats} repeat(s), "
        f"batches of {bench.chunk:,}, broker {bench.bootstrap}, warehouse {warehouse}"
    )
    print(
        f"python {sys.version.split()[0]}, confluent-kafka {confluent_kafka.__version__} "
        f"(librdkafka {confluent_kafka.libversion()[0]}), fastavro {fastavro.__version__}, "
        f"clickhouse-connect {_version('clickhouse-connect')}, chdb {_version('chdb')}, "
        f"{os.cpu_count()} CPUs"
    )
    print()
    print(f"{'stage':<30} {'median rows/s':>13}  {'us/row':>6}  {'ratio':>5}  runs (rows/s)")
    print("-" * 100)
    for stage in STAGES:
        ratio = f"{med[stage] / med[slowest]:.2f}" if stage == OURS else ""
        runs = ", ".join(f"{r:,.0f}" for r in bench.results[stage])
        print(f"{stage:<30} {med[stage]:>13,.0f}  {1e6 / med[stage]:>6.2f}  {ratio:>5}  {runs}")
    print()
    print(
        f"ratio: ours over the slowest raw stage, {slowest.split(' (')[0]} "
        f"({med[slowest]:,.0f} rows/s)"
    )
    print(
        f"one-thread bound 1/(1/consume + 1/decode + 1/insert): {bound:,.0f} rows/s "
        f"({1e6 / bound:.2f} us/row); ours reaches {ours / bound:.2f} of it"
    )
    verdict = "reached" if ours >= AIM else "not reached"
    print(
        f"aim: >= {AIM:,} rows/s per sink process on 2 cores: {verdict} by ours "
        f"({ours / AIM:.2f} of it); the one-thread bound is {bound / AIM:.2f} of it"
    )
    runs = bench.sink_runs
    if runs:
        per = {
            "insert": median([r.insert_s / r.records * 1e6 for r in runs]),
            "commit": median([r.commit_s / r.records * 1e6 for r in runs]),
            "rest": median([(r.seconds - r.insert_s - r.commit_s) / r.records * 1e6 for r in runs]),
        }
        raw_rest = 1e6 / med[RAW_CONSUME] + 1e6 / med[RAW_DECODE]
        print(
            f"ours per row (medians): {per['insert']:.2f} us in inserts "
            f"(raw insert {1e6 / med[RAW_INSERT]:.2f}), {per['commit']:.2f} us in commits, "
            f"{per['rest']:.2f} us the rest: consume, decode, records, grouping, columns "
            f"(raw consume + decode {raw_rest:.2f})"
        )
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    line = f"peak RSS: this process {peak_mib:,.0f} MiB"
    if warehouse.startswith("chdb"):
        line += " (chDB engine included)"
    broker_hwm = _vm_hwm_mib(broker_pid)
    if broker_hwm is not None:
        line += f", embedded broker {broker_hwm:,.0f} MiB"
    print(line)


def print_profile(stats: pstats.Stats, run: SinkRun, top: int) -> None:
    """Own and cumulative time per timed row of the heaviest functions."""
    entries = stats.stats
    total = sum(tt for _cc, _nc, tt, _ct, _callers in entries.values())
    per_row = 1e6 / run.records
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep

    def name(key: tuple[str, int, str]) -> str:
        path, line, func = key
        if path == "~":
            return func
        path = path.removeprefix(root)
        for marker in ("site-packages" + os.sep, "lib" + os.sep + "python3"):
            if marker in path:
                path = path.split(marker, 1)[1]
        return f"{path}:{line} {func}"

    print()
    print(
        f"cProfile of ours, first commit to last: {run.records:,} rows, "
        f"{run.rate:,.0f} rows/s under the profiler; {total * per_row:.2f} us/row profiled"
    )
    for title, index in (("own time", 2), ("cumulative time", 3)):
        print()
        print(f"top {top} by {title} (us/row, calls/row):")
        ranked = sorted(entries.items(), key=lambda item: item[1][index], reverse=True)
        for key, value in ranked[:top]:
            print(f"  {value[index] * per_row:>7.2f}  {value[1] / run.records:>6.2f}  {name(key)}")


def _vm_hwm_mib(pid: int | None) -> float | None:
    if pid is None:
        return None
    with suppress(OSError, ValueError), open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


@contextmanager
def kafka_bootstrap() -> Iterator[tuple[str, int | None]]:
    external = os.environ.get("INGEST_KAFKA_BOOTSTRAP")
    if external:
        yield external, None
        return
    with EmbeddedBroker(free_port()) as broker:
        yield broker.bootstrap, broker.pid


@contextmanager
def warehouse_client() -> Iterator[tuple[Client, str]]:
    """A client on INGEST_CLICKHOUSE_DSN, or on chDB in one temporary directory."""
    prefix = "INGEST_CLICKHOUSE_"
    given = {
        k.removeprefix(prefix).lower(): v for k, v in os.environ.items() if k.startswith(prefix)
    }
    with tempfile.TemporaryDirectory(prefix="bench-sink-") as tmp:
        data = {"clickhouse": given} if "dsn" in given else {"data_dir": tmp}
        settings: ClickHouseSettings = settings_from(data, "bench").clickhouse
        client = open_warehouse(settings)
        try:
            path = settings.embedded_path
            yield client, "chdb (temporary directory)" if path else settings.dsn.split("?")[0]
        finally:
            client.close()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000, help="trades per stage")
    parser.add_argument("--repeats", type=int, default=3, help="runs of every stage")
    parser.add_argument("--chunk", type=int, default=5_000, help="rows per read batch and insert")
    parser.add_argument(
        "--profile",
        type=int,
        nargs="?",
        const=25,
        default=0,
        metavar="TOP",
        help="then run ours once more under cProfile and print the TOP (25) functions",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.chunk < 1:
        parser.error("--repeats and --chunk must be >= 1")
    if args.records < 2 * args.chunk:
        parser.error("--records must be at least twice --chunk (the first batch is untimed)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"building {args.records:,} trades...", file=sys.stderr, flush=True)
    rows = tuple(build_trades(args.records))
    with kafka_bootstrap() as (bootstrap, broker_pid), warehouse_client() as (client, where):
        print(f"broker {bootstrap}, warehouse {where}", file=sys.stderr, flush=True)
        bench = Bench(bootstrap, client, rows, args.chunk)
        bench.run(args.repeats)
        report(bench, args, where, broker_pid)
        if args.profile:
            bench.profile(args.profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
