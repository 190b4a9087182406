"""The long-running usgs worker: ``python -m source_workers.connectors.usgs.workflow``.

The same as ``ingest source run usgs``: settings from ``ingest.toml`` and
the environment, then the Durable Runtime until SIGTERM or SIGINT.
"""

from __future__ import annotations

import sys

from source_workers import entry


def main() -> int:
    return entry.main(sys.argv[1:], source="usgs")


if __name__ == "__main__":
    sys.exit(main())
