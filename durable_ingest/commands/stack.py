"""``ingest stack up [--port P] [--data-dir D]``: the embedded stack.

Starts the Kafka-compatible broker on 127.0.0.1, creates the staging,
dead-letter and checkpoint topics the configuration declares, and prepares the
data directory that holds the embedded warehouse (chDB, opened by the workers
that write it). Ctrl-C or SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
from types import FrameType

from durable_ingest.commands import Subcommands, data_dir_option
from durable_ingest.compose import (
    checkpoint_store,
    schema_catalog,
    staged_resources,
    staging_provider,
)
from durable_ingest.config import Settings
from durable_ingest.errors import StopError
from durable_ingest.stack import EmbeddedBroker, free_port

log = logging.getLogger("ingest")
DEFAULT_PORT = 9092


def register(commands: Subcommands) -> None:
    stack = commands.add_parser("stack", help="the embedded stack (broker + warehouse directory)")
    stack_commands = stack.add_subparsers(dest="stack_command", required=True)
    up = stack_commands.add_parser(
        "up", help="start the embedded broker and create the topics; Ctrl-C stops it"
    )
    up.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"broker port on 127.0.0.1 (default {DEFAULT_PORT}; 0 picks a free one)",
    )
    data_dir_option(up)
    up.set_defaults(handler=_up)


def _up(args: argparse.Namespace, settings: Settings) -> int:
    return stack_up(settings, args.port)


def broker_port(port: int | None) -> int:
    """``port``, the default, or a free one for 0; StopError if it is no TCP port."""
    port = DEFAULT_PORT if port is None else port
    if port == 0:
        port = free_port()
    if not 0 < port < 65536:
        raise StopError(f"--port {port} is not a TCP port")
    return port


def with_bootstrap(settings: Settings, bootstrap: str) -> Settings:
    return settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"bootstrap": bootstrap})}
    )


def prepare_topics(settings: Settings) -> list[str]:
    """Create the declared staging, dead-letter and checkpoint topics; their names."""
    catalog = schema_catalog(settings)
    resources = staged_resources(settings, catalog)
    staging_provider(settings, catalog).ensure_topics(resources)
    checkpoint_store(settings).close()  # creates ingest._checkpoints, checks compaction
    topics = [t.name for r in resources for t in (r.topic, r.dlq)]
    return [*topics, settings.staging.checkpoint_topic]


def stack_up(settings: Settings, port: int | None) -> int:
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    port = broker_port(port)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    broker = EmbeddedBroker(port, log_path=data_dir / "broker.log")
    state_file = data_dir / "stack.json"
    try:
        bootstrap = broker.start()
        settings = with_bootstrap(settings, bootstrap)
        topics = prepare_topics(settings)
        warehouse = settings.clickhouse.embedded_path
        state_file.write_text(
            json.dumps({"bootstrap": bootstrap, "broker_pid": broker.pid, "pid": os.getpid()})
        )
        print(f"kafka bootstrap: {bootstrap}")
        print(f"topics: {', '.join(topics)}")
        if warehouse is not None:
            print(f"warehouse: chdb://{warehouse} (embedded; opened by the sink)")
        else:
            print(f"warehouse: {settings.clickhouse.dsn}")
        print(f"export INGEST_KAFKA_BOOTSTRAP={bootstrap}")
        print("stack is up; Ctrl-C stops it", flush=True)
        while not stop.wait(0.5):
            if not broker.running():
                raise StopError(f"the embedded broker exited unexpectedly; see {broker.log_path}")
    finally:
        broker.stop()
        state_file.unlink(missing_ok=True)
    print("stack stopped", flush=True)
    return 0
