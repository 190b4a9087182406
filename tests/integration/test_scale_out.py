"""Scale-out on the 3-broker Apache Kafka cluster while trades flow: sink members joining,
dying and leaving one group; and sources split by product staging into one topic. Exact
counts: every trade delivered, duplicates counted; rebalance pauses are printed
(``pytest -s``) and kept in docs/apache-kafka.md."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from durable_ingest.apache_kafka import KafkaCluster
from tests.integration.conftest import Spawn
from tests.integration.pipeline import Pipeline, Trading, pauses, read_topic, resumed_from
from tests.integration.source_helpers import wait_for
from tests.servers.coinbase import CoinbaseExchange

PRODUCTS = ["BTC-USD", "ETH-USD"]


@pytest.fixture
def exchange() -> Iterator[CoinbaseExchange]:
    with CoinbaseExchange(PRODUCTS) as server:
        yield server


def test_sink_members_killed_added_and_stopped_deliver_every_record(
    healthy_cluster: KafkaCluster, exchange: CoinbaseExchange, spawn: Spawn, tmp_path: Path
) -> None:
    """Three sinks in one group re-stage to a stream target; mid-stream one is killed with -9,
    a fourth joins and one is stopped with SIGTERM. The destination holds every trade, each
    with its staged event id; duplicates (re-delivery after the kill) are counted."""
    cluster = healthy_cluster
    pipeline = Pipeline(
        tmp_path,
        cluster.bootstrap,
        spawn,
        exchange,
        target="kafka:derived.{source}.matches",
        partitions=6,
    )
    for _ in range(3):
        pipeline.start_sink()
    pipeline.start_source()
    marks: dict[str, float] = {}
    with Trading(exchange, rate=100):
        wait_for(lambda: bool(pipeline.confirmed()), 90, "a first confirmed checkpoint")
        time.sleep(2)
        marks["kill -9"] = time.time()
        pipeline.stop(pipeline.sinks[0], signal.SIGKILL)
        time.sleep(10)
        marks["fourth joins"] = time.time()
        pipeline.start_sink()
        time.sleep(10)
        marks["SIGTERM"] = time.time()
        assert pipeline.stop(pipeline.sinks[1]) == 0, pipeline.log(pipeline.sinks[1])[-3000:]
        time.sleep(10)
    pipeline.wait_confirmed_all()
    assert not pipeline.exited_by_themselves(), pipeline.exited_by_themselves()
    pipeline.stop_all()
    want = set(pipeline.expected())
    staged = read_topic(cluster.bootstrap, f"ingest.{pipeline.source}.matches", to_watermarks=True)
    delivered = read_topic(
        cluster.bootstrap, f"derived.{pipeline.source}.matches", to_watermarks=True
    )
    assert {(r.product, r.trade_id) for r in delivered} == want
    assert {r.event_id for r in delivered} == {r.event_id for r in staged}
    duplicates = len(delivered) - len({(r.product, r.trade_id) for r in delivered})
    gaps = pauses(delivered)
    start = marks["kill -9"]
    events = ", ".join(f"{k} +{v - start:.0f} s" for k, v in marks.items())
    print(
        f"\n{len(want)} trades, {len(delivered)} delivered ({duplicates} duplicates); "
        f"delivery pauses >= 1 s: {[f'{g:.1f}' for g in gaps]}; "
        f"events: {events}"
    )


def test_sources_split_by_product_into_one_topic_lose_nothing_when_one_is_killed(
    healthy_cluster: KafkaCluster, exchange: CoinbaseExchange, spawn: Spawn, tmp_path: Path
) -> None:
    """Two processes of one source, one per product (``instances = ["btc", "eth"]``, each
    run with ``--instance``), stage into the same topic; the BTC one is killed with -9 mid-stream and restarted after trades it
    missed: it resumes from its own confirmed checkpoint, so REST fills exactly its gap."""
    cluster = healthy_cluster
    pipeline = Pipeline(tmp_path, cluster.bootstrap, spawn, exchange, instances=("btc", "eth"))
    pipeline.start_sink()
    btc = pipeline.start_source("--instance", "btc", env={"COINBASE_PRODUCTS": "BTC-USD"})
    pipeline.start_source("--instance", "eth", env={"COINBASE_PRODUCTS": "ETH-USD"})
    with Trading(exchange):
        wait_for(lambda: len(pipeline.confirmed("btc")) == 1, 90, "BTC confirmed")
        wait_for(lambda: len(pipeline.confirmed("eth")) == 1, 90, "ETH confirmed")
        time.sleep(2)
        pipeline.stop(btc, signal.SIGKILL)
        time.sleep(5)  # BTC trades while its source is down: only REST has them now
        confirmed = pipeline.confirmed("btc")
        restarted = pipeline.start_source("--instance", "btc", env={"COINBASE_PRODUCTS": "BTC-USD"})
        time.sleep(5)
    last = {p: ids[-1] for p, ids in exchange.all_trade_ids().items()}
    wait_for(
        lambda: (
            pipeline.confirmed("btc") == {"BTC-USD": last["BTC-USD"]}
            and pipeline.confirmed("eth") == {"ETH-USD": last["ETH-USD"]}
        ),
        180,
        "both instances confirmed to the last trade",
    )
    assert not pipeline.exited_by_themselves(), pipeline.exited_by_themselves()
    pipeline.stop_all()
    assert resumed_from(pipeline.log(restarted)) == confirmed
    shown = subprocess.run(
        [sys.executable, "-m", "durable_ingest.cli", "status", "--instance", "btc", "--json"],
        env=pipeline.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    (status,) = json.loads(shown.stdout)["resources"]
    assert (
        status["checkpoint"]["resume_from"]["products"]["BTC-USD"]["trade_id"] == (last["BTC-USD"])
    )
    staged = read_topic(cluster.bootstrap, f"ingest.{pipeline.source}.matches", to_watermarks=True)
    outcome = pipeline.outcome([(r.product, r.trade_id) for r in staged])
    print(f"\n{outcome}")
