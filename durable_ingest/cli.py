"""The ``ingest`` command.

``ingest source run SOURCE [--admin-port P]`` runs one source worker (see
:mod:`source_workers.run`).

``ingest sink run [--source S] [--resource R] [--idle-exit S] [--admin-port P]``
runs one sink worker (see :mod:`sink_workers.run`).

``ingest stack up [--port P] [--data-dir D] [--config F]`` starts the embedded
stack: the Kafka-compatible broker on 127.0.0.1, the staging, dead-letter and
checkpoint topics the configuration declares, and the data directory that
holds the embedded warehouse (chDB, opened by the workers that write it).

Every error a person can cause ends in one line on stderr and exit code 2;
nothing prints a traceback for bad input.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from durable_ingest import __version__
from durable_ingest.compose import (
    checkpoint_store,
    schema_catalog,
    staged_resources,
    staging_provider,
    with_connector_defaults,
)
from durable_ingest.config import Settings, load_settings
from durable_ingest.errors import IngestError, StopError
from durable_ingest.stack import EmbeddedBroker, free_port

log = logging.getLogger("ingest")
DEFAULT_PORT = 9092


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ingest", description="durable-ingest: live APIs into ClickHouse via Kafka"
    )
    parser.add_argument("--version", action="version", version=f"durable-ingest {__version__}")
    parser.add_argument(
        "--config",
        type=Path,
        help="TOML configuration file (default: $INGEST_CONFIG or ./ingest.toml)",
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    commands = parser.add_subparsers(dest="command", required=True)
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
    up.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the stack keeps its files (default: data_dir setting)",
    )
    source = commands.add_parser("source", help="source workers: provider APIs into staging")
    source_commands = source.add_subparsers(dest="source_command", required=True)
    source_run = source_commands.add_parser(
        "run", help="one source process; SIGTERM or Ctrl-C stages what was received and stops"
    )
    source_run.add_argument(
        "source", help="a configured source, or a connector name (e.g. coinbase)"
    )
    source_run.add_argument(
        "--admin-port",
        type=int,
        default=None,
        help="serve /health and /metrics on 127.0.0.1:PORT (0 picks one; default: off)",
    )
    source_run.add_argument(
        "--data-dir", type=Path, default=None, help="data directory (default: data_dir setting)"
    )
    sink = commands.add_parser("sink", help="sink workers: staged topics into ClickHouse")
    sink_commands = sink.add_subparsers(dest="sink_command", required=True)
    run = sink_commands.add_parser(
        "run", help="one sink process (consumer-group member); SIGTERM or Ctrl-C stops it cleanly"
    )
    run.add_argument("--source", help="the source whose resources to sink (default: the only one)")
    run.add_argument(
        "--resource", action="append", dest="resources", help="only this resource (repeatable)"
    )
    run.add_argument(
        "--chunk-size", type=int, default=5_000, help="records per read (default 5000)"
    )
    run.add_argument(
        "--idle-exit",
        type=float,
        default=None,
        metavar="SECONDS",
        help="exit 0 after this long without records (default: run until stopped)",
    )
    run.add_argument(
        "--data-dir", type=Path, default=None, help="data directory (embedded warehouse)"
    )
    run.add_argument(
        "--admin-port",
        type=int,
        default=None,
        help="serve /health and /metrics on 127.0.0.1:PORT (0 picks one; default: off)",
    )
    return parser


GLOBAL_OPTIONS = ("--config", "--log-level")


def split_global_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Leading ``--config F`` / ``--log-level L`` pairs, and the rest (for the
    ``python -m sink_workers`` / ``source_workers`` entry points)."""
    args = list(argv)
    global_args: list[str] = []
    while args and args[0] in GLOBAL_OPTIONS:
        global_args += args[:2]
        args = args[2:]
    return global_args, args


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def stack_up(settings: Settings, port: int | None) -> int:
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    port = DEFAULT_PORT if port is None else port
    if port == 0:
        port = free_port()
    if not 0 < port < 65536:
        raise StopError(f"--port {port} is not a TCP port")
    catalog = schema_catalog(settings)
    resources = staged_resources(settings, catalog)

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
        settings = settings.model_copy(
            update={"kafka": settings.kafka.model_copy(update={"bootstrap": bootstrap})}
        )
        staging_provider(settings, catalog).ensure_topics(resources)
        checkpoint_store(settings).close()  # creates ingest._checkpoints, checks compaction
        warehouse = settings.clickhouse.embedded_path
        state_file.write_text(
            json.dumps({"bootstrap": bootstrap, "broker_pid": broker.pid, "pid": os.getpid()})
        )
        print(f"kafka bootstrap: {bootstrap}")
        topics = [t.name for r in resources for t in (r.topic, r.dlq)]
        print(f"topics: {', '.join([*topics, settings.staging.checkpoint_topic])}")
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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging(args.log_level)
    try:
        overrides = {}
        if getattr(args, "data_dir", None) is not None:
            overrides["data_dir"] = str(args.data_dir)
        settings = load_settings(args.config, overrides=overrides)
        if args.command == "stack" and args.stack_command == "up":
            return stack_up(settings, args.port)
        if args.command == "source" and args.source_command == "run":
            from source_workers.run import run_source

            run_source(settings, args.source, admin_port=args.admin_port)
            return 0
        if args.command == "sink" and args.sink_command == "run":
            from sink_workers.run import run_sink

            settings = with_connector_defaults(settings, args.source)
            if args.chunk_size < 1:
                raise StopError(f"--chunk-size must be at least 1, not {args.chunk_size}")
            run_sink(
                settings,
                source=args.source,
                resources=args.resources,
                chunk_size=args.chunk_size,
                idle_exit_s=args.idle_exit,
                admin_port=args.admin_port,
            )
            return 0
    except IngestError as exc:
        print(f"ingest: error: {exc}", file=sys.stderr)
        return 2
    return 2  # unreachable: argparse requires a command


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
