"""Benchmark: one Coinbase source process, raw websocket frames to staged records.

Prints, from the same run and interleaved (medians of ``--repeats``):

* raw limits: JSON parse only (``json.loads`` of every frame), Avro encode only
  (fastavro ``schemaless_writer`` of every row), produce only (an idempotent,
  ``acks=all`` producer sending pre-encoded values), websocket receive only (a
  bare websockets client reading every frame from the same server, with and
  without permessage-deflate);
* ours: the real Coinbase connector in the Durable Runtime, fed by a local
  websocket server (in a separate process) that sends the frames as fast as it
  can, staging through the Kafka staging writer until every trade is
  acknowledged, with permessage-deflate (the default) and without it
  (``websocket_compression = "none"``); and the same with the frames handed to
  ``emit_raw`` in-process, which shows what the websocket costs.

The aim is at least 60% of the slowest raw stage. Usage:
``.venv/bin/python bench/source.py [--records N] [--repeats R]`` (embedded
broker, or ``INGEST_KAFKA_BOOTSTRAP``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import hashlib
import io
import json
import subprocess
import sys
import time
import uuid
import zlib
from collections.abc import Sequence
from typing import Any

import benchlib
import fastavro
from confluent_kafka import Producer
from websockets.asyncio.client import connect

from foundation.config import KafkaSettings, RuntimeSettings
from source_workers.connectors.coinbase.pipeline import build
from source_workers.connectors.coinbase.settings import CoinbaseSettings
from source_workers.context import SourceContext
from source_workers.runtime import SourceRuntime
from staging.kafka import KafkaStagingProvider
from staging.protocol import StagingContext
from staging.resource import StagedResource
from staging.schemas import SchemaCatalog


def frames_of(rows: list[dict[str, Any]]) -> list[str]:
    """Coinbase ``match`` frames for the trades, with trade ids contiguous per product."""
    next_id: dict[str, int] = {}
    frames = []
    for i, row in enumerate(rows):
        product = row["product_id"]
        trade_id = next_id.get(product, 1)
        next_id[product] = trade_id + 1
        frames.append(
            json.dumps(
                {
                    "type": "match",
                    "trade_id": trade_id,
                    "maker_order_id": row["maker_order_id"],
                    "taker_order_id": row["taker_order_id"],
                    "side": row["side"],
                    "size": str(row["size"]),
                    "price": str(row["price"]),
                    "product_id": product,
                    "sequence": 1_000 + 3 * i,
                    "time": row["time"].strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                }
            )
        )
    return frames


def raw_parse(frames: Sequence[str]) -> float:
    loads = json.loads
    return benchlib.timed(len(frames), lambda: [loads(f) for f in frames])


def raw_encode(parsed: Any, rows: Sequence[dict[str, Any]]) -> tuple[float, list[bytes]]:
    values: list[bytes] = []

    def run() -> None:
        buf = io.BytesIO()
        for row in rows:
            buf.seek(0)
            buf.truncate()
            fastavro.schemaless_writer(buf, parsed, row)
            values.append(buf.getvalue())

    return benchlib.timed(len(rows), run), values


def raw_produce(bootstrap: str, values: Sequence[bytes]) -> float:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
        }
    )
    topic = f"bench.raw.{uuid.uuid4().hex[:8]}"

    def run() -> None:
        for value in values:
            while True:
                try:
                    producer.produce(topic, value)
                    break
                except BufferError:
                    producer.poll(0.05)
        if producer.flush(60):
            raise RuntimeError("raw produce did not finish")

    producer.produce(topic, b"warmup")
    producer.flush(30)
    return benchlib.timed(len(values), run)


def raw_receive(count: int, *, compression: bool) -> float:
    """A bare websockets client reading ``count`` frames from the frame server."""

    async def run() -> float:
        with FrameServer(count) as server:
            async with connect(
                f"ws://127.0.0.1:{server.port}/",
                max_size=4 * 1_048_576,
                ping_interval=None,
                compression="deflate" if compression else None,
            ) as ws:
                await ws.send('{"type": "subscribe"}')
                await ws.recv()  # the subscriptions answer
                started = time.perf_counter()
                for _ in range(count):
                    await ws.recv()
                return count / (time.perf_counter() - started)

    return asyncio.run(run())


_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_frame(payload: bytes, *, deflated: bool = False) -> bytes:
    """One unmasked server text frame (RSV1 set for a permessage-deflate message)."""
    head = 0xC1 if deflated else 0x81
    size = len(payload)
    if size < 126:
        return bytes((head, size)) + payload
    if size < 65_536:
        return bytes((head, 126)) + size.to_bytes(2, "big") + payload
    return bytes((head, 127)) + size.to_bytes(8, "big") + payload


def prebuilt_streams(frames: list[str]) -> tuple[bytes, bytes]:
    """The frames as the bytes a server sends: plain, and permessage-deflate with context
    takeover (one compressor across the messages, each ended by a sync flush without
    its last four bytes: RFC 7692), built once, so that serving them costs the server
    almost no CPU and the benchmark measures the client."""
    compressor = zlib.compressobj(wbits=-15)
    plain, deflated = [], []
    for frame in frames:
        payload = frame.encode()
        plain.append(ws_frame(payload))
        packed = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
        deflated.append(ws_frame(packed[:-4], deflated=True))
    return b"".join(plain), b"".join(deflated)


async def read_client_frame(reader: asyncio.StreamReader) -> None:
    """Skip one masked client frame (the subscribe)."""
    head = await reader.readexactly(2)
    size = head[1] & 0x7F
    if size == 126:
        size = int.from_bytes(await reader.readexactly(2), "big")
    elif size == 127:
        size = int.from_bytes(await reader.readexactly(8), "big")
    await reader.readexactly(4 + size)


async def serve_frames(frames: list[str]) -> None:
    """Answer every subscribe with the frames, as fast as the socket takes them (the
    provider's side), from bytes framed (and compressed) beforehand."""
    plain, deflated = prebuilt_streams(frames)
    answer = ws_frame(json.dumps({"type": "subscriptions", "channels": []}).encode())

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in request.split("\r\n")[1:])
        }
        key = headers["sec-websocket-key"].encode()
        accept = base64.b64encode(hashlib.sha1(key + _WS_GUID).digest()).decode()
        deflate = "permessage-deflate" in headers.get("sec-websocket-extensions", "")
        writer.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
                + ("Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else "")
                + "\r\n"
            ).encode()
        )
        await read_client_frame(reader)
        writer.write(answer)
        stream = deflated if deflate else plain
        for start in range(0, len(stream), 1 << 20):
            writer.write(stream[start : start + (1 << 20)])
            await writer.drain()
        await reader.read()  # until the client goes
        writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


class FrameServer:
    """The frame server in its own process, as a provider would be (no shared GIL)."""

    def __init__(self, records: int) -> None:
        self.records = records
        self.port = 0
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> FrameServer:
        self._process = subprocess.Popen(
            [sys.executable, __file__, "--serve-frames", str(self.records)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        self.port = int(self._process.stdout.readline())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(10)


def ours(
    bootstrap: str,
    frames: list[str],
    catalog: SchemaCatalog,
    *,
    socket: bool = True,
    compression: bool = True,
) -> float:
    """Frames to staged records; ``socket=False`` hands the frames to ``emit_raw``
    in-process (the same connector and runtime, no websocket), to show its cost."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    resource = StagedResource.define(
        source=name,
        name="matches",
        schema=catalog.load(benchlib.SCHEMA_PATH),
        key=("product_id",),
        id_fields=benchlib.ID_FIELDS,
        time_field="time",
        partitions=benchlib.PARTITIONS,
    )
    provider = KafkaStagingProvider(
        KafkaSettings(bootstrap=bootstrap), catalog=catalog, max_record_bytes=1_000_000
    )
    products = tuple(sorted({json.loads(f)["product_id"] for f in frames[:1000]}))
    with (
        FrameServer(len(frames) if socket else 1) as server,
        provider.allocate_session(StagingContext(source=name, resources=(resource,))) as session,
    ):
        options = CoinbaseSettings(
            ws_url=f"ws://127.0.0.1:{server.port}/",
            rest_url="http://127.0.0.1:9",
            products=products,
            backfill_grace_s=3600,
        )
        source = build(name, options)
        if not socket:

            async def emit_all(ctx: SourceContext) -> None:
                for frame in frames:
                    await ctx.emit_raw(frame)
                await ctx.sleep(3600)

            source = dataclasses.replace(source, start=emit_all)
        runtime = SourceRuntime(
            source,
            session,
            settings=RuntimeSettings(
                batch_rows=5_000,
                linger_s=0.2,
                websocket_compression="deflate" if compression else "none",
            ),
            connector_settings=options,
        )

        async def main() -> float:
            task = asyncio.create_task(runtime.run())
            while runtime.stats.frames == 0:
                await asyncio.sleep(0.001)
            started = time.perf_counter()
            while runtime.stats.records_staged < len(frames):
                await asyncio.sleep(0.002)
                if task.done():
                    task.result()
                    raise RuntimeError("the runtime stopped early")
            elapsed = time.perf_counter() - started
            runtime.stop()
            await task
            return len(frames) / elapsed

        return asyncio.run(main())


def main(argv: Sequence[str] | None = None) -> int:
    parser = benchlib.arg_parser(__doc__ or "", "unused (the runtime stages 5000-row batches)")
    parser.add_argument("--serve-frames", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_frames:
        asyncio.run(serve_frames(frames_of(benchlib.build_trades(args.serve_frames))))
        return 0
    catalog = SchemaCatalog.default()
    schema = catalog.load(benchlib.SCHEMA_PATH)
    rows = benchlib.build_trades(args.records)
    frames = frames_of(rows)
    results: dict[str, list[float]] = {
        k: []
        for k in (
            "parse",
            "encode",
            "produce",
            "receive",
            "receive_plain",
            "ours",
            "ours_plain",
            "no_socket",
        )
    }
    if args.engine == "both":
        parser.error("bench/source.py runs on one broker at a time: --engine tansu or kafka")
    with benchlib.kafka_bootstrap(args.engine) as (bootstrap, broker_pid):
        print(benchlib.engine_banner(args.engine, bootstrap), flush=True)
        for _ in range(args.repeats):
            results["parse"].append(raw_parse(frames))
            rate, values = raw_encode(schema.parsed, rows)
            results["encode"].append(rate)
            results["produce"].append(raw_produce(bootstrap, values))
            results["receive"].append(raw_receive(len(frames), compression=True))
            results["receive_plain"].append(raw_receive(len(frames), compression=False))
            results["ours"].append(ours(bootstrap, frames, catalog))
            results["ours_plain"].append(ours(bootstrap, frames, catalog, compression=False))
            results["no_socket"].append(ours(bootstrap, frames, catalog, socket=False))
        medians = {k: benchlib.median(v) for k, v in results.items()}
        print(benchlib.versions_line(f"{args.records:,} trades, {args.repeats} repeats"))
        for key, label in (
            ("parse", "raw JSON parse only"),
            ("encode", "raw Avro encode only (fastavro)"),
            ("produce", "raw produce only"),
            ("receive", "raw websocket receive only (deflate)"),
            ("receive_plain", "raw websocket receive only (no deflate)"),
            ("ours", "ours: frames -> staged (Coinbase, deflate)"),
            ("ours_plain", "ours: frames -> staged (Coinbase, no deflate)"),
            ("no_socket", "  the same without the websocket (in-process)"),
        ):
            runs = ", ".join(f"{r:,.0f}" for r in results[key])
            print(f"{label:47s} {medians[key]:>11,.0f} rec/s   (runs: {runs})")
        core = ("parse", "encode", "produce")
        for key, receive, label in (
            ("ours", "receive", "deflate"),
            ("ours_plain", "receive_plain", "no deflate"),
        ):
            stages = (*core, receive)
            slowest = min(stages, key=lambda k: medians[k])
            print(
                f"{label}: ours / slowest raw stage ({slowest}): "
                f"{medians[key] / medians[slowest]:.2f} (aim: >= 0.60); "
                f"ours / Avro encode: {medians[key] / medians['encode']:.2f}; "
                f"ours / one-thread bound (1 / sum of raw stage costs): "
                f"{medians[key] * sum(1 / medians[k] for k in stages):.2f}"
            )
        print(benchlib.peak_rss_line(broker_pid))
    return 0


if __name__ == "__main__":
    sys.exit(main())
