"""The long-running Supabase worker: ``python -m source_workers.connectors.supabase.workflow``.

The same as ``ingest source run supabase``.
"""

from __future__ import annotations

import sys

from source_workers.run import main_for


def main() -> int:
    return main_for("supabase", sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
