"""``ingest dev <connector>``: broker, source, sink and warehouse in one command.

See :mod:`durable_ingest.dev`. ``--replay`` without a file plays the capture
the connector ships; ``--replay FILE`` plays another (``ingest source run
<source> --record FILE`` makes one).
"""

from __future__ import annotations

import argparse

from durable_ingest.commands import Subcommands
from durable_ingest.stack import ENGINES
from foundation.config import Settings
from foundation.process import data_dir_option
from source_workers.replay_feed import add_replay_options


def register(commands: Subcommands) -> None:
    dev = commands.add_parser(
        "dev",
        help="run broker, source, sink and the embedded warehouse together, with live progress",
    )
    dev.add_argument("connector", help="the connector to run (e.g. coinbase)")
    add_replay_options(dev)
    dev.add_argument(
        "--duration", type=float, default=None, metavar="SECONDS", help="stop after this long"
    )
    dev.add_argument(
        "--max-events",
        type=int,
        default=None,
        metavar="N",
        help="stop once at least N records are staged",
    )
    dev.add_argument(
        "--idle-exit",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop once nothing new was staged or written for this long, counted from the "
        "source's first connection (a feed gone quiet)",
    )
    dev.add_argument(
        "--port", type=int, default=0, help="broker port on 127.0.0.1 (default: a free one)"
    )
    dev.add_argument(
        "--engine",
        choices=ENGINES,
        default="tansu",
        help="tansu: the embedded broker, in memory (default); kafka: one Apache Kafka "
        "node, data in <data-dir>/dev/kafka (needs Java 17 and, the first time, Maven)",
    )
    dev.add_argument(
        "--interval", type=float, default=1.0, metavar="SECONDS", help="progress every (1 s)"
    )
    data_dir_option(dev)
    dev.set_defaults(handler=_dev)


def _dev(args: argparse.Namespace, settings: Settings) -> int:
    from durable_ingest.dev import DevOptions, DevRun
    from source_workers.replay_feed import replay_path

    replay = replay_path(args.connector, args.replay)
    options = DevOptions(
        connector=args.connector,
        replay=replay,
        speed=args.speed,
        duration_s=args.duration,
        max_events=args.max_events,
        idle_exit_s=args.idle_exit,
        port=args.port,
        engine=args.engine,
        interval_s=max(0.2, args.interval),
        config=args.config,
        log_level=args.log_level,
    )
    return DevRun(settings, options).run()
