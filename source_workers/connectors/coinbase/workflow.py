"""The long-running Coinbase worker: ``python -m source_workers.connectors.coinbase.workflow``.

The same as ``ingest source run coinbase``: settings from ``ingest.toml`` and
the environment, then the Durable Runtime until SIGTERM or SIGINT.
"""

from __future__ import annotations

import sys

from source_workers import entry


def main() -> int:
    return entry.main(sys.argv[1:], source="coinbase")


if __name__ == "__main__":
    sys.exit(main())
