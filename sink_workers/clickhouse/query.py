"""Read-only queries against the warehouse, for ``ingest sql`` and a sink's ``/sql``.

Every query runs with ``readonly=1``: the server refuses writes, DDL and
changes of settings, whatever the text says. In embedded mode the sink process
owns the warehouse, and its admin thread queries it while the worker inserts:
give the query its own client (settings stick to a chDB client, and
``readonly=1`` would then refuse the inserts' settings), and ``lock``
serializes the two (the writer takes it around each insert).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from foundation.errors import QueryError

MAX_ROWS = 10_000
"""Rows a query answers at most; more are cut and the answer says so."""
MAX_SECONDS = 10
"""A query runs at most this long: in a sink, inserts wait while it runs."""


class ReadOnlyQuery:
    """``query(sql, parameters)`` -> ``{"columns", "types", "rows", "truncated"}``;
    QueryError if refused. ``parameters`` are bound by clickhouse-connect to the
    query's ``{name:Type}`` placeholders (server-side binding)."""

    def __init__(self, client: Client, lock: threading.Lock | None = None) -> None:
        self._client = client
        self._lock: AbstractContextManager[Any] = lock if lock is not None else nullcontext()

    def __call__(
        self,
        sql: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        strings_as_bytes: bool = False,
    ) -> dict[str, Any]:
        """``strings_as_bytes``: String columns come back as the bytes stored (by default
        clickhouse-connect decodes UTF-8 and gives the hex of a value that is not)."""
        text = sql.strip().rstrip(";").strip()
        check_read_only(text)
        try:
            with self._lock:
                result = self._client.query(
                    text,
                    parameters=dict(parameters) if parameters is not None else None,
                    query_formats={"String": "bytes"} if strings_as_bytes else None,
                    settings={
                        "readonly": 1,
                        "max_result_rows": MAX_ROWS + 1,
                        "result_overflow_mode": "break",
                        "max_execution_time": MAX_SECONDS,
                    },
                )
        except ClickHouseError as exc:
            reason = users_view(_first_line(exc), text)
            raise QueryError(f"the warehouse refused the query: {reason}") from None
        rows = [list(row) for row in result.result_rows]
        return {
            "columns": list(result.column_names),
            "types": [t.name for t in result.column_types],
            "rows": rows[:MAX_ROWS],
            "truncated": len(rows) > MAX_ROWS,
        }


READ_KINDS = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS")
_COMMENTS = re.compile(r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/|\()*", re.DOTALL)
_SETTINGS = re.compile(r"\s*SETTINGS readonly = '1'(?:, \w+ = '[^']*')*")
_SYNTAX = re.compile(
    r"Syntax error: failed at position (\d+) \(([^)]*)\) \(line (\d+), col (\d+)\)(: .*)?$"
)


def statement_kind(text: str) -> str:
    """The first keyword of a statement (after comments and opening brackets), upper case."""
    rest = _COMMENTS.sub("", text, count=1)
    word = re.match(r"[A-Za-z]+", rest)
    return word.group(0).upper() if word else ""


def check_read_only(text: str) -> None:
    """QueryError naming the statement kind unless it is a read (SELECT, SHOW, ...)."""
    if not text:
        raise QueryError("the query is empty")
    kind = statement_kind(text)
    if kind not in READ_KINDS:
        what = f"{kind} statements are" if kind else "this statement is"
        raise QueryError(
            f"ingest sql runs read-only queries: {what} refused "
            f"(use {', '.join(k for k in READ_KINDS if k != 'DESC')})"
        )


def users_view(reason: str, text: str) -> str:
    """ClickHouse's reason, without the settings this module appended to the query, and
    with a syntax error past the user's text said as such."""
    reason = _SETTINGS.sub("", reason)
    syntax = _SYNTAX.search(reason)
    if syntax is not None:
        position, token, line, col, _ = syntax.groups()
        lines = text.count("\n") + 1
        if int(line) > lines or int(position) >= len(text):
            plain = "Syntax error: the query ends before it is complete"
        else:
            plain = f"Syntax error at line {line}, column {col} (near {token})"
        reason = reason[: syntax.start()] + plain
    return reason


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[:500]
