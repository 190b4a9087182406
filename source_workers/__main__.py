"""``python -m source_workers [--config F] [--log-level L] SOURCE [ARGS]`` is ``ingest ... source run SOURCE ARGS``."""

import sys

from source_workers.run import main_for

args = sys.argv[1:]
global_args: list[str] = []
while args and args[0] in ("--config", "--log-level"):
    global_args += args[:2]
    args = args[2:]
if not args:
    print("usage: python -m source_workers [--config F] SOURCE [--admin-port P]", file=sys.stderr)
    sys.exit(2)
sys.exit(main_for(args[0], [*global_args, *args[1:]]))
