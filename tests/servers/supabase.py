"""A protocol-faithful Supabase for tests: Realtime (Phoenix channels, vsn 1.0.0) and PostgREST.

Built on the websockets library, in a thread of its own. Realtime:
``/realtime/v1/websocket?apikey=KEY&vsn=1.0.0`` (HTTP 401 for a wrong key);
messages ``{"topic", "event", "payload", "ref"}``; ``phx_join`` with a
``postgres_changes`` configuration answered by ``phx_reply`` (``ok`` with the
subscription ids, or ``error``), then a ``system`` message (``Subscribed to
PostgreSQL``, or an error for an unknown table); heartbeats on ``phoenix``
answered with ``phx_reply``; changes as ``postgres_changes`` with ``data``
holding ``type``, ``commit_timestamp``, ``record``, ``old_record``,
``schema``, ``table``. PostgREST: ``GET /rest/v1/<table>`` with ``select``,
``<column>=gte.<ts>``, the keyset form
``or=(<column>.gt.<ts>,and(<column>.eq.<ts>,id.gt.<id>))``, ``order``,
``limit``, ``offset`` and the ``apikey`` header.

Faults: disconnects, ``phx_error``, ``phx_close``, an expired token (a
``system`` error then ``phx_close``), a join error, unanswered joins and
heartbeats, malformed frames.
"""

from __future__ import annotations

import contextlib
import http
import json
import re
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from source_workers.transport.local_server import LocalServer

T0 = datetime(2026, 11, 22, 9, 0, 0, tzinfo=UTC)
TABLES = ("projects", "time_entries")


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class SupabaseServer(LocalServer):
    name = "test Supabase"

    def __init__(self, key: str = "service-role-test-key", schema: str = "public") -> None:
        super().__init__()
        self.key = key
        self.schema = schema
        self.rows: dict[str, dict[int, dict[str, Any]]] = {t: {} for t in TABLES}
        self.changes: list[tuple[str, str, int, str]] = []
        """(table, operation, id, commit timestamp) of every committed change."""
        self._clock = T0
        self._channels: dict[ServerConnection, tuple[str, set[str]]] = {}
        self._lock = threading.Lock()
        self.answer_heartbeats = True
        self.join_error: str | None = None
        self.answer_joins = True
        self.rest_garbage = 0
        """The next N PostgREST answers are an HTML error page (a proxy in the way)."""
        self.joins = 0
        self.heartbeats = 0
        self.rest_requests = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def joined_channels(self) -> int:
        return len(self._channels)

    # --- the database ---------------------------------------------------------

    def insert(self, table: str, **columns: Any) -> str:
        return self._commit(table, "INSERT", columns)

    def update(self, table: str, row_id: int, **columns: Any) -> str:
        return self._commit(table, "UPDATE", {"id": row_id, **columns})

    def delete(self, table: str, row_id: int) -> str:
        return self._commit(table, "DELETE", {"id": row_id})

    def _commit(self, table: str, operation: str, columns: dict[str, Any]) -> str:
        with self._lock:
            self._clock += timedelta(milliseconds=3)
            stamp = _iso(self._clock)
            rows = self.rows[table]
            row_id = columns["id"]
            old = dict(rows.get(row_id, {"id": row_id}))
            if operation == "DELETE":
                rows.pop(row_id, None)
                record: dict[str, Any] = {}
                old_record = {"id": row_id}  # the default replica identity: the key only
            else:
                record = {**old, **columns, "updated_at": stamp}
                rows[row_id] = record
                old_record = {"id": row_id} if operation == "UPDATE" else {}
            self.changes.append((table, operation, row_id, stamp))
        data = {
            "schema": self.schema,
            "table": table,
            "commit_timestamp": stamp,
            "type": operation,
            "record": record,
            "old_record": old_record,
            "columns": [{"name": k, "type": "text"} for k in sorted(record)],
            "errors": None,
        }
        self.call(self._publish(table, data))
        return stamp

    async def _publish(self, table: str, data: dict[str, Any]) -> None:
        for connection, (topic, tables) in list(self._channels.items()):
            if table in tables:
                message = {
                    "topic": topic,
                    "event": "postgres_changes",
                    "payload": {"data": data, "ids": [TABLES.index(table) + 1]},
                    "ref": None,
                }
                with contextlib.suppress(ConnectionClosed):
                    await connection.send(json.dumps(message))

    # --- faults ---------------------------------------------------------------

    def send_raw(self, frame: str | bytes) -> None:
        async def send() -> None:
            for connection in list(self._channels):
                with contextlib.suppress(ConnectionClosed):
                    await connection.send(frame)

        self.call(send())

    def channel_event(self, event: str) -> None:
        """Send ``phx_error`` or ``phx_close`` on every joined channel."""

        async def send() -> None:
            for connection, (topic, _) in list(self._channels.items()):
                with contextlib.suppress(ConnectionClosed):
                    await connection.send(
                        json.dumps({"topic": topic, "event": event, "payload": {}, "ref": None})
                    )

        self.call(send())

    def expire_token(self) -> None:
        async def send() -> None:
            for connection, (topic, _) in list(self._channels.items()):
                with contextlib.suppress(ConnectionClosed):
                    await connection.send(
                        json.dumps(
                            {
                                "topic": topic,
                                "event": "system",
                                "payload": {
                                    "extension": "system",
                                    "message": "Token has expired 0 seconds ago",
                                    "status": "error",
                                },
                                "ref": None,
                            }
                        )
                    )
                    await connection.send(
                        json.dumps(
                            {"topic": topic, "event": "phx_close", "payload": {}, "ref": None}
                        )
                    )

        self.call(send())

    def disconnect(self) -> None:
        async def drop() -> None:
            for connection in list(self._channels):
                connection.transport.abort()

        self.call(drop())

    # --- Realtime -------------------------------------------------------------

    async def _handler(self, connection: ServerConnection) -> None:
        try:
            async for raw in connection:
                message = json.loads(raw)
                topic, event, ref = message.get("topic"), message.get("event"), message.get("ref")
                if topic == "phoenix" and event == "heartbeat":
                    self.heartbeats += 1
                    if self.answer_heartbeats:
                        await connection.send(
                            json.dumps(
                                {
                                    "topic": "phoenix",
                                    "event": "phx_reply",
                                    "payload": {"status": "ok", "response": {}},
                                    "ref": ref,
                                }
                            )
                        )
                elif event == "phx_join":
                    await self._join(connection, topic, message.get("payload") or {}, ref)
        except (ConnectionClosed, ValueError):
            pass
        finally:
            self._channels.pop(connection, None)

    async def _join(
        self, connection: ServerConnection, topic: str, payload: dict[str, Any], ref: Any
    ) -> None:
        self.joins += 1
        if not self.answer_joins:
            return
        if self.join_error is not None or payload.get("access_token") != self.key:
            reason = self.join_error or "Invalid JWT Token"
            await connection.send(
                json.dumps(
                    {
                        "topic": topic,
                        "event": "phx_reply",
                        "payload": {"status": "error", "response": {"reason": reason}},
                        "ref": ref,
                    }
                )
            )
            return
        wanted = payload.get("config", {}).get("postgres_changes", [])
        tables = {c.get("table") for c in wanted if c.get("schema") == self.schema}
        response = {"postgres_changes": [{**c, "id": i + 1} for i, c in enumerate(wanted)]}
        await connection.send(
            json.dumps(
                {
                    "topic": topic,
                    "event": "phx_reply",
                    "payload": {"status": "ok", "response": response},
                    "ref": ref,
                }
            )
        )
        unknown = sorted(t for t in tables if t not in self.rows)
        if unknown or len(tables) != len(wanted):
            await connection.send(
                json.dumps(
                    {
                        "topic": topic,
                        "event": "system",
                        "payload": {
                            "channel": topic.removeprefix("realtime:"),
                            "extension": "postgres_changes",
                            "message": "Unable to subscribe to changes with given parameters. "
                            "Please check Realtime is enabled for the given connect parameters",
                            "status": "error",
                        },
                        "ref": None,
                    }
                )
            )
            return
        self._channels[connection] = (topic, tables)
        await connection.send(
            json.dumps(
                {
                    "topic": topic,
                    "event": "system",
                    "payload": {
                        "channel": topic.removeprefix("realtime:"),
                        "extension": "postgres_changes",
                        "message": "Subscribed to PostgreSQL",
                        "status": "ok",
                    },
                    "ref": None,
                }
            )
        )

    # --- HTTP: the websocket handshake's key check, and PostgREST -------------

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        query = parse_qs(parts.query)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            if parts.path != "/realtime/v1/websocket" or query.get("apikey") != [self.key]:
                return _json(http.HTTPStatus.UNAUTHORIZED, {"message": "Invalid API key"})
            return None
        self.rest_requests += 1
        if self.rest_garbage > 0:
            self.rest_garbage -= 1
            body = b"<html>502 Bad Gateway</html>"
            headers = Headers({"Content-Type": "text/html", "Content-Length": str(len(body))})
            return Response(200, "OK", headers, body)
        if request.headers.get("apikey") != self.key:
            return _json(http.HTTPStatus.UNAUTHORIZED, {"message": "Invalid API key"})
        table = parts.path.removeprefix("/rest/v1/")
        if table not in self.rows:
            return _json(http.HTTPStatus.NOT_FOUND, {"message": f"relation {table} does not exist"})
        with self._lock:
            rows = list(self.rows[table].values())
        for name, values in query.items():
            if name in ("select", "order", "limit", "offset"):
                continue
            if name == "or":  # the keyset form only: (col.gt.X,and(col.eq.X,id.gt.Y))
                match = re.fullmatch(
                    r"\((\w+)\.gt\.([^,]+),and\((\w+)\.eq\.([^,]+),id\.gt\.(-?\d+)\)\)",
                    values[0],
                )
                if match is None:
                    return _json(http.HTTPStatus.BAD_REQUEST, {"message": "unsupported or"})
                col, stamp, row_id = match.group(1), match.group(2), int(match.group(5))
                rows = [
                    r
                    for r in rows
                    if str(r.get(col, "")) > stamp
                    or (str(r.get(col, "")) == stamp and r["id"] > row_id)
                ]
                continue
            op, _, value = values[0].partition(".")
            if op != "gte":
                return _json(http.HTTPStatus.BAD_REQUEST, {"message": f"unsupported filter {op}"})
            rows = [r for r in rows if str(r.get(name, "")) >= value]
        order = query.get("order", ["id.asc"])[0].split(",")[0].split(".")[0]
        rows.sort(key=lambda r: (str(r.get(order, "")), r["id"]))
        offset = int(query.get("offset", ["0"])[0])
        limit = int(query.get("limit", ["1000"])[0])
        page = rows[offset : offset + limit]
        select = query.get("select", ["*"])[0]
        if select != "*":
            names = select.split(",")
            page = [{k: r.get(k) for k in names} for r in page]
        return _json(http.HTTPStatus.OK, page)


def _json(status: http.HTTPStatus, body: Any) -> Response:
    data = json.dumps(body).encode()
    headers = Headers({"Content-Type": "application/json", "Content-Length": str(len(data))})
    return Response(status.value, status.phrase, headers, data)
