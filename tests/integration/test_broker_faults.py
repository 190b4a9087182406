"""Broker faults on a 3-broker Apache Kafka cluster (replication factor 3,
``min.insync.replicas`` 2) while a Coinbase source and a sink run as processes and trades
flow. After each: every trade id exactly once in ClickHouse (FINAL and distinct), every
trade in the staged topic, no worker restarted by hand. Figures each scenario measured are
printed (``pytest -s`` shows them); docs/apache-kafka.md keeps the results.

librdkafka settings these results rest on (the product's defaults): the producer's
``enable.idempotence=true`` and ``acks=all`` (no record is acknowledged before 2 replicas
have it, and a retried batch is not written twice), ``delivery.timeout.ms`` (a delivery
not confirmed in that time is reported unknown and resent with the same event ids), the
consumer's ``enable.auto.commit=false`` with explicit commits after the write, and
``session.timeout.ms``/``heartbeat.interval.ms`` (how soon a group notices a member gone).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from durable_ingest.apache_kafka import KafkaCluster
from tests.integration.conftest import Spawn, admin
from tests.integration.pipeline import Pipeline, Trading, read_topic, resumed_from
from tests.integration.source_helpers import wait_for
from tests.servers.coinbase import CoinbaseExchange

PRODUCTS = ["BTC-USD", "ETH-USD"]


@pytest.fixture
def exchange() -> Iterator[CoinbaseExchange]:
    with CoinbaseExchange(PRODUCTS) as server:
        yield server


def leader_of_busiest(cluster: KafkaCluster, topic: str) -> int:
    """The leader of the partition holding most records of ``topic`` (by its watermarks,
    which Apache Kafka reports correctly)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "watermarks"})
    try:
        sizes = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in admin(cluster).replicas(topic)
        }
    finally:
        consumer.close()
    busiest = max(sizes, key=lambda p: sizes[p])
    return admin(cluster).replicas(topic)[busiest].leader


def recovered(pipeline: Pipeline, since: float, timeout_s: float = 120) -> float:
    """Seconds from ``since`` (a monotonic time) until the sink confirmed, for every
    product, a trade made after this call: how long the fault held the pipeline up."""
    now = {p: ids[-1] for p, ids in pipeline.exchange.all_trade_ids().items()}
    try:
        wait_for(
            lambda: all(pipeline.confirmed().get(p, 0) > last for p, last in now.items()),
            timeout_s,
            "the pipeline to confirm trades made after the fault",
        )
    except AssertionError as exc:  # say where the workers were: their logs' last lines
        raise AssertionError(
            f"{exc}; confirmed {pipeline.confirmed()}, wanted past {now}\n{pipeline.log_tails()}"
        ) from None
    return time.monotonic() - since


def finish(pipeline: Pipeline, cluster: KafkaCluster) -> None:
    """Wait for the sink to confirm every trade, stop the workers (exit 0), check exactly.
    No worker may have exited by itself: none needed a hand restart."""
    try:
        pipeline.wait_confirmed_all()
    finally:
        assert not pipeline.exited_by_themselves(), pipeline.exited_by_themselves()
    pipeline.stop_all()
    staged = read_topic(cluster.bootstrap, f"ingest.{pipeline.source}.matches", to_watermarks=True)
    outcome = pipeline.outcome([(r.product, r.trade_id) for r in staged])
    print(f"\n{outcome}")


def test_kill_9_of_the_busiest_partitions_leader_then_restart(
    healthy_cluster: KafkaCluster, exchange: CoinbaseExchange, spawn: Spawn, tmp_path: Path
) -> None:
    """The leader of the busiest staged partition is killed mid-stream, then restarted."""
    cluster = healthy_cluster
    pipeline = Pipeline(tmp_path, cluster.bootstrap, spawn, exchange).start()
    with Trading(exchange):
        wait_for(lambda: bool(pipeline.confirmed()), 60, "a first confirmed checkpoint")
        victim = leader_of_busiest(cluster, f"ingest.{pipeline.source}.matches")
        cluster.kill(victim)
        killed = time.monotonic()
        wait_for(
            lambda: all(
                p.leader not in (-1, victim)
                for p in admin(cluster).replicas(f"ingest.{pipeline.source}.matches").values()
            ),
            60,
            "new leaders",
        )
        elected = time.monotonic() - killed
        print(
            f"\nnew leaders {elected:.1f} s, flowing again {recovered(pipeline, killed):.1f} s after the kill"
        )
        time.sleep(3)
        cluster.start_node(victim)
        time.sleep(2)
    finish(pipeline, cluster)


def test_rolling_restart_of_all_three_brokers(
    healthy_cluster: KafkaCluster, exchange: CoinbaseExchange, spawn: Spawn, tmp_path: Path
) -> None:
    """Each broker in turn: SIGTERM (a controlled shutdown), start, wait until in sync."""
    cluster = healthy_cluster
    pipeline = Pipeline(tmp_path, cluster.bootstrap, spawn, exchange).start()
    with Trading(exchange):
        wait_for(lambda: bool(pipeline.confirmed()), 60, "a first confirmed checkpoint")
        for node_id in (1, 2, 3):
            started = time.monotonic()
            cluster.stop_node(node_id)
            stopped = time.monotonic() - started
            cluster.start_node(node_id)
            check = admin(cluster)
            wait_for(lambda c=check: not c.under_replicated(), 120, f"node {node_id} in sync")
            print(
                f"\nnode {node_id}: stopped in {stopped:.1f} s, back in sync "
                f"{time.monotonic() - started:.1f} s after its SIGTERM; flowing "
                f"{recovered(pipeline, started):.1f} s after it"
            )
    finish(pipeline, cluster)


def test_kill_9_of_the_checkpoint_leader_and_a_source_restarting_meanwhile(
    healthy_cluster: KafkaCluster, exchange: CoinbaseExchange, spawn: Spawn, tmp_path: Path
) -> None:
    """The leader of ``ingest._checkpoints`` is killed; the sink keeps confirming, and a
    source restarted while that node is down reads the checkpoints from the new leader and
    resumes from the confirmed one (trades made while it is down come from REST)."""
    cluster = healthy_cluster
    pipeline = Pipeline(tmp_path, cluster.bootstrap, spawn, exchange).start()
    with Trading(exchange):
        wait_for(lambda: bool(pipeline.confirmed()), 60, "a first confirmed checkpoint")
        victim = admin(cluster).replicas("ingest._checkpoints")[0].leader
        cluster.kill(victim)
        killed = time.monotonic()
        source = pipeline.sources[0]
        assert pipeline.stop(source) == 0, pipeline.log(source)[-3000:]
        # Everything the stopped source staged is confirmed before it restarts, so the
        # checkpoint it must resume from is known: the last trade staged per product.
        staged = read_topic(
            cluster.bootstrap, f"ingest.{pipeline.source}.matches", to_watermarks=True
        )
        staged_last = {p: max(r.trade_id for r in staged if r.product == p) for p in PRODUCTS}
        wait_for(lambda: pipeline.confirmed() == staged_last, 60, f"{staged_last} confirmed")
        confirmed = pipeline.confirmed()
        restarted = pipeline.start_source()
        print(
            f"\nsource restarted and subscribed {time.monotonic() - killed:.1f} s after the "
            f"checkpoint leader's kill; flowing {recovered(pipeline, killed):.1f} s after it"
        )
        time.sleep(3)
        cluster.start_node(victim)
    finish(pipeline, cluster)
    assert resumed_from(pipeline.log(restarted)) == confirmed


def test_the_whole_cluster_stopped_then_started_with_its_data(
    healthy_cluster: KafkaCluster, exchange: CoinbaseExchange, spawn: Spawn, tmp_path: Path
) -> None:
    """Every broker stops (SIGTERM) while trades flow and starts again from its folder; the
    workers wait it out."""
    cluster = healthy_cluster
    pipeline = Pipeline(tmp_path, cluster.bootstrap, spawn, exchange).start()
    with Trading(exchange):
        wait_for(lambda: bool(pipeline.confirmed()), 60, "a first confirmed checkpoint")
        before = pipeline.confirmed()
        down = time.monotonic()
        cluster.stop()
        time.sleep(2)
        cluster.start()
        back = time.monotonic() - down
        print(
            f"\ncluster stopped and started again in {back:.1f} s; flowing "
            f"{recovered(pipeline, down):.1f} s after the stop began"
        )
        assert pipeline.confirmed() != before
    finish(pipeline, cluster)


def test_two_brokers_down_past_the_delivery_timeout(
    healthy_cluster: KafkaCluster, exchange: CoinbaseExchange, spawn: Spawn, tmp_path: Path
) -> None:
    """Two of three brokers are killed and held down longer than the producer's
    ``delivery.timeout.ms`` (5 s here; a flush waits 5 s more): no write can reach
    ``min.insync.replicas``, the source's deliveries time out as unknown and are resent with
    the same event ids."""
    cluster = healthy_cluster
    pipeline = Pipeline(
        tmp_path,
        cluster.bootstrap,
        spawn,
        exchange,
        kafka="delivery_timeout_ms = 5000\n",
    ).start()
    with Trading(exchange):
        wait_for(lambda: bool(pipeline.confirmed()), 60, "a first confirmed checkpoint")
        cluster.kill(2)
        cluster.kill(3)
        killed = time.monotonic()
        time.sleep(15)
        cluster.start_node(2)
        cluster.start_node(3)
        back = time.monotonic() - killed
        print(
            f"\ntwo brokers down {back:.1f} s; flowing {recovered(pipeline, killed):.1f} s "
            "after the kill"
        )
    finish(pipeline, cluster)
