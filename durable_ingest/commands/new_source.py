"""``ingest new-source NAME [--kind websocket|http] [--root DIR]``: scaffold a connector.

See :mod:`durable_ingest.scaffold` and docs/new-source.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from durable_ingest.commands import Subcommands
from durable_ingest.scaffold import KINDS, scaffold
from foundation.config import Settings


def register(commands: Subcommands) -> None:
    new = commands.add_parser(
        "new-source", help="scaffold a connector (source, resource, schema, test provider, tests)"
    )
    new.add_argument("name", help="the connector's name, e.g. quakes (lowercase, digits, _)")
    new.add_argument(
        "--kind",
        choices=KINDS,
        default="websocket",
        help="how it reaches its provider: a websocket feed or a polled HTTP API",
    )
    new.add_argument(
        "--root", type=Path, default=None, help="the checkout to write into (default: this one)"
    )
    new.set_defaults(handler=_new_source, needs_settings=False)


def _new_source(args: argparse.Namespace, _settings: Settings) -> int:
    written = scaffold(args.name, args.kind, args.root)
    for path in written:
        verb = "named its variables in" if path.name == "ingest.toml" else "created"
        print(f"{verb} {path}")
    name = args.name
    print(
        f"\nnext: .venv/bin/python -m pytest tests/unit/test_{name}_resource.py "
        f"tests/integration/test_{name}_source.py\n"
        f"then: make source.py, resources/events.py, schemas/{name}/events.avsc and "
        f"tests/servers/{name}.py speak your provider (docs/new-source.md), and "
        "regenerate the component manifest: ingest manifest --out docs/manifest.json"
    )
    return 0
