"""The long-running Coinbase worker: ``python -m source_workers.connectors.coinbase.workflow``.

The same as ``ingest source run coinbase``: settings from ``ingest.toml`` and
the environment, then the Durable Runtime until SIGTERM or SIGINT.
"""

from __future__ import annotations

import sys

from source_workers.run import main_for


def main() -> int:
    return main_for("coinbase", sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
