"""``python -m sink_workers [--config F] [--log-level L] [options]``: the same process as
``ingest sink run [options]`` (see :func:`sink_workers.entry.main`)."""

import sys

from sink_workers.entry import main

sys.exit(main())
