"""The Coinbase source against the test exchange, the real broker and (for the kill test) chDB."""

from __future__ import annotations

import json
import logging
import re
import signal
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from durable_ingest.loopback import free_port
from foundation.config import KafkaSettings, RuntimeSettings
from source_workers.connectors.coinbase.pipeline import build
from source_workers.connectors.coinbase.settings import CoinbaseSettings
from source_workers.runtime import SourceRuntime
from staging.checkpoints import partition_entries, resume_point
from staging.kafka import KafkaCheckpointStore, KafkaStagingProvider
from staging.protocol import StagingContext
from staging.resource import StagedResource, TopicSpec
from staging.schemas import SchemaCatalog
from tests.helpers import cli_process, unique
from tests.integration.conftest import Spawn, python_json
from tests.integration.source_helpers import (
    RuntimeThread,
    process_env,
    source_config,
    wait_for,
)
from tests.servers.coinbase import CoinbaseExchange

ROOT = Path(__file__).resolve().parents[2]
PRODUCTS = ["BTC-USD", "ETH-USD"]


@pytest.fixture
def exchange() -> Iterator[CoinbaseExchange]:
    with CoinbaseExchange(PRODUCTS) as server:
        yield server


def matches(catalog: SchemaCatalog, source: str) -> StagedResource:
    return StagedResource.define(
        source=source,
        name="matches",
        schema=catalog.load("coinbase/matches.avsc"),
        key=("product_id",),
        id_fields=("product_id", "trade_id"),
        time_field="time",
    )


def staged_ids(
    kafka: KafkaSettings, source: str, expect: int | None = None
) -> list[tuple[str, int]]:
    """Every (product, trade id) staged for ``source``, read by a fresh group."""
    catalog = SchemaCatalog.default()
    provider = KafkaStagingProvider(kafka, catalog=catalog, max_record_bytes=1_000_000)
    context = StagingContext(
        source=source, resources=(matches(catalog, source),), group_id=unique("g")
    )
    found: list[tuple[str, int]] = []
    with provider.allocate_session(context) as session:
        reader = session.reader()
        for batch in reader.iter_batches(5_000, poll_timeout_s=0.5, idle_timeout_s=3):
            found += [(r.record["product_id"], r.record["trade_id"]) for r in batch.records]
            if expect is not None and len(found) >= expect:
                break
    return found


def dead_letters(kafka: KafkaSettings, source: str) -> list[dict[str, str]]:
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap,
            "group.id": unique("dlq"),
            "enable.auto.commit": False,
        }
    )
    topic = f"ingest.{source}.matches.dlq"
    consumer.assign([TopicPartition(topic, 0, 0)])
    letters = []
    deadline = time.monotonic() + 5
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            headers = {k: (v or b"").decode("utf-8", "replace") for k, v in message.headers() or []}
            letters.append(
                {**headers, "value": (message.value() or b"").decode("utf-8", "replace")}
            )
            deadline = time.monotonic() + 1
    finally:
        consumer.close()
    return letters


class InProcess(RuntimeThread):
    """The Coinbase runtime in a thread of its own, against the real broker."""

    def __init__(self, kafka: KafkaSettings, exchange: CoinbaseExchange, **runtime: Any) -> None:
        self.source = unique("cb")
        catalog = SchemaCatalog.default()
        provider = KafkaStagingProvider(kafka, catalog=catalog, max_record_bytes=1_000_000)
        context = StagingContext(source=self.source, resources=(matches(catalog, self.source),))
        session = provider.allocate_session(context)
        options = {
            "linger_s": 0.05,
            "idle_timeout_s": 2.0,
            "backoff_initial_s": 0.05,
            "backoff_max_s": 0.3,
            **runtime,
        }
        coinbase = CoinbaseSettings(
            ws_url=exchange.ws_url,
            rest_url=exchange.rest_url,
            products=tuple(PRODUCTS),
            backfill_grace_s=0.3,
            rest_min_interval_s=0.0,
            rest_page_size=7,
        )
        super().__init__(
            SourceRuntime(
                build(self.source, coinbase),
                session,
                settings=RuntimeSettings(**options),
                connector_settings=coinbase,
            ),
            session,
        )

    def __exit__(self, *exc: object) -> None:
        self.stop()


def subscribed(exchange: CoinbaseExchange, count: int = 1) -> Callable[[], bool]:
    """``count`` subscribe messages received, and a subscription registered: trades made
    from then on reach the source (not only once its connection is open)."""
    return lambda: len(exchange.subscribe_messages) >= count and exchange.subscribed >= 1


def expected(exchange: CoinbaseExchange, since: dict[str, int]) -> list[tuple[str, int]]:
    """Every trade the exchange made from each product's first live trade on."""
    return sorted(
        (p, i) for p, ids in exchange.all_trade_ids().items() for i in ids if i >= since.get(p, 0)
    )


def test_every_trade_is_staged_once_gaps_filled_from_rest(
    kafka: KafkaSettings, exchange: CoinbaseExchange
) -> None:
    """Skipped, duplicated and reordered feed trades end up staged exactly once; bad frames are
    dead-lettered and counted."""
    first = {p: exchange.trade(p)[0].trade_id for p in PRODUCTS}  # sent as last_match
    exchange.faults.skip_live = set(range(1003, 1013))  # a gap REST must fill
    exchange.faults.duplicate = {1015, 1016}
    exchange.faults.reorder = {1020}
    exchange.faults.malformed_after = {
        1021: ["{broken", '{"type": "match", "price": NaN}', "[" * 80 + "]" * 80]
    }
    with InProcess(kafka, exchange) as worker:
        wait_for(subscribed(exchange), what="subscription")
        for _ in range(30):
            for product in PRODUCTS:
                exchange.trade(product)
        want = expected(exchange, first)
        wait_for(lambda: worker.runtime.stats.records_staged >= len(want), what="staging")
        stats = worker.stop()
    got = staged_ids(kafka, worker.source, expect=len(want))
    assert sorted(got) == want  # every trade, once
    assert stats.dead_letters == 6  # three bad frames after trade 1021 of each product
    letters = dead_letters(kafka, worker.source)
    assert [letter["value"][:7] for letter in letters] == ["{broken", '{"type"', "[[[[[[["] * 2
    assert "nested 80 deep" in letters[2]["ingest_dlq_reason"]
    assert exchange.rest_requests >= 2  # the gap of 10 with pages of 7


def test_disconnect_storm_reconnects_without_leaking(
    kafka: KafkaSettings, exchange: CoinbaseExchange
) -> None:
    """Twenty dropped connections: every trade staged, one socket open, no task left behind."""
    first = {p: exchange.trade(p)[0].trade_id for p in PRODUCTS}
    exchange.faults.disconnect_after = set(range(1002, 1042, 2))
    with InProcess(kafka, exchange) as worker:
        for _ in range(40):
            wait_for(subscribed(exchange), what="a connection")
            exchange.trade("BTC-USD")
            time.sleep(0.02)
        exchange.faults.disconnect_after = set()
        wait_for(subscribed(exchange, 20), what="reconnects")
        exchange.trade("BTC-USD")  # reveals any trade missed while reconnecting
        want = expected(exchange, first)
        wait_for(lambda: worker.runtime.stats.records_staged >= len(want), 30, "staging")
        assert exchange.open_connections == 1
        stats = worker.stop()
    assert stats.sessions >= 20
    assert worker.tasks_left == 0
    wait_for(lambda: exchange.open_connections == 0, 5, "the last socket to close")
    assert sorted(staged_ids(kafka, worker.source, expect=len(want))) == want


@pytest.mark.one_broker("apache")
def test_a_feed_dropping_every_900_messages_is_reconnected_at_once(
    kafka: KafkaSettings, exchange: CoinbaseExchange, caplog: pytest.LogCaptureFixture
) -> None:
    """With the default backoff (0.5 s growing to 30 s, reset after 60 s up), a feed that
    drops every 900 trades but delivers in between is reconnected after about the first
    delay each time, never a grown one; every trade is staged."""
    first = {p: exchange.trade(p)[0].trade_id for p in PRODUCTS}
    exchange.faults.disconnect_after = {first["BTC-USD"] + 900 * n for n in range(1, 6)}
    defaults = {"backoff_initial_s": 0.5, "backoff_max_s": 30.0, "backoff_reset_after_s": 60.0}
    with caplog.at_level(logging.INFO, logger="source_workers.runtime"):
        with InProcess(kafka, exchange, **defaults) as worker:
            wait_for(subscribed(exchange), what="subscription")
            for _ in range(500):  # about 500 trades a second: a drop every 2 s or so
                exchange.trade("BTC-USD", 10)
                time.sleep(0.02)
            wait_for(subscribed(exchange, 6), 60, "five reconnects")
            exchange.trade("BTC-USD")
            want = expected(exchange, first)
            wait_for(lambda: worker.runtime.stats.records_staged >= len(want), 60, "staging")
            worker.stop()
    delays = [
        float(m.group(1))
        for r in caplog.records
        if (m := re.search(r"reconnecting in ([\d.]+) s", r.getMessage()))
    ]
    assert len(delays) >= 5
    assert max(delays) <= 0.5, delays  # the first delay, jittered; never grown
    assert sorted(staged_ids(kafka, worker.source, expect=len(want))) == want


def test_silence_is_a_dead_socket_and_rest_429s_are_waited_out(
    kafka: KafkaSettings, exchange: CoinbaseExchange
) -> None:
    """A silent feed is dropped after the idle timeout; trades made meanwhile come from REST
    even through 429 answers."""
    first = {p: exchange.trade(p)[0].trade_id for p in PRODUCTS}
    with InProcess(kafka, exchange, idle_timeout_s=1.0) as worker:
        wait_for(subscribed(exchange), what="subscription")
        exchange.faults.silent = True
        exchange.trade("BTC-USD", 12)
        wait_for(lambda: exchange.connections_opened >= 2, 10, "a reconnect after silence")
        exchange.faults.rest_429 = 3
        exchange.faults.silent = False
        exchange.trade("BTC-USD", 2)
        want = expected(exchange, first)
        wait_for(lambda: worker.runtime.stats.records_staged >= len(want), 30, "staging")
        stats = worker.stop()
    assert stats.sessions >= 2 and exchange.faults.rest_429 == 0
    assert sorted(staged_ids(kafka, worker.source, expect=len(want))) == want


# --- as users run it: separate processes ----------------------------------------


def config(tmp: Path, kafka: KafkaSettings, source: str, linger_s: float = 0.1) -> Path:
    runtime = (
        f"linger_s = {linger_s}\nidle_timeout_s = 5\nbackoff_initial_s = 0.1\nbackoff_max_s = 1\n"
    )
    return source_config(tmp, kafka, source, "coinbase", runtime)


def env_for(path: Path, exchange: CoinbaseExchange) -> dict[str, str]:
    env = process_env(path, "COINBASE_")
    env.update(
        COINBASE_WS_URL=exchange.ws_url,
        COINBASE_REST_URL=exchange.rest_url,
        COINBASE_PRODUCTS=",".join(PRODUCTS),
        COINBASE_BACKFILL_GRACE_S="0.3",
        COINBASE_REST_MIN_INTERVAL_S="0",
    )
    return env


def test_sigterm_stages_what_was_received_and_exits_0(
    tmp_path: Path, kafka: KafkaSettings, exchange: CoinbaseExchange, spawn: Spawn
) -> None:
    """SIGTERM: stop reading, stage the buffered trades, close the socket, exit 0; meanwhile
    /health and /metrics answer on the admin port."""
    source = unique("cb")
    env = env_for(config(tmp_path, kafka, source, linger_s=60), exchange)
    first = {p: exchange.trade(p)[0].trade_id for p in PRODUCTS}
    port = free_port()
    process = spawn(
        [sys.executable, "-m", "source_workers", source, "--admin-port", str(port)],
        cwd=ROOT,
        env=env,
    )
    wait_for(subscribed(exchange), 30, "the source to subscribe")
    exchange.trade("BTC-USD", 40)

    def health() -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]

    # Every frame the exchange sent (the 40 trades among them) read by the source, as its
    # /health counts them; none staged yet (linger_s is 60).
    sent = exchange.frames_sent
    wait_for(lambda: health()["frames"] >= sent, 10, "the 40 trades to be read")
    state = health()
    assert state["connected"] is True and state["records_staged"] == 0
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert f'ingest_source_connected{{source="{source}"}} 1' in response.read().decode()
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err[-3000:]
    assert time.monotonic() - started < 15
    want = expected(exchange, first)
    assert sorted(staged_ids(kafka, source, expect=len(want))) == want
    wait_for(lambda: exchange.open_connections == 0, 5, "the socket to close")


def test_unknown_product_stops_with_one_line(
    tmp_path: Path, kafka: KafkaSettings, exchange: CoinbaseExchange
) -> None:
    """A product the exchange refuses ends the worker with a one-line error and exit 2."""
    source = unique("cb")
    env = env_for(config(tmp_path, kafka, source), exchange)
    env["COINBASE_PRODUCTS"] = "BTC-USD,NOPE-USD"
    done = cli_process("source", "run", source, env=env)
    assert done.returncode == 2
    assert "NOPE-USD is not a valid product" in done.stderr.strip().splitlines()[-1]


COUNT = textwrap.dedent(
    """
    import json, sys
    from foundation.config import settings_from
    from sink_workers.clickhouse.warehouse import open_warehouse
    client = open_warehouse(settings_from({"data_dir": sys.argv[1]}).clickhouse)
    table = sys.argv[2]
    rows = client.query(f"SELECT product_id, trade_id FROM default.{table} FINAL").result_rows
    raw = client.command(f"SELECT uniqExact(product_id, trade_id) FROM default.{table}")
    print(json.dumps({"final": [list(r) for r in rows], "distinct": raw}))
    """
)


def test_kill_9_and_restart_lose_nothing_in_clickhouse(
    tmp_path: Path, kafka: KafkaSettings, exchange: CoinbaseExchange, spawn: Spawn
) -> None:
    """kill -9 of the source mid-stream, trades while it is down, a restart: after the sink
    runs, every trade id is in ClickHouse exactly once."""
    source = unique("cb")
    path = config(tmp_path, kafka, source)
    env = env_for(path, exchange)
    first = {p: exchange.trade(p)[0].trade_id for p in PRODUCTS}
    sink = spawn([sys.executable, "-m", "sink_workers", "--source", source], cwd=ROOT, env=env)
    command = [sys.executable, "-m", "source_workers", source]
    worker = spawn(command, cwd=ROOT, env=env)
    wait_for(subscribed(exchange), 60, "the source to subscribe")
    for _ in range(20):
        exchange.trade("BTC-USD", 5)
        exchange.trade("ETH-USD", 2)
        time.sleep(0.05)
    store = KafkaCheckpointStore(
        KafkaSettings(bootstrap=kafka.bootstrap),
        TopicSpec("ingest._checkpoints", partitions=1, retention_ms=-1, compacted=True),
    )
    try:
        wait_for(
            lambda: resume_point(partition_entries(store, source, "matches")) is not None,
            60,
            "a checkpoint confirmed by the sink",
        )
        for _ in range(10):  # mid-stream
            exchange.trade("BTC-USD", 5)
        worker.kill()
        worker.wait(10)
        exchange.trade("BTC-USD", 30)  # made while the source is down: only REST has them
        exchange.trade("ETH-USD", 9)
        restarted = spawn(command, cwd=ROOT, env=env)
        wait_for(subscribed(exchange, 2), 60, "the restarted source to subscribe")
        for _ in range(10):
            exchange.trade("BTC-USD", 3)
            exchange.trade("ETH-USD", 1)
            time.sleep(0.05)
        want = expected(exchange, first)
        last = {p: ids[-1] for p, ids in exchange.all_trade_ids().items()}
        wait_for(
            lambda: all(
                (resume_point(partition_entries(store, source, "matches")) or {})
                .get("products", {})
                .get(p, {})
                .get("trade_id")
                == last[p]
                for p in PRODUCTS
            ),
            90,
            "the sink to confirm the last trade of every product",
        )
    finally:
        store.close()
    restarted.send_signal(signal.SIGTERM)
    assert restarted.wait(30) == 0
    sink.send_signal(signal.SIGTERM)
    _, err = sink.communicate(timeout=60)
    assert sink.returncode == 0, err[-3000:]
    table = python_json(COUNT, str(tmp_path), f"{source}_matches")
    assert sorted(tuple(r) for r in table["final"]) == want
    assert table["distinct"] == len(want)


def test_oversized_frames_are_dead_lettered_or_drop_the_connection(
    kafka: KafkaSettings, exchange: CoinbaseExchange
) -> None:
    """A frame over max_frame_bytes is dead-lettered (cut, with the reason); one over four times
    the limit makes the library close the socket before buffering it, and the source reconnects
    and backfills what it missed."""
    first = {p: exchange.trade(p)[0].trade_id for p in PRODUCTS}
    big = json.dumps({"type": "match", "pad": "x" * 5_000})
    huge = json.dumps({"type": "match", "pad": "x" * 20_000})
    exchange.faults.malformed_after = {1002: [big], 1004: [huge]}
    with InProcess(kafka, exchange, max_frame_bytes=4_096) as worker:
        wait_for(subscribed(exchange), what="subscription")
        exchange.trade("BTC-USD", 6)
        wait_for(lambda: exchange.connections_opened >= 2, 20, "a reconnect after the huge frame")
        wait_for(subscribed(exchange, 2), 20, "the resubscription")
        exchange.trade("BTC-USD", 2)
        want = expected(exchange, first)
        wait_for(lambda: worker.runtime.stats.records_staged >= len(want), 30, "staging")
        stats = worker.stop()
    assert sorted(staged_ids(kafka, worker.source, expect=len(want))) == want
    letters = dead_letters(kafka, worker.source)
    assert stats.dead_letters == 1 and len(letters) == 1
    assert "over the limit of 4096" in letters[0]["ingest_dlq_reason"]


def test_rest_behind_the_feed_is_waited_for_not_given_up(
    kafka: KafkaSettings, exchange: CoinbaseExchange
) -> None:
    """While REST lags the feed, a gap is tried again rather than given up; once REST has
    the trades, they are staged."""
    first = {p: exchange.trade(p)[0].trade_id for p in PRODUCTS}
    exchange.faults.skip_live = {1003, 1004, 1005}
    exchange.faults.rest_behind = 6  # REST knows trades 1000-1002, none of the gap yet
    with InProcess(kafka, exchange) as worker:
        wait_for(subscribed(exchange), what="subscription")
        exchange.trade("BTC-USD", 8)
        # Two backfills found REST behind, and the gap is tried a third time: not given
        # up (that takes five), and nothing of it staged meanwhile.
        wait_for(lambda: exchange.rest_requests >= 3, 20, "the backfill to be tried again")
        assert worker.runtime.stats.records_staged == len(expected(exchange, first)) - 3
        exchange.faults.rest_behind = 0
        want = expected(exchange, first)
        wait_for(lambda: worker.runtime.stats.records_staged >= len(want), 30, "the backfill")
        worker.stop()
    assert sorted(staged_ids(kafka, worker.source, expect=len(want))) == want
