"""Optional PostgREST backfill: rows changed since the checkpoint, after each join.

``GET {SUPABASE_URL}/rest/v1/{table}?select=*&{column}=gte.{since}&order={column}.asc,id.asc&limit=N``
with the key as ``apikey`` and bearer token, then page by key:
``or=({column}.gt.{ts},and({column}.eq.{ts},id.gt.{id}))`` after the last row
read, so rows updated or deleted meanwhile cannot shift an unread row out of
reach. ``since`` is the hold less ``SUPABASE_BACKFILL_MARGIN_S``: the
checkpoint counts commit times, the column is usually set at a transaction's
start, and a transaction open across the disconnect commits after it began.
Each row is emitted as an :class:`Internal` ``rest_row`` and staged as a
``SNAPSHOT`` (repeats collapse on the natural key).

While a table's backfill runs, its checkpoint is held at the backfill's
progress (:meth:`CommitMark.hold`), so live changes cannot move it past rows
still unread; a backfill cut short (reconnect, stop, an unreadable answer,
which ends the session) resumes from there. A page over ``max_frame_bytes``
is fetched again at half the size; a single row over it is dead-lettered by
its key and paged past. Without a checkpoint (first start) nothing is read:
the source starts from the live feed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from foundation.errors import ConnectionLostError, MalformedFrameError
from source_workers.authoring import Internal
from source_workers.connectors.supabase.changes import pg_time_us
from source_workers.connectors.supabase.settings import SupabaseSettings
from source_workers.connectors.supabase.tables import TableChanges
from source_workers.context import SourceContext
from staging.times import rfc3339


async def backfill_tables(
    ctx: SourceContext,
    joined: asyncio.Event,
    tables: dict[str, TableChanges],
    settings: SupabaseSettings,
) -> None:
    await joined.wait()
    for table, changes in tables.items():
        if changes.mark.cap_us is None:
            ctx.log.info("supabase %s: no checkpoint yet; no backfill", table)
            continue
        total = await backfill_table(ctx, table, changes, settings)
        if ctx.stopping:
            return
        changes.mark.release()
        ctx.metrics.inc(
            "supabase_backfilled_rows_total", total, {"source": ctx.source, "table": table}
        )


async def backfill_table(
    ctx: SourceContext, table: str, changes: TableChanges, settings: SupabaseSettings
) -> int:
    """Read every row whose ``column`` is at or after the hold (less the margin), by key."""
    assert settings.url is not None and changes.mark.cap_us is not None
    headers = {"apikey": settings.key, "Authorization": f"Bearer {settings.key}"}
    column = settings.backfill_column
    url = f"{settings.url.rstrip('/')}/rest/v1/{table}"
    since_us = changes.mark.cap_us - int(settings.backfill_margin_s * 1_000_000)
    last_id: Any = None
    total = 0
    page_size = settings.backfill_page_size
    ctx.log.info("supabase %s: backfilling rows changed since %s", table, rfc3339(since_us))
    while not ctx.stopping:
        params = _page_params(column, since_us, last_id, page_size)
        try:
            response = await ctx.http.get_json(url, params, headers)
        except MalformedFrameError as exc:
            if "body over" not in exc.reason:
                raise _bad_answer(table, exc.reason) from None
            if page_size > 1:
                page_size //= 2  # over max_frame_bytes: ask for fewer rows
                continue
            since_us, last_id = await _skip_one_row(ctx, url, headers, table, column, params)
            continue
        rows = response.body
        if not isinstance(rows, list):
            raise _bad_answer(table, f"the body is a {type(rows).__name__}, not a list")
        for row in rows:
            await ctx.emit_raw(
                Internal("rest_row", {"table": table, "row": row, "time_column": column}), table
            )
            since_us, last_id = _key_of(row, column, table)
        total += len(rows)
        changes.mark.cap_us = max(changes.mark.cap_us, since_us)  # read up to here
        if len(rows) < page_size:
            break
        page_size = settings.backfill_page_size
    ctx.log.info("supabase %s: backfilled %d rows", table, total)
    return total


def _page_params(column: str, since_us: int, last_id: Any, limit: int) -> dict[str, Any]:
    """Keyset paging on (column, id): rows after the last one read, in that order."""
    stamp = rfc3339(since_us)
    params: dict[str, Any] = {"select": "*", "order": f"{column}.asc,id.asc", "limit": limit}
    if last_id is None:
        params[column] = f"gte.{stamp}"
    else:
        params["or"] = f"({column}.gt.{stamp},and({column}.eq.{stamp},id.gt.{last_id}))"
    return params


def _key_of(row: Any, column: str, table: str) -> tuple[int, Any]:
    try:
        return pg_time_us(row[column]), int(row["id"])
    except (TypeError, KeyError, ValueError):
        raise _bad_answer(table, f"a row without a readable {column} and id") from None


async def _skip_one_row(
    ctx: SourceContext,
    url: str,
    headers: dict[str, str],
    table: str,
    column: str,
    params: dict[str, Any],
) -> tuple[int, Any]:
    """One row is over max_frame_bytes on its own: dead-letter its key and page past it."""
    response = await ctx.http.get_json(
        url, {**params, "select": f"id,{column}", "limit": 1}, headers
    )
    rows = response.body if isinstance(response.body, list) else []
    if not rows:
        raise _bad_answer(table, "a row too large to read and no key for it")
    since_us, row_id = _key_of(rows[0], column, table)
    await ctx.emit_raw(
        Internal("rest_page", {"table": table, "id": row_id, "reason": "row over max_frame_bytes"}),
        table,
    )
    return since_us, row_id


def _bad_answer(table: str, why: str) -> ConnectionLostError:
    """A PostgREST answer that cannot be read: the backfill resumes from its hold later."""
    return ConnectionLostError(
        f"supabase {table}: PostgREST answer not usable ({why}); backfill resumes after reconnect",
        url="postgrest",
        reason=why,
    )
