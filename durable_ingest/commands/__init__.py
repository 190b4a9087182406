"""The ``ingest`` subcommands, one module per command group.

Each module has ``register(commands)``, which adds its parsers to the root
parser's subcommands and sets ``handler`` on each: ``handler(args, settings)``
returns the exit code; a parser that sets ``needs_settings=False`` (commands
about the code, not a deployment) gets the defaults. :mod:`durable_ingest.cli`
runs the handler through :func:`foundation.process.run_handler`, which loads
the settings once and turns every :class:`~foundation.errors.IngestError` into
one line on stderr and exit code 2. The worker commands (``source run``, ``sink
run``) take their options and handlers from the workers themselves.
"""

from __future__ import annotations

from typing import Any

Subcommands = Any  # argparse's _SubParsersAction is private

__all__ = ["Subcommands"]
