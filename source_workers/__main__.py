"""``python -m source_workers [--config F] [--log-level L] SOURCE [options]``: the same
process as ``ingest source run SOURCE [options]`` (see :func:`source_workers.entry.main`)."""

import sys

from source_workers.entry import main

sys.exit(main())
