"""The entry of one sink process: its options, its handler and its ``main``.

``ingest sink run`` (the CLI registers these options) and ``python -m
sink_workers`` run :func:`handle` through :func:`foundation.process.run_handler`.
The CLI builds its parser from here; :mod:`sink_workers.run` (the warehouse and
its Kafka client) is imported only when a sink runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from foundation.config import Settings
from foundation.errors import StopError
from foundation.process import add_global_options, admin_port_option, data_dir_option, run_main


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of one sink process (``ingest sink run`` and ``python -m
    sink_workers``); the handler is :func:`handle`."""
    parser.add_argument(
        "--source", help="the source whose resources to sink (default: the only one)"
    )
    parser.add_argument(
        "--resource", action="append", dest="resources", help="only this resource (repeatable)"
    )
    parser.add_argument(
        "--chunk-size", type=int, default=20_000, help="records per read (default 20000)"
    )
    parser.add_argument(
        "--idle-exit",
        type=float,
        default=None,
        metavar="SECONDS",
        help="exit 0 after this long without records (default: run until stopped)",
    )
    data_dir_option(parser)
    admin_port_option(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    """Run one sink member with the options of :func:`add_arguments`."""
    from sink_workers.run import run_sink
    from source_workers.connectors.defaults import with_connector_defaults

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
        admin_host=args.admin_host,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sink_workers [--config F] [--log-level L] [options]``: the same process
    as ``ingest sink run``."""

    def parser() -> argparse.ArgumentParser:
        built = argparse.ArgumentParser(
            prog="python -m sink_workers", description="one sink process"
        )
        add_global_options(built)
        add_arguments(built)
        return built

    return run_main(parser, argv)
