"""``ingest replay --resource R --from X [--to Y] [--into TABLE]``: re-read staged records.

Reads a resource's staging topic outside any consumer group (the live sink's
group is never joined nor committed) and writes the range into the
resource's live table, or a shadow table with ``--into``, keeping each
natural key once. The report goes to stdout (``--json`` for machines), the
warnings to stderr. See docs/replay.md.
"""

from __future__ import annotations

import argparse
import json
import sys

from durable_ingest.commands import Subcommands
from durable_ingest.render import text_table
from foundation.config import Settings
from foundation.process import data_dir_option


def register(commands: Subcommands) -> None:
    replay = commands.add_parser(
        "replay",
        help="re-read a resource's staged records into its table or a shadow table",
        description=(
            "Re-read staged records of one resource from Kafka into its live table (only the "
            "natural keys the table lacks) or a shadow table, without touching the live sink's "
            "consumer group."
        ),
    )
    replay.add_argument("--resource", required=True, help="the resource to replay")
    replay.add_argument("--source", help="its source (default: the only configured source)")
    replay.add_argument(
        "--from",
        dest="start",
        required=True,
        metavar="WHERE",
        help="an RFC 3339 time (2026-11-22T03:00:00Z), offset:N (every partition), "
        "P:N[,P:N...] (those partitions only) or earliest",
    )
    replay.add_argument(
        "--to",
        dest="stop",
        metavar="WHERE",
        help="exclusive end: a time, offset:N or P:N[,P:N...] "
        "(default: the moment the replay starts)",
    )
    replay.add_argument(
        "--into",
        metavar="TABLE",
        help="a shadow table in clickhouse.database, created like the live one "
        "(default: the live table <source>_<resource>)",
    )
    replay.add_argument(
        "--allow-gap",
        action="store_true",
        help="start at the retained data when --from is older than it (default: refuse)",
    )
    replay.add_argument(
        "--dry-run",
        action="store_true",
        help="resolve the range and count its records; open no warehouse, write nothing",
    )
    replay.add_argument("--json", action="store_true", help="print the report as JSON")
    replay.add_argument(
        "--block-size",
        type=int,
        default=20_000,
        help="offsets per insert block and key check (default 20000)",
    )
    replay.add_argument(
        "--idle",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="end a partition's scan after this long without records (default 2)",
    )
    data_dir_option(replay)
    replay.set_defaults(handler=_replay, operation=True)


def _warn(message: str) -> None:
    print(f"ingest: warning: {message}", file=sys.stderr, flush=True)


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from durable_ingest.operations.replay import ReplayRequest, run_replay
    from durable_ingest.operations.replay_plan import parse_bound

    request = ReplayRequest(
        resource=args.resource,
        source=args.source,
        start=parse_bound(args.start, "--from"),
        stop=None if args.stop is None else parse_bound(args.stop, "--to"),
        into=args.into,
        allow_gap=args.allow_gap,
        dry_run=args.dry_run,
        block_size=args.block_size,
        idle_s=args.idle,
    )
    report = run_replay(settings, request, warn=_warn)
    if args.json:
        print(json.dumps(report.as_json()))
        return 0
    kind = "live table" if report.live else "shadow table"
    verb = "would replay (dry run)" if report.dry_run else "replayed"
    print(
        f"{verb} {report.source}.{report.resource} from {report.topic} into {report.table} ({kind})"
    )
    counts = ("read", "written", "deduplicated", "corrupt")
    data = report.as_json()
    rows = [
        [
            p["partition"],
            p["start"],
            "end" if p["stop"] is None else p["stop"],
            *("-" if p[n] is None else p[n] for n in counts),
        ]
        for p in data["partitions"]
    ]
    totals = data["totals"]
    rows.append(["total", "", "", *("-" if totals[n] is None else totals[n] for n in counts)])
    print(text_table(["partition", "start", "stop", *counts], rows))
    if not data["partitions"]:
        print("no partition has records in the range")
    if totals["skipped"]:
        print(f"({totals['skipped']} records before --from were read and skipped)")
    return 0
