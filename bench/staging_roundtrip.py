"""Staging throughput: our Kafka staging layer against the raw limits of its parts.

Run as ``python bench/staging_roundtrip.py [--records N] [--repeats R] [--chunk C]``
(quick check: ``--records 20000 --repeats 1``). It starts the embedded Tansu
broker, or uses ``INGEST_KAFKA_BOOTSTRAP`` when that is set, builds N realistic
Coinbase trades (``schemas/coinbase/matches.avsc``) and measures, in one
process and on one Python thread, records per second of:

raw (what the libraries alone can do)
  encode   fastavro ``schemaless_writer`` per record into a fresh BytesIO.
  decode   fastavro ``schemaless_reader`` per record (timestamps become aware
           datetimes and decimals Decimals, as in our reader).
  produce  a plain confluent-kafka Producer (idempotent, acks=all,
           linger.ms=5) sending pre-encoded single-object values keyed by
           product to a fresh 3-partition topic, with one delivery callback
           per record that only looks for errors, then ``flush()``.
  consume  a plain Consumer in a fresh group reading that topic with
           ``consume(C, 0.2)``, taking each record's value and counting.

ours (the project API, as a source and a sink use it)
  write    ``session.writer().write_batch(records)`` in chunks of C records:
           validation, Avro encoding, key, event id, CloudEvents headers,
           produce, and a flush that waits for every delivery report.
  read     ``session.reader().iter_batches(C)`` decoding into StagedRecords,
           with ``reader.commit(batch)`` after every batch, as a sink does.
  read, no commit   the same without commits (another fresh group).

Raw records are the bare Avro value (about 140 bytes) and a key; ours are
envelopes that also carry eight CloudEvents headers (about 400 bytes in all),
so the gap between raw and ours includes that wire format.

Each producer (raw and ours) first delivers one record to a side topic,
untimed, so that its start (about 0.5 s on Tansu: connection and idempotent
producer id) is not counted. Each consumer's clock starts once its first
batch has been handled, so the consumer-group join (seconds on Tansu) is not
counted, and stops when all N records were counted (watermarks are wrong on
Tansu, so none are used). Every repeat uses fresh topics and groups; the
stages are interleaved and their order rotates from one repeat to the next,
because CPU speed here drifts by up to ~2.8x between runs (see
/work/shared/ENVIRONMENT.md). Progress goes to stderr, the table to stdout.

How to read the table: compare figures within one run only. The ratio of a
write-side "ours" stage is its median over min(raw encode, raw produce);
of a read-side stage, over min(raw decode, raw consume). The target is
>= 0.60. Our write does encoding and producing one after the other on one
thread, so even a free pipeline of both raw stages would reach only
1 / (1/encode + 1/produce); that bound is printed as well.
"""

from __future__ import annotations

import argparse
import gc
import io
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import benchlib
import fastavro
from confluent_kafka import KafkaError, Message, Producer

from foundation.config import KafkaSettings
from staging.kafka.admin import TopicAdmin
from staging.kafka.provider import KafkaStagingProvider
from staging.resource import StagedResource, TopicSpec
from staging.schemas import SchemaCatalog

TARGET = 0.60


# -- data ----------------------------------------------------------------------


def encode_bodies(parsed: Any, rows: Sequence[dict[str, Any]]) -> list[bytes]:
    out = []
    for row in rows:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, row)
        out.append(buf.getvalue())
    return out


# -- raw stages ----------------------------------------------------------------


def raw_encode(parsed: Any, rows: Sequence[dict[str, Any]]) -> float:
    writer = fastavro.schemaless_writer
    new_buffer = io.BytesIO
    out: list[bytes] = []
    append = out.append

    def run() -> None:
        for row in rows:
            buf = new_buffer()
            writer(buf, parsed, row)
            append(buf.getvalue())

    return benchlib.timed(len(rows), run)


def raw_produce(
    bootstrap: str, topic: str, warmup: str, keys: Sequence[bytes], values: Sequence[bytes]
) -> float:
    errors: list[KafkaError] = []

    def on_delivery(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            errors.append(error)

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "on_delivery": on_delivery,
        }
    )
    producer.produce(warmup, values[0], keys[0])
    if producer.flush(30) or errors:
        raise RuntimeError(f"raw produce: warm-up record not delivered {errors[:1]}")
    produce = producer.produce

    def run() -> None:
        for key, value in zip(keys, values, strict=True):
            while True:
                try:
                    produce(topic, value, key)
                    break
                except BufferError:
                    producer.poll(0.05)
        left = producer.flush(60)
        if left or errors:
            raise RuntimeError(f"raw produce: {left} undelivered, errors {errors[:3]}")

    return benchlib.timed(len(values), run)


# -- our stages ----------------------------------------------------------------


def ours_write(
    provider: KafkaStagingProvider,
    res: StagedResource,
    warmup: StagedResource,
    rows: list[dict[str, Any]],
    chunk: int,
) -> float:
    with provider.allocate_session(benchlib.context(res, warmup)) as session:
        # Both writers share the session's producer: start it on the side topic.
        session.writer(warmup.name).write_batch(rows[:1])
        writer = session.writer(res.name)

        def run() -> None:
            for start in range(0, len(rows), chunk):
                part = rows[start : start + chunk]
                # As a source does: each write carries the checkpoint it reached.
                writer.write_batch(part, checkpoint={"trade_id": part[-1]["trade_id"]})

        return benchlib.timed(len(rows), run)


def ours_read(
    provider: KafkaStagingProvider, res: StagedResource, n: int, chunk: int, *, commit: bool
) -> float:
    with provider.allocate_session(benchlib.context(res)) as session:
        reader = session.reader()
        window = benchlib.Window(n)
        batches = reader.iter_batches(
            chunk, poll_timeout_s=benchlib.POLL_TIMEOUT_S, idle_timeout_s=benchlib.IDLE_TIMEOUT_S
        )
        for batch in batches:
            if commit:
                # As a sink does after its write: commit, then find the checkpoints.
                reader.commit(batch)
                batch.checkpoints  # noqa: B018 - the scan is the measured work
            if window.add(len(batch)):
                break
        batches.close()
    return window.rate()


# -- the run -------------------------------------------------------------------

RAW_ENCODE = "raw encode (fastavro writer)"
RAW_PRODUCE = "raw produce (Producer+flush)"
OURS_WRITE = "ours write (write_batch)"
RAW_DECODE = "raw decode (fastavro reader)"
RAW_CONSUME = "raw consume (Consumer)"
OURS_READ = "ours read + commit + checkpoints"
OURS_READ_NC = "ours read, no commit"
STAGES = (RAW_ENCODE, RAW_PRODUCE, OURS_WRITE, RAW_DECODE, RAW_CONSUME, OURS_READ, OURS_READ_NC)
WRITE_SIDE = (RAW_ENCODE, RAW_PRODUCE)
READ_SIDE = (RAW_DECODE, RAW_CONSUME)


@dataclass
class Bench:
    bootstrap: str
    rows: list[dict[str, Any]]
    chunk: int
    catalog: SchemaCatalog = field(default_factory=SchemaCatalog.default)
    results: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})

    def __post_init__(self) -> None:
        self.kafka = KafkaSettings(bootstrap=self.bootstrap)
        self.schema = self.catalog.load(benchlib.SCHEMA_PATH)
        self.provider = KafkaStagingProvider(
            self.kafka, catalog=self.catalog, max_record_bytes=1_000_000
        )
        self.admin = TopicAdmin(self.kafka)
        bodies = encode_bodies(self.schema.parsed, self.rows)
        self.bodies = bodies
        self.values = [self.schema.header + b for b in bodies]
        self.keys = [str(r["product_id"]).encode() for r in self.rows]

    def record(self, stage: str, rate: float) -> None:
        self.results[stage].append(rate)
        print(f"    {stage:<30} {rate:>12,.0f} rec/s", file=sys.stderr, flush=True)

    def codec(self, step: int) -> None:
        # Alternate which of the two pure-CPU stages goes first.
        first, second = ("encode", "decode") if step % 2 == 0 else ("decode", "encode")
        for which in (first, second):
            gc.collect()
            if which == "encode":
                self.record(RAW_ENCODE, raw_encode(self.schema.parsed, self.rows))
            else:
                self.record(RAW_DECODE, benchlib.raw_decode(self.schema.parsed, self.bodies))

    def raw_kafka(self, _step: int) -> None:
        topic = f"bench.raw.{uuid.uuid4().hex[:12]}"
        warmup = f"{topic}.warmup"
        self.admin.ensure([TopicSpec(topic, partitions=benchlib.PARTITIONS), TopicSpec(warmup)])
        gc.collect()
        rate = raw_produce(self.bootstrap, topic, warmup, self.keys, self.values)
        self.record(RAW_PRODUCE, rate)
        gc.collect()
        self.record(
            RAW_CONSUME, benchlib.raw_consume(self.bootstrap, topic, len(self.rows), self.chunk)
        )

    def ours(self, step: int) -> None:
        res, warmup = benchlib.bench_resource(self.schema), benchlib.bench_resource(self.schema)
        gc.collect()
        self.record(OURS_WRITE, ours_write(self.provider, res, warmup, self.rows, self.chunk))
        reads = [True, False] if step % 2 == 0 else [False, True]
        for commit in reads:
            gc.collect()
            rate = ours_read(self.provider, res, len(self.rows), self.chunk, commit=commit)
            self.record(OURS_READ if commit else OURS_READ_NC, rate)

    def run(self, repeats: int) -> None:
        groups: list[Callable[[int], None]] = [self.codec, self.raw_kafka, self.ours]
        for step in range(repeats):
            order = groups[step % len(groups) :] + groups[: step % len(groups)]
            names = ", ".join(g.__name__ for g in order)
            print(f"  repeat {step + 1}/{repeats} ({names})", file=sys.stderr, flush=True)
            for group in order:
                group(step)


def report(bench: Bench, args: argparse.Namespace, broker_pid: int | None) -> None:
    med = {stage: benchlib.median(rates) for stage, rates in bench.results.items()}
    write_floor = min(med[s] for s in WRITE_SIDE)
    read_floor = min(med[s] for s in READ_SIDE)
    write_min = min(WRITE_SIDE, key=lambda s: med[s]).split(" (")[0].removeprefix("raw ")
    read_min = min(READ_SIDE, key=lambda s: med[s]).split(" (")[0].removeprefix("raw ")
    print()
    print(
        f"durable-ingest staging benchmark: {len(bench.rows):,} trades x {args.repeats} repeat(s), "
        f"chunks of {bench.chunk:,}, broker {bench.bootstrap}"
    )
    print(benchlib.versions_line())
    print()
    header = f"{'stage':<30} {'median rec/s':>12}  {'ratio':>5}  {'target':<11}  runs (rec/s)"
    print(header)
    print("-" * 100)
    for stage in STAGES:
        floor = {OURS_WRITE: write_floor, OURS_READ: read_floor, OURS_READ_NC: read_floor}.get(
            stage
        )
        ratio, target = "", ""
        if floor is not None:
            value = med[stage] / floor
            ratio = f"{value:.2f}"
            target = f">= {TARGET:.2f} {'ok' if value >= TARGET else 'LOW'}"
        runs = ", ".join(f"{r:,.0f}" for r in bench.results[stage])
        print(f"{stage:<30} {med[stage]:>12,.0f}  {ratio:>5}  {target:<11}  {runs}")
    print()
    serial = 1 / (1 / med[RAW_ENCODE] + 1 / med[RAW_PRODUCE])
    serial_read = 1 / (1 / med[RAW_DECODE] + 1 / med[RAW_CONSUME])
    print(
        f"write ratio is over raw {write_min} ({write_floor:,.0f} rec/s); read ratio over raw "
        f"{read_min} ({read_floor:,.0f} rec/s)"
    )
    print(
        f"one-thread bound encode then produce: {serial:,.0f} rec/s "
        f"({serial / write_floor:.2f} of the write floor); "
        f"consume then decode: {serial_read:,.0f} rec/s ({serial_read / read_floor:.2f})"
    )
    print(benchlib.peak_rss_line(broker_pid))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = benchlib.arg_parser(
        __doc__.splitlines()[0], chunk_help="rows per write and read batch"
    )
    return benchlib.parse_checked(parser, argv, first_batch="first read batch")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"building {args.records:,} trades...", file=sys.stderr, flush=True)
    rows = benchlib.build_trades(args.records)
    for engine in benchlib.engines(args):
        with benchlib.kafka_bootstrap(engine) as (bootstrap, broker_pid):
            print(benchlib.engine_banner(engine, bootstrap), flush=True)
            bench = Bench(bootstrap, rows, args.chunk)
            bench.run(args.repeats)
            report(bench, args, broker_pid)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
