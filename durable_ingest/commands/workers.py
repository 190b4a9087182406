"""``ingest source run SOURCE`` and ``ingest sink run``: the two worker processes.

The container image's entry points (see deploy/Dockerfile). Each runs until
SIGTERM or SIGINT, finishes what it holds, and exits 0.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from durable_ingest.commands import Subcommands, admin_port_option, data_dir_option
from durable_ingest.compose import with_connector_defaults
from durable_ingest.config import Settings
from durable_ingest.errors import StopError
from source_workers.replay_feed import SAMPLE


def register(commands: Subcommands) -> None:
    source = commands.add_parser("source", help="source workers: provider APIs into staging")
    source_commands = source.add_subparsers(dest="source_command", required=True)
    source_run = source_commands.add_parser(
        "run", help="one source process; SIGTERM or Ctrl-C stages what was received and stops"
    )
    source_run.add_argument(
        "source", help="a configured source, or a connector name (e.g. coinbase)"
    )
    source_run.add_argument(
        "--record",
        type=Path,
        metavar="FILE",
        help="also write every websocket frame received to this new capture file "
        "(replay it with: ingest dev <connector> --replay FILE)",
    )
    source_run.add_argument(
        "--replay",
        nargs="?",
        const=SAMPLE,
        metavar="FILE",
        help="feed the connector a captured feed over a local websocket instead of its "
        "provider (offline); without FILE, the capture the connector ships",
    )
    source_run.add_argument(
        "--speed", type=float, default=1.0, help="with --replay: this many times faster (1)"
    )
    source_run.add_argument(
        "--instance",
        default="",
        metavar="NAME",
        help="this process's name among several processes of one source that stage into "
        "the same topics (e.g. one per product): each resumes from its own checkpoints",
    )
    admin_port_option(source_run)
    data_dir_option(source_run)
    source_run.set_defaults(handler=_source_run)

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
    data_dir_option(run)
    admin_port_option(run)
    run.set_defaults(handler=_sink_run)


def _source_run(args: argparse.Namespace, settings: Settings) -> int:
    from source_workers.replay_feed import check_speed, replay_path
    from source_workers.run import run_source

    replay: Path | None = None
    if args.replay is not None:
        from source_workers.connectors import connector_of

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


def _sink_run(args: argparse.Namespace, settings: Settings) -> int:
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
        admin_host=args.admin_host,
    )
    return 0
