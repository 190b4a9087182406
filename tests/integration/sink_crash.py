"""``ingest sink run`` that kills itself with SIGKILL around its N-th insert.

``python -m tests.integration.sink_crash before|after N [sink run args...]``:
fault injection for the durability tests, from outside the product: it wraps
the ClickHouse table writer's inserts (``insert_avro``, ClickHouse's Avro
input, and ``insert``, the Python path) before the CLI starts.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from sink_workers.clickhouse import writer

when, nth = sys.argv[1], int(sys.argv[2])
calls = 0


def crashing(original: Callable[..., int]) -> Callable[..., int]:
    def insert(self: writer.ClickHouseTableWriter, *args: Any) -> int:
        global calls
        calls += 1
        if calls == nth and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        rows = original(self, *args)
        if calls == nth and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)  # written, not committed
        return rows

    return insert


writer.ClickHouseTableWriter.insert = crashing(writer.ClickHouseTableWriter.insert)  # type: ignore[method-assign]
writer.ClickHouseTableWriter.insert_avro = crashing(writer.ClickHouseTableWriter.insert_avro)  # type: ignore[method-assign]

from durable_ingest.cli import main  # noqa: E402

sys.exit(main(["sink", "run", *sys.argv[3:]]))
