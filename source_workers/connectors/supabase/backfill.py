"""Optional PostgREST backfill: rows changed since the checkpoint, after each join.

``GET {SUPABASE_URL}/rest/v1/{table}?select=*&{column}=gte.{since}&order={column}.asc,id.asc&limit=N&offset=K``
with the key as ``apikey`` and bearer token. Paging moves ``since`` to the
newest ``column`` value read and uses ``offset`` only to skip the rows already
read at that same value, so a row updated during the backfill (it moves to the
end) cannot shift an unread row out of reach. Each row is emitted as an
:class:`Internal` ``rest_row`` and staged as a ``SNAPSHOT``.

While a table's backfill runs, its checkpoint is held at the backfill's
progress (:meth:`CommitMark.hold`), so live changes cannot move it past rows
still unread; a backfill cut short (reconnect, stop) resumes from there. A
page over ``max_frame_bytes`` is fetched again at half the size (down to one
row, which is then dead-lettered). Without a checkpoint (first start) nothing
is read: the source starts from the live feed.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from durable_ingest.errors import MalformedFrameError
from source_workers.authoring import Internal
from source_workers.connectors.supabase.changes import pg_time_us
from source_workers.connectors.supabase.tables import TableChanges
from source_workers.context import SourceContext
from staging.envelope import rfc3339

if TYPE_CHECKING:
    from source_workers.connectors.supabase.source import SupabaseSettings


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
    assert settings.url is not None and changes.mark.cap_us is not None
    headers = {"apikey": settings.key, "Authorization": f"Bearer {settings.key}"}
    column = settings.backfill_column
    url = f"{settings.url.rstrip('/')}/rest/v1/{table}"
    since_us, read_at_since, total = changes.mark.cap_us, 0, 0
    page_size = settings.backfill_page_size
    ctx.log.info("supabase %s: backfilling rows changed since %s", table, rfc3339(since_us))
    while not ctx.stopping:
        params: dict[str, Any] = {
            "select": "*",
            column: f"gte.{rfc3339(since_us)}",
            "order": f"{column}.asc,id.asc",
            "limit": page_size,
            "offset": read_at_since,
        }
        try:
            response = await ctx.http.get_json(url, params, headers)
        except MalformedFrameError as exc:
            if page_size > 1:
                page_size //= 2  # a page over max_frame_bytes: ask for fewer rows
                continue
            await ctx.emit_raw(Internal("rest_page", {"table": table, "error": str(exc)}), table)
            read_at_since += 1  # that one row cannot be read within the limits
            continue
        rows = response.body
        if not isinstance(rows, list):
            await ctx.emit_raw(
                Internal("rest_page", {"table": table, "body": str(rows)[:65536]}), table
            )
            break
        for row in rows:
            await ctx.emit_raw(Internal("rest_row", {"table": table, "row": row}), table)
            try:
                stamp = pg_time_us(row.get(column)) if isinstance(row, dict) else None
            except ValueError:
                stamp = None  # the row was dead-lettered; paging goes on by offset
            if stamp is not None and stamp > since_us:
                since_us, read_at_since = stamp, 1
            else:
                read_at_since += 1
        total += len(rows)
        changes.mark.cap_us = since_us  # progress: everything before it is read
        if len(rows) < page_size:
            break
    ctx.log.info("supabase %s: backfilled %d rows", table, total)
    return total
