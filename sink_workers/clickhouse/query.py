"""Read-only queries against the warehouse, for ``ingest sql`` and a sink's ``/sql``.

Every query runs with ``readonly=1``: the server refuses writes, DDL and
changes of settings, whatever the text says. In embedded mode the sink process
owns the warehouse, and its admin thread queries it while the worker inserts:
give the query its own client (settings stick to a chDB client, and
``readonly=1`` would then refuse the inserts' settings), and ``lock``
serializes the two (the writer takes it around each insert).
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from durable_ingest.errors import QueryError

MAX_ROWS = 10_000
"""Rows a query answers at most; more are cut and the answer says so."""
MAX_SECONDS = 10
"""A query runs at most this long: in a sink, inserts wait while it runs."""


class ReadOnlyQuery:
    """``query(sql)`` -> ``{"columns", "types", "rows", "truncated"}``; QueryError if refused."""

    def __init__(self, client: Client, lock: threading.Lock | None = None) -> None:
        self._client = client
        self._lock: AbstractContextManager[Any] = lock if lock is not None else nullcontext()

    def __call__(self, sql: str) -> dict[str, Any]:
        text = sql.strip().rstrip(";").strip()
        if not text:
            raise QueryError("the query is empty")
        try:
            with self._lock:
                result = self._client.query(
                    text,
                    settings={
                        "readonly": 1,
                        "max_result_rows": MAX_ROWS + 1,
                        "result_overflow_mode": "break",
                        "max_execution_time": MAX_SECONDS,
                    },
                )
        except ClickHouseError as exc:
            raise QueryError(f"the warehouse refused the query: {_first_line(exc)}") from None
        rows = [list(row) for row in result.result_rows]
        return {
            "columns": list(result.column_names),
            "types": [t.name for t in result.column_types],
            "rows": rows[:MAX_ROWS],
            "truncated": len(rows) > MAX_ROWS,
        }


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[:500]
