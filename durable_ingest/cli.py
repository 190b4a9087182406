"""The ``ingest`` command: the root parser, global options and error handling.

The subcommands live in :mod:`durable_ingest.commands`, one module per group
(``stack``, ``source``/``sink``, ...). Every error a person can cause ends in
one line on stderr and exit code 2; nothing prints a traceback for bad input.
"""

# ruff: noqa: E402  (Ctrl-C handling is installed before the rest is imported)
from __future__ import annotations

import os
import signal
import sys


def _interrupted_while_starting(signum: int, frame: object) -> None:
    os.write(2, b"ingest: interrupted\n")
    os._exit(130)


if __name__ == "__main__" or os.path.basename(sys.argv[0]) == "ingest":
    # A Ctrl-C while Python imports the CLI and its settings: the same one line and exit
    # 130 as main() gives later, at once (an import interrupted inside pydantic-core's
    # extension is a PanicException, not a KeyboardInterrupt). _prepare() puts Python's own
    # handling back before it runs the command.
    signal.signal(signal.SIGINT, _interrupted_while_starting)

import argparse
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from durable_ingest import __version__

if TYPE_CHECKING:
    from foundation.config import Settings

# The commands and the settings models are imported by main(), inside its Ctrl-C
# handling: importing them takes a moment, and a Ctrl-C then must still be one line.
log = logging.getLogger("ingest")


def _parser() -> argparse.ArgumentParser:
    from durable_ingest.commands import (
        config,
        dev,
        dlq,
        manifest,
        new_source,
        replay,
        sql,
        stack,
        status,
        workers,
    )
    from foundation.process import add_global_options

    parser = argparse.ArgumentParser(
        prog="ingest", description="durable-ingest: live APIs into ClickHouse via Kafka"
    )
    parser.add_argument("--version", action="version", version=f"durable-ingest {__version__}")
    add_global_options(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    for module in (dev, stack, workers, config, sql, replay, status, dlq, new_source, manifest):
        module.register(commands)
    return parser


def for_operation(settings: Settings, log_level: str) -> Settings:
    """An operations command (status, dlq, replay) waits ``command_timeout_s`` for Kafka,
    and librdkafka's own lines stay out of its one-line errors (DEBUG shows them)."""
    if log_level != "DEBUG":
        logging.getLogger("staging.kafka.librdkafka").setLevel(logging.CRITICAL)
    kafka = settings.kafka
    timeout = min(kafka.connect_timeout_s, kafka.command_timeout_s)
    return settings.model_copy(
        update={"kafka": kafka.model_copy(update={"connect_timeout_s": timeout})}
    )


def main(argv: Sequence[str] | None = None) -> int:
    from foundation.process import run_main

    return run_main(_parser, argv, _prepare)


def _prepare(args: argparse.Namespace, settings: Settings) -> Settings:
    if getattr(args, "operation", False):
        settings = for_operation(settings, args.log_level)
    if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
        # Imported and configured: from here a Ctrl-C is Python's KeyboardInterrupt
        # again, so that a command's cleanup (finally blocks, closes) runs.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return settings


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
