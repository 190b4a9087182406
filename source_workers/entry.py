"""The entry of one source process: its options, its handler and its ``main``.

``ingest source run`` (the CLI registers these options), ``python -m
source_workers`` and a connector's ``workflow.py`` all run :func:`handle` through
:func:`foundation.process.run_handler`. The CLI builds its parser from here;
:mod:`source_workers.run` (the runtime, staging and its Kafka client) is imported
only when a source runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from foundation.config import Settings
from foundation.process import add_global_options, admin_port_option, data_dir_option, run_main
from source_workers.replay_feed import add_replay_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of one source process (``ingest source run`` and the worker entry
    points); the handler is :func:`handle`."""
    parser.add_argument(
        "--record",
        type=Path,
        metavar="FILE",
        help="also write every websocket frame received to this new capture file "
        "(replay it with: ingest dev <connector> --replay FILE)",
    )
    add_replay_options(parser)
    parser.add_argument(
        "--instance",
        default="",
        metavar="NAME",
        help="this process's name among several processes of one source that stage into "
        "the same topics (e.g. one per product): each resumes from its own checkpoints",
    )
    admin_port_option(parser)
    data_dir_option(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    """Run the source ``args.source`` with the options of :func:`add_arguments`."""
    from source_workers.connectors import connector_of
    from source_workers.replay_feed import check_speed, replay_path
    from source_workers.run import run_source

    replay: Path | None = None
    if args.replay is not None:
        configured = settings.sources.get(args.source)
        connector = connector_of(args.source, configured.connector if configured else None)
        replay = replay_path(connector, args.replay)
    check_speed(args.speed)
    run_source(
        settings,
        args.source,
        admin_port=args.admin_port,
        admin_host=args.admin_host,
        record=args.record,
        instance=args.instance,
        replay=replay,
        speed=args.speed,
    )
    return 0


def main(argv: Sequence[str] | None = None, *, source: str | None = None) -> int:
    """``python -m source_workers [--config F] [--log-level L] SOURCE [options]``, or, with
    ``source`` (a connector's ``workflow.py``), the same without SOURCE: the same process
    as ``ingest source run``."""

    def parser() -> argparse.ArgumentParser:
        prog = "python -m source_workers" if source is None else f"{source} workflow"
        built = argparse.ArgumentParser(prog=prog, description="one source process")
        add_global_options(built)
        if source is None:
            built.add_argument("source", help="a configured source, or a connector name")
        else:
            built.set_defaults(source=source)
        add_arguments(built)
        return built

    return run_main(parser, argv)
