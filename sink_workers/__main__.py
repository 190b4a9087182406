"""``python -m sink_workers`` is ``ingest sink run``."""

import sys

from durable_ingest.cli import main

sys.exit(main(["sink", "run", *sys.argv[1:]]))
