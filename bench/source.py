"""Benchmark: one source process, provider messages to staged records.

Two parts (``--part websocket|http|both``, default both), each beside raw
limits measured in the same run and interleaved with them (medians of
``--repeats``).

The websocket part, Coinbase (frames to staged trades):

* raw limits: JSON parse only (``json.loads`` of every frame), Avro encode only
  (fastavro ``schemaless_writer`` of every row), produce only (an idempotent,
  ``acks=all`` producer sending pre-encoded values), websocket receive only (a
  bare websockets client reading every frame from the same server, with and
  without permessage-deflate);
* our parsing and our encoding alone, beside the first two: ``decode_frame`` of every
  frame, the compiled Avro writer of every row;
* ours: the real Coinbase connector in the Durable Runtime, fed by a local
  websocket server (in a separate process) that sends the frames as fast as it
  can, staging through the Kafka staging writer until every trade is
  acknowledged, with permessage-deflate (the default) and without it
  (``websocket_compression = "none"``); and the same with the frames handed to
  ``emit_raw`` in-process, which shows what the websocket costs.

The aim is at least 60% of the slowest raw stage.

The HTTP part, USGS (GeoJSON pages to staged earthquakes), in pages and records
per second:

* raw limits: HTTP fetch only (a plain httpx ``AsyncClient`` getting every page,
  one after the other), JSON parse only (``json.loads`` of every page body), Avro
  encode only (every row, ``schemas/usgs/earthquakes.avsc``), produce only;
* ours: the real USGS connector in the Durable Runtime with the real HTTP
  transport, polling back to back a local HTTP server (in a separate process)
  that answers each poll with the next page of ``--page-records`` new
  earthquakes as fast as it can, until every earthquake is acknowledged; and
  the same with the page bodies handed over in-process (no HTTP).

Usage: ``.venv/bin/python bench/source.py [--records N] [--repeats R]
[--part websocket|http|both] [--page-records P] [--gzip]`` (embedded broker, or
``INGEST_KAFKA_BOOTSTRAP``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import gzip
import hashlib
import io
import json
import math
import random
import subprocess
import sys
import time
import uuid
import zlib
from collections.abc import Sequence
from typing import Any, Self

import benchlib
import fastavro
import httpx
from confluent_kafka import Producer
from websockets.asyncio.client import connect

from foundation.config import KafkaSettings, RuntimeSettings
from source_workers.connectors.coinbase.pipeline import build
from source_workers.connectors.coinbase.settings import CoinbaseSettings
from source_workers.connectors.usgs import pipeline as usgs_pipeline
from source_workers.connectors.usgs.resources.earthquakes import record_of
from source_workers.connectors.usgs.source import UsgsSettings
from source_workers.context import SourceContext
from source_workers.frames import FrameLimits, decode_frame
from source_workers.runtime import SourceRuntime
from source_workers.transport.memory import MemoryHttp, Reply
from staging.avro_fast import compile_writer
from staging.compose import staged_resource
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


def our_decode(frames: Sequence[str]) -> float:
    """Our frame check and parse alone (``decode_frame``: msgspec, the limits): beside
    raw JSON parse, what the source's parsing costs."""
    limits = FrameLimits()
    return benchlib.timed(len(frames), lambda: [decode_frame("bench", f, limits) for f in frames])


def our_encode(parsed: Any, rows: Sequence[dict[str, Any]]) -> float:
    """The compiled Avro writer alone (``staging/avro_fast.py``): beside raw Avro encode
    (fastavro), what the staging layer's encoding costs."""
    write = compile_writer(parsed)
    if write is None:
        raise RuntimeError("the schema does not compile")
    return benchlib.timed(len(rows), lambda: [write(row) for row in rows])


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


class ServerProcess:
    """A provider in its own process, as a real one would be (no shared GIL): this script
    run with ``args``, which prints the port it listens on, then serves until killed."""

    def __init__(self, *args: str) -> None:
        self.command = [sys.executable, __file__, *args]
        self.port = 0
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> Self:
        self._process = subprocess.Popen(self.command, stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        self.port = int(self._process.stdout.readline())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(10)


class FrameServer(ServerProcess):
    """The websocket frame server: ``records`` trades to every subscriber."""

    def __init__(self, records: int) -> None:
        super().__init__("--serve-frames", str(records))


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
                batch_records=5_000,
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


# -- the HTTP part: USGS ---------------------------------------------------------

FEED_PATH = "/earthquakes/feed/v1.0/summary/all_day.geojson"
QUAKES_T0_MS = 1_777_636_800_000
"""2026-05-01T12:00Z: the newest synthetic quake happened just before it."""
# network, its usual magnitude type, towns (place names as the feed gives them), centre
NETWORKS = (
    ("ak", "ml", ("Willow, Alaska", "Petersville, Alaska", "Anchorage, Alaska"), (-150.5, 61.8)),
    ("ci", "ml", ("Ridgecrest, CA", "Borrego Springs, CA", "Ocotillo Wells, CA"), (-117.4, 34.2)),
    ("nc", "md", ("The Geysers, CA", "Cobb, CA", "Pinnacles, CA"), (-122.2, 37.8)),
    ("hv", "md", ("Pāhala, Hawaii", "Volcano, Hawaii", "Naalehu, Hawaii"), (-155.3, 19.3)),
    ("us", "mb", ("Hualien City, Taiwan", "Tobelo, Indonesia", "Iquique, Chile"), (125.0, 5.0)),
    ("nn", "ml", ("Tonopah, Nevada", "Dayton, Nevada"), (-117.5, 38.5)),
    ("uw", "ml", ("Port Townsend, Washington", "Ashford, Washington"), (-122.3, 47.2)),
    ("pr", "md", ("Tallaboa, Puerto Rico", "Indios, Puerto Rico"), (-66.8, 18.0)),
    ("tx", "ml", ("Pecos, Texas", "Mentone, Texas"), (-103.6, 31.4)),
    ("ok", "ml", ("Perry, Oklahoma", "Guthrie, Oklahoma"), (-97.4, 36.0)),
)
NETWORK_WEIGHTS = (30, 20, 14, 9, 8, 6, 5, 4, 2, 2)
WINDS = ("N", "NNE", "NE", "ENE", "E", "ESE", "SE", "SSE", "S", "SSW", "SW", "WSW", "W")


def build_quakes(n: int, seed: int = 11) -> list[dict[str, Any]]:
    """``n`` USGS summary-feed features, newest first, every id different: the fields and
    the mix of the real feed (mostly small automatic quakes, a few null magnitudes)."""
    rng = random.Random(seed)
    time_ms = QUAKES_T0_MS
    quakes = []
    for i, (net, mag_type, towns, (lon0, lat0)) in enumerate(
        rng.choices(NETWORKS, NETWORK_WEIGHTS, k=n)
    ):
        event_id = f"{net}{(0x2B1C7 * (i + 1)) % 16**8:08x}"  # a bijection of i: never repeats
        time_ms -= rng.randint(1_000, 120_000)
        mag = rng.expovariate(1.1) + (3.5 if net == "us" else -0.3)
        decimals = 2 if net in ("ci", "nc", "hv") else 1
        magnitude = None if rng.random() < 0.005 else round(mag, decimals)
        reviewed = rng.random() < 0.3
        big = magnitude is not None and magnitude >= 4
        place = f"{rng.randint(1, 60)} km {rng.choice(WINDS)} of {rng.choice(towns)}"
        shown = "?" if magnitude is None else f"{magnitude:.1f}"
        quakes.append(
            {
                "type": "Feature",
                "properties": {
                    "mag": magnitude,
                    "place": place,
                    "time": time_ms,
                    "updated": time_ms + rng.randint(60_000, 7_200_000),
                    "tz": None,
                    "url": f"https://earthquake.usgs.gov/earthquakes/eventpage/{event_id}",
                    "detail": "https://earthquake.usgs.gov/earthquakes/feed/v1.0/detail/"
                    f"{event_id}.geojson",
                    "felt": rng.randint(1, 300) if big else None,
                    "cdi": round(rng.uniform(2, 5), 1) if big else None,
                    "mmi": round(rng.uniform(2, 6), 3) if big else None,
                    "alert": "green" if big else None,
                    "status": "reviewed" if reviewed else "automatic",
                    "tsunami": 1 if big and net == "us" and rng.random() < 0.2 else 0,
                    "sig": int(max(magnitude or 0, 0) ** 1.8 * 16),
                    "net": net,
                    "code": event_id[2:],
                    "ids": f",{event_id},",
                    "sources": f",{net},",
                    "types": ",nearby-cities,origin,phase-data,scitech-link,"
                    if reviewed
                    else ",origin,phase-data,",
                    "nst": rng.randint(4, 90) if rng.random() < 0.8 else None,
                    "dmin": round(rng.uniform(0.001, 2), 5) if rng.random() < 0.8 else None,
                    "rms": round(rng.uniform(0.01, 1.2), 2),
                    "gap": rng.randint(20, 300) if rng.random() < 0.8 else None,
                    "magType": None if magnitude is None else mag_type,
                    "type": "earthquake",
                    "title": f"M {shown} - {place}",
                },
                "geometry": {
                    "type": "Point",
                    "coordinates": [
                        round(lon0 + rng.uniform(-1.5, 1.5), 4),
                        round(lat0 + rng.uniform(-1, 1), 4),
                        round(rng.uniform(-1, 150 if net in ("ak", "us") else 20), 2),
                    ],
                },
                "id": event_id,
            }
        )
    return quakes


def feature_collection(features: list[dict[str, Any]], number: int) -> bytes:
    """One answer of the summary feed (compact UTF-8 JSON, as USGS sends it)."""
    points = [f["geometry"]["coordinates"] for f in features]
    body = {
        "type": "FeatureCollection",
        "metadata": {
            "generated": QUAKES_T0_MS + 60_000 * number,
            "url": f"https://earthquake.usgs.gov{FEED_PATH}",
            "title": "USGS All Earthquakes, Past Day",
            "status": 200,
            "api": "1.14.1",
            "count": len(features),
        },
        "features": features,
        "bbox": [min(p[k] for p in points) for k in range(3)]
        + [max(p[k] for p in points) for k in range(3)]
        if points
        else [],
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def pages_of(records: int, page_records: int) -> list[bytes]:
    """The bodies of ``ceil(records / page_records)`` answers, each with new earthquakes."""
    quakes = build_quakes(records)
    return [
        feature_collection(quakes[start : start + page_records], number)
        for number, start in enumerate(range(0, records, page_records))
    ]


EMPTY_PAGE = feature_collection([], 0)
"""What the feed answers once every page was served: nothing new."""


def http_answer(body: bytes, *, compress: bool) -> bytes:
    """A whole HTTP/1.1 200 answer (keep-alive) with ``body``, gzip-compressed if asked."""
    encoding = b""
    if compress:
        body = gzip.compress(body, 6)
        encoding = b"Content-Encoding: gzip\r\n"
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + encoding
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


class PageProtocol(asyncio.Protocol):
    """HTTP/1.1 with keep-alive, pipelining allowed: each GET of a path gets that path's
    next page, then the empty page. The counters are per path, so every run asks its own."""

    def __init__(self, answers: list[bytes], empty: bytes, served: dict[bytes, int]) -> None:
        self._answers = answers
        self._empty = empty
        self._served = served
        self._pending = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._pending += data
        while (end := self._pending.find(b"\r\n\r\n")) >= 0:
            path = bytes(self._pending[: self._pending.find(b"\r\n")]).split(b" ")[1]
            del self._pending[: end + 4]  # a GET has no body
            number = self._served.get(path, 0)
            self._served[path] = number + 1
            answers = self._answers
            self._transport.write(answers[number] if number < len(answers) else self._empty)


async def serve_pages(records: int, page_records: int, compress: bool) -> None:
    """Answer GETs with the pages, as fast as possible (the provider's side)."""
    answers = [http_answer(body, compress=compress) for body in pages_of(records, page_records)]
    empty = http_answer(EMPTY_PAGE, compress=compress)
    served: dict[bytes, int] = {}
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: PageProtocol(answers, empty, served), "127.0.0.1", 0)
    async with server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await loop.create_future()


class PageServer(ServerProcess):
    """The USGS page server; one for every run of the HTTP part: each run fetches a path
    of its own (:meth:`url`)."""

    def __init__(self, records: int, page_records: int, compress: bool) -> None:
        gzip_flag = ["--gzip"] if compress else []
        super().__init__(
            "--serve-pages", str(records), "--page-records", str(page_records), *gzip_flag
        )

    def url(self) -> str:
        """A feed URL not asked before: its first GET gets the first page."""
        return f"http://127.0.0.1:{self.port}/{uuid.uuid4().hex[:10]}{FEED_PATH}"


def raw_fetch(url: str, pages: int, records: int) -> float:
    """A plain httpx client getting the ``pages`` one after the other (bodies read and,
    if gzip, decompressed; not parsed); records/s, the connection's opening included."""

    async def run() -> float:
        started = time.perf_counter()
        async with httpx.AsyncClient() as client:
            for _ in range(pages):
                response = await client.get(url)
                if response.status_code != 200 or len(response.content) <= len(EMPTY_PAGE):
                    raise RuntimeError(f"raw fetch: HTTP {response.status_code}, not a page")
        return records / (time.perf_counter() - started)

    return asyncio.run(run())


def raw_parse_pages(bodies: Sequence[bytes], records: int) -> float:
    """``json.loads`` of every page, one page at a time as the connector has them: keeping
    every parsed page would time the garbage collector's passes over them too (half the
    rate at 200,000 earthquakes)."""
    loads = json.loads

    def run() -> None:
        for body in bodies:
            loads(body)

    return benchlib.timed(records, run)


def ours_http(
    bootstrap: str,
    catalog: SchemaCatalog,
    records: int,
    max_body: int,
    *,
    url: str | None = None,
    bodies: Sequence[bytes] = (),
) -> float:
    """Pages to staged records (records/s): the USGS connector polling ``url`` back to back
    with the real HTTP transport, or, without ``url``, handed ``bodies`` in-process."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    source = usgs_pipeline.build(name)
    spec = source.resources[0]
    resource = staged_resource(name, spec.name, spec.staging, catalog)
    provider = KafkaStagingProvider(
        KafkaSettings(bootstrap=bootstrap), catalog=catalog, max_record_bytes=1_000_000
    )
    settings = RuntimeSettings(
        batch_records=5_000,
        linger_s=0.2,
        max_frame_bytes=max(RuntimeSettings().max_frame_bytes, max_body),
    )
    options = UsgsSettings(url=url or "http://127.0.0.1:9/in-process", poll_interval_s=1e-6)
    in_process = None
    if url is None:  # each GET answers the next page body (then the empty page), checked
        # and decoded by the same code as the real client's
        in_process = MemoryHttp(
            source=name, limits=FrameLimits(settings.max_frame_bytes, settings.max_json_depth)
        )
        pages = iter(bodies)
        in_process.route(options.url, lambda _request: Reply(body=next(pages, EMPTY_PAGE)))
    with provider.allocate_session(StagingContext(source=name, resources=(resource,))) as session:
        runtime = SourceRuntime(
            source,
            session,
            settings=settings,
            connector_settings=options,
            http=in_process,
        )

        async def main() -> float:
            started = time.perf_counter()
            task = asyncio.create_task(runtime.run())
            while runtime.stats.records_staged < records:
                await asyncio.sleep(0.002)
                if task.done():
                    task.result()
                    raise RuntimeError("the runtime stopped early")
            elapsed = time.perf_counter() - started
            runtime.stop()
            stats = await task
            if stats.records_staged != records or stats.dead_letters:
                raise RuntimeError(
                    f"staged {stats.records_staged} of {records} records, "
                    f"{stats.dead_letters} dead letters"
                )
            return records / elapsed

        return asyncio.run(main())


HTTP_STAGES = (
    ("fetch", "raw HTTP fetch only (plain httpx)"),
    ("parse", "raw JSON parse only (json.loads of pages)"),
    ("encode", "raw Avro encode only"),
    ("produce", "raw produce only"),
    ("ours", "ours: pages -> staged (USGS connector)"),
    ("no_http", "  the same without HTTP (in-process)"),
)
HTTP_RAW = ("fetch", "parse", "encode", "produce")


def http_part(
    args: argparse.Namespace, bootstrap: str, catalog: SchemaCatalog
) -> tuple[dict[str, list[float]], list[int]]:
    """The HTTP part's runs (records/s per stage), raw stages and ours interleaved, and
    the sizes of the page bodies."""
    bodies = pages_of(args.records, args.page_records)
    schema = catalog.load(usgs_pipeline.build().resources[0].staging.schema_file)
    max_body = max(len(body) for body in bodies)
    results: dict[str, list[float]] = {key: [] for key, _ in HTTP_STAGES}
    with PageServer(args.records, args.page_records, args.gzip) as server:
        for _ in range(args.repeats):
            results["fetch"].append(raw_fetch(server.url(), len(bodies), args.records))
            results["parse"].append(raw_parse_pages(bodies, args.records))
            # The rows are built for the encode stage only: kept, their dicts would slow the
            # garbage collector's passes while the connector runs.
            rows = [
                record_of(feature) for body in bodies for feature in json.loads(body)["features"]
            ]
            rate, values = raw_encode(schema.parsed, rows)
            del rows
            results["encode"].append(rate)
            results["produce"].append(raw_produce(bootstrap, values))
            results["ours"].append(
                ours_http(bootstrap, catalog, args.records, max_body, url=server.url())
            )
            results["no_http"].append(
                ours_http(bootstrap, catalog, args.records, max_body, bodies=bodies)
            )
    return results, [len(body) for body in bodies]


def http_report(
    args: argparse.Namespace, results: dict[str, list[float]], sizes: list[int]
) -> list[str]:
    """The HTTP part's table: pages/s and records/s per stage (runs in records/s)."""
    pages = math.ceil(args.records / args.page_records)
    per_page = args.records / pages
    medians = {k: benchlib.median(v) for k, v in results.items()}
    slowest = min(medians[k] for k in HTTP_RAW)
    bound = 1 / sum(1 / medians[k] for k in HTTP_RAW)
    default_limit = RuntimeSettings().max_frame_bytes
    limit = (
        f"; max_frame_bytes raised from {default_limit:,} to {max(sizes):,} bytes"
        if max(sizes) > default_limit
        else ""
    )
    served = ", served gzip" if args.gzip else ""
    lines = [
        f"== HTTP: USGS GeoJSON pages of {args.page_records:,} earthquakes "
        f"({sum(sizes) / len(sizes) / 1024:,.0f} KiB of JSON{served}), "
        f"polled back to back{limit}",
        benchlib.versions_line(
            f"httpx {httpx.__version__}",
            f"{args.records:,} earthquakes in {pages:,} pages, {args.repeats} repeats",
        ),
        f"{'':45s} {'pages/s':>9s} {'rec/s':>11s}",
    ]
    for key, label in HTTP_STAGES:
        runs = ", ".join(f"{r:,.0f}" for r in results[key])
        lines.append(
            f"{label:45s} {medians[key] / per_page:>9,.1f} {medians[key]:>11,.0f} rec/s"
            f"   (runs: {runs})"
        )
    lines.append(
        f"ours / slowest raw stage: {medians['ours'] / slowest:.2f}; "
        f"ours / one-thread bound (1 / sum of raw stage costs): {medians['ours'] / bound:.2f}"
    )
    return lines


def websocket_part(
    args: argparse.Namespace, bootstrap: str, catalog: SchemaCatalog
) -> dict[str, list[float]]:
    """The websocket part's runs (records/s per stage), raw stages and ours interleaved."""
    schema = catalog.load(benchlib.SCHEMA_PATH)
    rows = benchlib.build_trades(args.records)
    frames = frames_of(rows)
    stages = ("parse", "encode", "produce", "receive", "receive_plain", "ours", "ours_plain")
    results: dict[str, list[float]] = {
        k: [] for k in (*stages, "no_socket", "our_decode", "our_encode")
    }
    for _ in range(args.repeats):
        results["parse"].append(raw_parse(frames))
        results["our_decode"].append(our_decode(frames))
        rate, values = raw_encode(schema.parsed, rows)
        results["encode"].append(rate)
        results["our_encode"].append(our_encode(schema.parsed, rows))
        results["produce"].append(raw_produce(bootstrap, values))
        results["receive"].append(raw_receive(len(frames), compression=True))
        results["receive_plain"].append(raw_receive(len(frames), compression=False))
        results["ours"].append(ours(bootstrap, frames, catalog))
        results["ours_plain"].append(ours(bootstrap, frames, catalog, compression=False))
        results["no_socket"].append(ours(bootstrap, frames, catalog, socket=False))
    return results


def websocket_report(args: argparse.Namespace, results: dict[str, list[float]]) -> list[str]:
    medians = {k: benchlib.median(v) for k, v in results.items()}
    lines = [benchlib.versions_line(f"{args.records:,} trades, {args.repeats} repeats")]
    for key, label in (
        ("parse", "raw JSON parse only"),
        ("our_decode", "  our frame decode only (decode_frame)"),
        ("encode", "raw Avro encode only (fastavro)"),
        ("our_encode", "  our Avro encode only (compiled writer)"),
        ("produce", "raw produce only"),
        ("receive", "raw websocket receive only (deflate)"),
        ("receive_plain", "raw websocket receive only (no deflate)"),
        ("ours", "ours: frames -> staged (Coinbase, deflate)"),
        ("ours_plain", "ours: frames -> staged (Coinbase, no deflate)"),
        ("no_socket", "  the same without the websocket (in-process)"),
    ):
        runs = ", ".join(f"{r:,.0f}" for r in results[key])
        lines.append(f"{label:47s} {medians[key]:>11,.0f} rec/s   (runs: {runs})")
    for key, receive, label in (
        ("ours", "receive", "deflate"),
        ("ours_plain", "receive_plain", "no deflate"),
    ):
        stages = ("parse", "encode", "produce", receive)
        slowest = min(stages, key=lambda k: medians[k])
        lines.append(
            f"{label}: ours / slowest raw stage ({slowest}): "
            f"{medians[key] / medians[slowest]:.2f} (aim: >= 0.60); "
            f"ours / one-thread bound (1 / sum of raw stage costs): "
            f"{medians[key] * sum(1 / medians[k] for k in stages):.2f}"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = benchlib.arg_parser(__doc__ or "", "unused (the runtime stages 5000-row batches)")
    parser.add_argument(
        "--part",
        choices=("websocket", "http", "both"),
        default="both",
        help="websocket (Coinbase), http (USGS) or both (default), one after the other",
    )
    parser.add_argument(
        "--page-records",
        type=int,
        default=500,
        help="HTTP part: earthquakes per page (default 500: 342 KiB of JSON)",
    )
    parser.add_argument(
        "--gzip",
        action="store_true",
        help="HTTP part: serve the pages gzip-compressed (Content-Encoding: gzip)",
    )
    parser.add_argument("--serve-frames", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-pages", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_frames:
        asyncio.run(serve_frames(frames_of(benchlib.build_trades(args.serve_frames))))
        return 0
    if args.serve_pages:
        asyncio.run(serve_pages(args.serve_pages, args.page_records, args.gzip))
        return 0
    if args.engine == "both":
        parser.error("bench/source.py runs on one broker at a time: --engine tansu or kafka")
    if args.records < 1 or args.repeats < 1 or args.page_records < 1:
        parser.error("--records, --repeats and --page-records must be >= 1")
    catalog = SchemaCatalog.default()
    with benchlib.kafka_bootstrap(args.engine) as (bootstrap, broker_pid):
        print(benchlib.engine_banner(args.engine, bootstrap), flush=True)
        if args.part in ("websocket", "both"):
            print("\n".join(websocket_report(args, websocket_part(args, bootstrap, catalog))))
        if args.part in ("http", "both"):
            print("\n".join(http_report(args, *http_part(args, bootstrap, catalog))))
        print(benchlib.peak_rss_line(broker_pid))
    return 0


if __name__ == "__main__":
    sys.exit(main())
