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
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from durable_ingest.errors import ConfigError, ConnectionLostError, ProviderRefusedError
from source_workers.connectors.supabase.backfill import backfill_tables
from source_workers.connectors.supabase.tables import TableChanges
from source_workers.context import SourceContext
from source_workers.transport.urls import is_loopback
from source_workers.transport.websocket import WebSocketStream

log = logging.getLogger(__name__)

CHANNEL = "realtime:durable-ingest"
_REFUSED_WORDS = ("jwt", "token", "unauthorized", "not authorized", "invalid api key", "apikey")


class SupabaseSettings(BaseModel):
    """``SUPABASE_*`` environment variables (see docs/sources.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    url: str | None = None
    """The project URL, e.g. ``https://abcd.supabase.co`` (required)."""
    service_role_key: SecretStr | None = None
    anon_key: SecretStr | None = None
    db_schema: str = Field("public", alias="schema")
    """``SUPABASE_SCHEMA``: the Postgres schema of the tables."""
    tables: tuple[str, ...] = ("projects", "time_entries")
    heartbeat_interval_s: float = Field(25.0, gt=0)
    join_timeout_s: float = Field(10.0, gt=0)
    backfill: bool = False
    backfill_column: str = "updated_at"
    backfill_page_size: int = Field(1000, ge=1, le=10_000)
    backfill_margin_s: float = Field(60.0, ge=0)
    """The backfill starts this long before the checkpoint (commit times and the
    backfill column come from different clocks)."""

    @field_validator("tables", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [t.strip() for t in value.split(",") if t.strip()]
        return value

    @model_validator(mode="after")
    def _complete(self) -> SupabaseSettings:
        if not self.url or not self.url.startswith(("http://", "https://")):
            raise ValueError("SUPABASE_URL must be set to the project's http(s) URL")
        if self.url.startswith("http://") and not is_loopback(self.url):
            raise ValueError(
                "SUPABASE_URL must be https:// (the key would travel in clear text); "
                "http:// is accepted for this machine only"
            )
        if self.service_role_key is None and self.anon_key is None:
            raise ValueError("set SUPABASE_SERVICE_ROLE_KEY (or SUPABASE_ANON_KEY)")
        for name in (self.db_schema, self.backfill_column, *self.tables):
            if not name.replace("_", "").isalnum():
                raise ValueError(f"{name!r} is not a plain Postgres identifier")
        return self

    @property
    def key(self) -> str:
        secret = self.service_role_key or self.anon_key
        assert secret is not None
        return secret.get_secret_value()

    @property
    def websocket_url(self) -> str:
        assert self.url is not None
        base = self.url.rstrip("/").replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        return f"{base}/realtime/v1/websocket?" + urlencode({"apikey": self.key, "vsn": "1.0.0"})


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
    try:
        await asyncio.wait_for(realtime.joined.wait(), timeout=timeout_s)
    except TimeoutError:
        raise ConnectionLostError(
            f"supabase: the join was not answered within {timeout_s:g} s",
            url="supabase",
            reason="join timeout",
        ) from None


async def heartbeats(
    ctx: SourceContext, stream: WebSocketStream, realtime: Realtime, every_s: float
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
