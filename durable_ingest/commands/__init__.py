"""The ``ingest`` subcommands, one module per command group.

Each module has ``register(commands)``, which adds its parsers to the root
parser's subcommands and sets ``handler`` on each: ``handler(args, settings)``
returns the exit code; a parser that sets ``needs_settings=False`` (commands
about the code, not a deployment) gets the defaults. :mod:`durable_ingest.cli`
loads the settings once,
calls the handler and turns every :class:`~durable_ingest.errors.IngestError`
into one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from durable_ingest.config import Settings

Handler = Callable[[argparse.Namespace, Settings], int]
Subcommands = Any  # argparse's _SubParsersAction is private


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
    from pathlib import Path

    parser.add_argument(
        "--data-dir", type=Path, default=None, help="data directory (default: data_dir setting)"
    )
