"""``ingest stack up [--engine tansu|kafka] [--brokers N] [--port P] [--data-dir D]``.

Starts a broker on 127.0.0.1 (the embedded Tansu by default, or Apache Kafka:
one KRaft node, or a cluster with ``--brokers 3``), creates the staging,
dead-letter and checkpoint topics the configuration declares (with the
cluster's replication factor), and prepares the data directory that holds the
embedded warehouse (chDB, opened by the workers that write it). Ctrl-C or
SIGTERM stops it. ``ingest stack fetch`` fetches Apache Kafka's jars only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
from types import FrameType

from durable_ingest.commands import Subcommands
from durable_ingest.stack import DEFAULT_PORT, ENGINES, Broker, make_broker
from foundation.config import Settings
from foundation.errors import StackError, StopError
from foundation.process import data_dir_option
from staging.compose import checkpoint_store, schema_catalog, staged_resources, staging_provider

log = logging.getLogger("ingest")


def register(commands: Subcommands) -> None:
    stack = commands.add_parser(
        "stack", help="a local stack: a broker (Tansu or Apache Kafka) and the warehouse directory"
    )
    stack_commands = stack.add_subparsers(dest="stack_command", required=True)
    up = stack_commands.add_parser(
        "up", help="start the broker and create the topics; Ctrl-C stops it"
    )
    up.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"broker port on 127.0.0.1 (default {DEFAULT_PORT}; 0 picks a free one); "
        "a cluster's other brokers take the ports after it",
    )
    engine_options(up)
    data_dir_option(up)
    up.set_defaults(handler=_up)
    fetch = stack_commands.add_parser(
        "fetch", help="fetch Apache Kafka's jars from Maven Central into the cache (once)"
    )
    fetch.set_defaults(handler=_fetch, needs_settings=False)


def engine_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="tansu",
        help="tansu: the embedded broker, in memory (default); kafka: Apache Kafka (KRaft), "
        "data on disk in <data-dir>/kafka (needs Java 17 and, the first time, Maven)",
    )
    parser.add_argument(
        "--brokers",
        type=int,
        default=None,
        metavar="N",
        help="with --engine kafka: N brokers; from 3 on, topics get replication factor 3 "
        "and min.insync.replicas 2 (default: 1, or the size of the cluster in the data dir)",
    )
    parser.add_argument(
        "--controllers",
        type=int,
        default=None,
        metavar="K",
        help="with --engine kafka: K of the brokers are also KRaft controllers "
        "(1 to 3; default 1, or 3 from 3 brokers on)",
    )


def _up(args: argparse.Namespace, settings: Settings) -> int:
    return stack_up(settings, args.port, args.engine, args.brokers, args.controllers)


def _fetch(args: argparse.Namespace, settings: Settings) -> int:
    from durable_ingest.apache_kafka.jars import cached_jars, kafka_jars

    had = cached_jars()
    jars = kafka_jars()
    count = len(list(jars.libs.glob("*.jar")))
    how = "already cached" if had is not None else "fetched"
    print(f"Apache Kafka {jars.version}: {count} jars {how} in {jars.libs}")
    return 0


def with_broker(settings: Settings, broker: Broker) -> Settings:
    """``settings`` pointed at a started broker, its topics replicated as it can hold.

    A replication factor the settings already raise above 1 is kept.
    """
    staging = settings.staging
    if staging.replication_factor == 1 and broker.replication_factor > 1:
        staging = staging.model_copy(update={"replication_factor": broker.replication_factor})
    return settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(update={"bootstrap": broker.bootstrap}),
            "staging": staging,
        }
    )


def prepare_topics(settings: Settings) -> list[str]:
    """Create the declared staging, dead-letter and checkpoint topics; their names."""
    catalog = schema_catalog(settings)
    resources = staged_resources(settings, catalog)
    staging_provider(settings, catalog).ensure_topics(resources)
    checkpoint_store(settings).close()  # creates ingest._checkpoints, checks compaction
    topics = [t.name for r in resources for t in (r.topic, r.dlq)]
    return [*topics, settings.staging.checkpoint_topic]


def stack_up(
    settings: Settings,
    port: int | None,
    engine: str = "tansu",
    brokers: int | None = None,
    controllers: int | None = None,
) -> int:
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    broker = make_broker(engine, data_dir, port, brokers=brokers, controllers=controllers)
    state_file = data_dir / "stack.json"
    try:
        try:
            bootstrap = broker.start()
        except StackError as exc:
            if stop.is_set():  # a Ctrl-C reached the JVM or Maven too: not their fault
                raise StackError("stopped while the broker was starting") from exc
            raise
        if stop.is_set():
            print("stopped while the broker was starting", flush=True)
            return 0
        settings = with_broker(settings, broker)
        topics = prepare_topics(settings)
        warehouse = settings.clickhouse.embedded_path
        state_file.write_text(
            json.dumps(
                {
                    "engine": engine,
                    "bootstrap": bootstrap,
                    "broker_pids": broker.pids(),
                    "pid": os.getpid(),
                }
            )
        )
        print(f"kafka bootstrap: {bootstrap}")
        print(f"engine: {broker.describe()}")
        print(f"topics: {', '.join(topics)}")
        if warehouse is not None:
            print(f"warehouse: chdb://{warehouse} (embedded; opened by the sink)")
        else:
            print(f"warehouse: {settings.clickhouse.dsn}")
        print(f"export INGEST_KAFKA_BOOTSTRAP={bootstrap}")
        replication = settings.staging.replication_factor
        if replication > 1:
            print(f"export INGEST_STAGING_REPLICATION_FACTOR={replication}")
        print("stack is up; Ctrl-C stops it", flush=True)
        while not stop.wait(0.5):
            if not broker.running():
                raise StopError(f"the broker exited unexpectedly; see {broker.log_path}")
    finally:
        broker.stop()
        state_file.unlink(missing_ok=True)
    print("stack stopped", flush=True)
    return 0
