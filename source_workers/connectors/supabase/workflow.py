"""The long-running Supabase worker: ``python -m source_workers.connectors.supabase.workflow``.

The same as ``ingest source run supabase``.
"""

from __future__ import annotations

import sys

from source_workers import entry


def main() -> int:
    return entry.main(sys.argv[1:], source="supabase")


if __name__ == "__main__":
    sys.exit(main())
