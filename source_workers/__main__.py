"""``python -m source_workers [--config F] [--log-level L] SOURCE [ARGS]`` is ``ingest ... source run SOURCE ARGS``."""

import sys

from durable_ingest.cli import split_global_args
from source_workers.run import main_for

global_args, args = split_global_args(sys.argv[1:])
if not args:
    print("usage: python -m source_workers [--config F] SOURCE [--admin-port P]", file=sys.stderr)
    sys.exit(2)
sys.exit(main_for(args[0], [*global_args, *args[1:]]))
