"""``python -m sink_workers [--config F] [--log-level L] ARGS`` is ``ingest ... sink run ARGS``."""

import sys

from durable_ingest.cli import main, split_global_args

global_args, args = split_global_args(sys.argv[1:])
sys.exit(main([*global_args, "sink", "run", *args]))
