"""The admin HTTP port of a worker: ``/health``, Prometheus ``/metrics`` and
(sinks that own an embedded warehouse) read-only ``POST /sql``.

A small ``http.server`` in a daemon thread, bound to 127.0.0.1 by default.
``/health`` answers 200 with a JSON body while the worker reports itself
healthy, 503 otherwise. ``/sql`` takes a query as the request body and answers
``{"columns": [...], "rows": [...]}`` or ``{"error": "..."}`` (400): in
embedded mode the sink process is the only one that may open the warehouse,
so other processes (``ingest sql``) query through it while it runs.

``/sql`` answers loopback clients (the same host, or the same container) as it
is. A client from elsewhere, which a ``--admin-host 0.0.0.0`` (containers) lets
in, must send the sink's token (``Authorization: Bearer <INGEST_ADMIN_SQL_TOKEN>``);
without a token set, ``/sql`` refuses every such client (403, one line saying how
to enable it): every table is readable through it.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import socketserver
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from foundation.errors import IngestError, StopError
from foundation.metrics import Metrics

log = logging.getLogger(__name__)
Query = Callable[[str], dict[str, Any]]
MAX_QUERY_BYTES = 1_000_000


def sql_refusal(peer: str, token: str | None, authorization: str | None) -> str | None:
    """Why ``/sql`` refuses a client at ``peer``, or None to serve it."""
    try:
        if ipaddress.ip_address(peer).is_loopback:
            return None
    except ValueError:
        pass
    if token is None:
        return (
            "/sql answers clients on the sink's own host only: to query it from elsewhere, "
            "set INGEST_ADMIN_SQL_TOKEN on the sink and send that token "
            "(ingest sql reads the same variable)"
        )
    sent = (authorization or "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(sent.encode(), token.encode()):
        return "/sql needs the sink's token: set INGEST_ADMIN_SQL_TOKEN to it"
    return None


class AdminServer:
    """Serves ``/health`` and ``/metrics``; ``close()`` stops it."""

    def __init__(
        self,
        metrics: Metrics,
        health: Callable[[], dict[str, Any]],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        query: Query | None = None,
        sql_token: str | None = None,
        unix_path: Path | None = None,
    ) -> None:
        registry, check, run_query = metrics, health, query
        local = unix_path is not None
        """A Unix socket's clients are on this host (the file is the owner's only)."""

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._send(200, registry.render().encode(), "text/plain; version=0.0.4")
                elif self.path == "/health":
                    state = check()
                    code = 200 if state.get("healthy") else 503
                    self._send(code, json.dumps(state).encode(), "application/json")
                else:
                    self._send(404, b"not found\n", "text/plain")

            def do_POST(self) -> None:
                if self.path != "/sql" or run_query is None:
                    self._send(404, b"not found\n", "text/plain")
                    return
                refused = (
                    None
                    if local
                    else sql_refusal(
                        self.client_address[0], sql_token, self.headers.get("Authorization")
                    )
                )
                if refused is not None:
                    self._json(403, {"error": refused})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if not 0 < length <= MAX_QUERY_BYTES:
                    self._json(400, {"error": f"a query is 1 to {MAX_QUERY_BYTES} bytes"})
                    return
                sql = self.rfile.read(length).decode("utf-8", errors="replace")
                try:
                    self._json(200, run_query(sql))
                except IngestError as exc:
                    self._json(400, {"error": str(exc)})

            def _json(self, code: int, body: dict[str, Any]) -> None:
                self._send(code, json.dumps(body, default=str).encode(), "application/json")

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # scrapes every few seconds would flood the worker's log

        self._unix_path = unix_path
        if unix_path is None:
            self._server: socketserver.BaseServer = ThreadingHTTPServer((host, port), Handler)
        else:
            unix_path.unlink(missing_ok=True)  # a crashed owner's; this process owns the dir now
            self._server = _UnixHTTPServer(str(unix_path), Handler)
            unix_path.chmod(0o600)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="admin-http", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        address = self._server.server_address
        return int(address[1]) if isinstance(address, tuple) else 0

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        if self._unix_path is not None:
            self._unix_path.unlink(missing_ok=True)


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self) -> tuple[Any, Any]:
        request, _ = super().get_request()
        return request, ("local", 0)  # BaseHTTPRequestHandler expects (host, port)


SQL_SOCKET = "sink.sock"
"""In its data directory, the Unix socket on which a sink that owns the embedded warehouse
answers ``/sql`` (and ``/health``, ``/metrics``) to processes of its own user."""


def start_local_sql(
    metrics: Metrics, health: Callable[[], dict[str, Any]], query: Query, data_dir: Path
) -> AdminServer | None:
    """The owning sink's Unix socket, ``<data_dir>/sink.sock``; None (and a log line) when
    the path is too long for a Unix socket or cannot be made."""
    path = data_dir / SQL_SOCKET
    try:
        return AdminServer(metrics, health, query=query, unix_path=path)
    except OSError as exc:
        log.warning(
            "no local /sql socket at %s (%s): ingest sql needs --admin-port then", path, exc
        )
        return None


def start_admin(
    metrics: Metrics,
    health: Callable[[], dict[str, Any]],
    *,
    host: str,
    port: int,
    query: Query | None = None,
    sql_token: str | None = None,
) -> AdminServer:
    """An :class:`AdminServer`, or a StopError saying why the port cannot be served."""
    try:
        return AdminServer(metrics, health, host=host, port=port, query=query, sql_token=sql_token)
    except (OSError, OverflowError) as exc:
        raise StopError(f"cannot serve the admin port {host}:{port}: {exc}") from None
