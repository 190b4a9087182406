"""The admin HTTP port of a worker: ``/health`` and Prometheus ``/metrics``.

A small ``http.server`` in a daemon thread, bound to 127.0.0.1 by default.
``/health`` answers 200 with a JSON body while the worker reports itself
healthy (see :class:`Health`), 503 otherwise.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from durable_ingest.metrics import Metrics


class AdminServer:
    """Serves ``/health`` and ``/metrics``; ``close()`` stops it."""

    def __init__(
        self,
        metrics: Metrics,
        health: Callable[[], dict[str, Any]],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        registry, check = metrics, health

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

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # scrapes every few seconds would flood the worker's log

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="admin-http", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
