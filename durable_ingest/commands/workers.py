"""``ingest source run SOURCE`` and ``ingest sink run``: the two worker processes.

The container image's entry points (see deploy/Dockerfile). Each runs until
SIGTERM or SIGINT, finishes what it holds, and exits 0. Their options and
handlers belong to the workers (:mod:`source_workers.entry`,
:mod:`sink_workers.entry`), which run the same way without the CLI.
"""

from __future__ import annotations

from durable_ingest.commands import Subcommands
from sink_workers import entry as sink_run
from source_workers import entry as source_run


def register(commands: Subcommands) -> None:
    source = commands.add_parser("source", help="source workers: provider APIs into staging")
    source_commands = source.add_subparsers(dest="source_command", required=True)
    run = source_commands.add_parser(
        "run", help="one source process; SIGTERM or Ctrl-C stages what was received and stops"
    )
    run.add_argument("source", help="a configured source, or a connector name (e.g. coinbase)")
    source_run.add_arguments(run)

    sink = commands.add_parser("sink", help="sink workers: staged topics into ClickHouse")
    sink_commands = sink.add_subparsers(dest="sink_command", required=True)
    run = sink_commands.add_parser(
        "run", help="one sink process (consumer-group member); SIGTERM or Ctrl-C stops it cleanly"
    )
    sink_run.add_arguments(run)
