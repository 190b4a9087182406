"""The frame every durable-ingest process runs in.

Global options (``--config``, ``--log-level``), logging, the settings loaded
once, and every :class:`~foundation.errors.IngestError` as one line on stderr
with exit code 2. The ``ingest`` command (:mod:`durable_ingest.cli`) and the
worker entry points (``python -m source_workers``, ``python -m sink_workers``,
a connector's ``workflow.py``) all run their handler through
:func:`run_handler`, so a bad input reads the same whichever started the
process, and the workers need nothing from the application layer.

A parser sets ``handler(args, settings) -> exit code`` on the namespace; one
that sets ``needs_settings=False`` (commands about the code, not a deployment)
gets the defaults; a ``--data-dir`` option overrides the ``data_dir`` setting.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from foundation.config import Settings, settings_from
from foundation.config_load import load_settings
from foundation.errors import IngestError

Handler = Callable[[argparse.Namespace, Settings], int]
# What a command may do to the settings before its handler runs (after loading).
Prepare = Callable[[argparse.Namespace, Settings], Settings]


def add_global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        help="TOML configuration file (default: $INGEST_CONFIG or ./ingest.toml)",
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )


def admin_port_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--admin-port",
        type=int,
        default=None,
        help="serve /health and /metrics on the admin host (0 picks a port; default: off)",
    )
    parser.add_argument(
        "--admin-host",
        default="127.0.0.1",
        help="address the admin port binds (default 127.0.0.1; 0.0.0.0 in containers)",
    )


def data_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="data directory (default: data_dir setting)"
    )


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def settings_for(args: argparse.Namespace) -> Settings:
    """The settings a parsed command runs with: ``--config`` (or its defaults) and the
    environment, with ``--data-dir`` over the ``data_dir`` setting."""
    if not getattr(args, "needs_settings", True):
        return settings_from({})
    overrides: dict[str, Any] = {}
    if getattr(args, "data_dir", None) is not None:
        overrides["data_dir"] = str(args.data_dir)
    return load_settings(args.config, overrides=overrides)


def dump_stacks_on_sigusr1() -> None:
    """``kill -USR1 <pid>`` writes every thread's Python stack to stderr and the process
    goes on: where a worker that seems stuck is waiting, without stopping it. (Not where
    stderr is no file, as when a program runs ``main`` inside its own process.)"""
    if not hasattr(signal, "SIGUSR1"):
        return
    try:
        sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)


def run_handler(args: argparse.Namespace, prepare: Prepare | None = None) -> int:
    """Set up logging (and stack dumps on SIGUSR1), load the settings, run
    ``args.handler``: its exit code, or 2 with one line on stderr for an
    :class:`IngestError`."""
    setup_logging(args.log_level)
    dump_stacks_on_sigusr1()
    try:
        settings = settings_for(args)
        if prepare is not None:
            settings = prepare(args, settings)
        return int(args.handler(args, settings))
    except IngestError as exc:
        print(f"ingest: error: {exc}", file=sys.stderr)
        return 2


def run_main(
    parser: Callable[[], argparse.ArgumentParser],
    argv: Sequence[str] | None,
    prepare: Prepare | None = None,
) -> int:
    """A process's ``main``: build the parser, parse ``argv`` and run the handler; a Ctrl-C
    before the handler installs its own handling is one line and exit 130."""
    try:
        return run_handler(parser().parse_args(argv), prepare)
    except KeyboardInterrupt:
        print("ingest: interrupted", file=sys.stderr)
        return 130
