"""``python -m sink_workers [--config F] [--log-level L] ARGS`` is ``ingest ... sink run ARGS``."""

import sys

from durable_ingest.cli import main

args = sys.argv[1:]
global_args: list[str] = []
while args and args[0] in ("--config", "--log-level"):
    global_args += args[:2]
    args = args[2:]
sys.exit(main([*global_args, "sink", "run", *args]))
