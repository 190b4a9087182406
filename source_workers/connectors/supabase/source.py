"""Source ``supabase``: Supabase Realtime ``postgres_changes`` over the Phoenix channel protocol.

``start`` opens ``{SUPABASE_URL}/realtime/v1/websocket?apikey=...&vsn=1.0.0``,
joins one channel (``phx_join`` with a ``postgres_changes`` configuration for
each configured table of ``SUPABASE_SCHEMA``), heartbeats on the ``phoenix``
topic, optionally backfills through PostgREST once joined, and emits every
frame. :class:`Realtime` ``control`` handles the protocol's own messages:

* ``phx_reply`` to the join: ``ok`` marks the channel joined; ``error`` stops
  the worker when the key or the configuration is refused, else reconnects;
* ``phx_reply`` on ``phoenix``: a heartbeat answered (a heartbeat not
  answered before the next is due ends the session: reconnect);
* ``system``: ``ok`` is logged; an error about an expired token stops the
  worker (a static key cannot be refreshed); other errors reconnect;
* ``phx_error`` (the channel crashed) and ``phx_close``: reconnect and rejoin;
* presence and broadcast messages are consumed and ignored.

Realtime does not replay changes missed while disconnected. With
``SUPABASE_BACKFILL=true`` each join is followed by a PostgREST read of every
table's rows whose ``SUPABASE_BACKFILL_COLUMN`` is at or after the resource's
checkpoint, staged as ``SNAPSHOT`` rows (deletes cannot be recovered that way).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

from foundation.clock import wait_event
from foundation.errors import ConfigError, ConnectionLostError, ProviderRefusedError
from source_workers.connectors.supabase.backfill import backfill_tables
from source_workers.connectors.supabase.settings import SupabaseSettings
from source_workers.connectors.supabase.tables import TableChanges
from source_workers.context import SourceContext
from source_workers.transport.protocol import Stream

log = logging.getLogger(__name__)

CHANNEL = "realtime:durable-ingest"
_REFUSED_WORDS = ("jwt", "token", "unauthorized", "not authorized", "invalid api key", "apikey")


class Realtime:
    """Protocol state of one worker: refs, the join, the outstanding heartbeat."""

    def __init__(self, tables: dict[str, TableChanges]) -> None:
        self.tables = tables
        self._refs = itertools.count(1)
        self.join_ref: str | None = None
        self.joined = asyncio.Event()
        self.heartbeat_ref: str | None = None

    def ref(self) -> str:
        return str(next(self._refs))

    def join_message(self, settings: SupabaseSettings) -> dict[str, Any]:
        self.join_ref = self.ref()
        self.joined.clear()
        changes = [
            {"event": "*", "schema": settings.db_schema, "table": table}
            for table in settings.tables
            if table in self.tables
        ]
        return {
            "topic": CHANNEL,
            "event": "phx_join",
            "payload": {
                "config": {
                    "broadcast": {"self": False, "ack": False},
                    "presence": {"key": ""},
                    "postgres_changes": changes,
                },
                "access_token": settings.key,
            },
            "ref": self.join_ref,
            "join_ref": self.join_ref,
        }

    def control(self, message: Any) -> bool:
        if not isinstance(message, dict):
            return False
        event, topic = message.get("event"), message.get("topic")
        raw_payload = message.get("payload")
        payload: dict[str, Any] = raw_payload if isinstance(raw_payload, dict) else {}
        if event == "phx_reply":
            status = payload.get("status")
            if topic == "phoenix":
                if message.get("ref") == self.heartbeat_ref:
                    self.heartbeat_ref = None
                return True
            if message.get("ref") == self.join_ref:
                if status == "ok":
                    self.joined.set()
                    log.info("supabase: joined %s", topic)
                    return True
                response = payload.get("response")
                reason = str(
                    response.get("reason", response) if isinstance(response, dict) else response
                )
                if any(word in reason.lower() for word in _REFUSED_WORDS):
                    raise ProviderRefusedError(
                        f"supabase refused the join: {reason}", source="supabase", reason=reason
                    )
                raise ConnectionLostError(
                    f"supabase join failed: {reason}", url="supabase", reason=reason
                )
            return True
        if event == "system":
            text = str(payload.get("message", ""))
            if payload.get("status") == "ok":
                log.info("supabase: %s", text)
                return True
            if "expired" in text.lower():
                raise ProviderRefusedError(
                    f"supabase: {text}: the key cannot be refreshed; set a fresh "
                    "SUPABASE_SERVICE_ROLE_KEY (or SUPABASE_ANON_KEY)",
                    source="supabase",
                    reason=text,
                )
            if "unable to subscribe" in text.lower():
                raise ProviderRefusedError(
                    f"supabase: {text} (check SUPABASE_SCHEMA, the tables and their replication)",
                    source="supabase",
                    reason=text,
                )
            raise ConnectionLostError(f"supabase system error: {text}", url="supabase", reason=text)
        if event in ("phx_error", "phx_close"):
            what = "crashed" if event == "phx_error" else "was closed"
            raise ConnectionLostError(
                f"supabase: channel {topic} {what}; rejoining", url="supabase", reason=str(event)
            )
        return event in ("presence_state", "presence_diff", "broadcast")


async def join_timeout(ctx: SourceContext, realtime: Realtime, timeout_s: float) -> None:
    """A join not answered in time ends the session (connected but not joined loses changes)."""
    if not await wait_event(ctx.clock, realtime.joined, timeout_s):
        raise ConnectionLostError(
            f"supabase: the join was not answered within {timeout_s:g} s",
            url="supabase",
            reason="join timeout",
        )


async def heartbeats(
    ctx: SourceContext, stream: Stream, realtime: Realtime, every_s: float
) -> None:
    """Heartbeat on ``phoenix``; a heartbeat still unanswered when the next is due ends the session."""
    while await ctx.sleep(every_s):
        if realtime.heartbeat_ref is not None:
            raise ConnectionLostError(
                f"supabase: heartbeat {realtime.heartbeat_ref} not answered within {every_s:g} s",
                url=stream.url,
                reason="heartbeat",
            )
        realtime.heartbeat_ref = realtime.ref()
        await stream.send_json(
            {"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": realtime.heartbeat_ref}
        )


async def start(ctx: SourceContext, *, realtime: Realtime) -> None:
    """One session: connect, join, heartbeat (and backfill) alongside, emit every frame."""
    settings: SupabaseSettings = ctx.settings
    unknown = sorted(set(settings.tables) - set(realtime.tables))
    if unknown:
        raise ConfigError(
            f"SUPABASE_TABLES: {unknown[0]!r} is not a resource of this connector "
            f"(resources: {', '.join(sorted(realtime.tables))})"
        )
    for table, changes in realtime.tables.items():
        if changes.mark.newest_us is None:
            changes.mark.restore(ctx.checkpoint(table))
        if settings.backfill:
            changes.mark.hold()  # before any live change: the checkpoint waits for the backfill
    async with await ctx.connect(settings.websocket_url) as stream:
        realtime.heartbeat_ref = None
        await stream.send_json(realtime.join_message(settings))
        ctx.spawn(join_timeout(ctx, realtime, settings.join_timeout_s), "join timeout")
        ctx.spawn(heartbeats(ctx, stream, realtime, settings.heartbeat_interval_s), "heartbeat")
        if settings.backfill:
            ctx.spawn(backfill_tables(ctx, realtime.joined, realtime.tables, settings), "backfill")
        async for frame in stream:
            await ctx.emit_raw(frame)
