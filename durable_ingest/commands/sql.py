"""``ingest sql "SELECT ..."``: read-only queries against the warehouse.

Against a ClickHouse server, the query goes straight to it. In embedded mode
only one process may open the chDB directory: while a sink owns it (``ingest
dev`` running, or a sink started with ``--admin-port``) the query goes
through that sink's admin port (``POST /sql``), found in ``<data_dir>/dev.json``
or given with ``--admin URL``; otherwise this process opens the directory
itself. Every query runs with ``readonly=1``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from durable_ingest.commands import Subcommands
from durable_ingest.dev import STATE_FILE
from durable_ingest.render import text_table, tsv
from foundation.admin import SQL_SOCKET
from foundation.config import Settings
from foundation.errors import QueryError, WarehouseError, WarehouseInUseError
from foundation.process import data_dir_option


def register(commands: Subcommands) -> None:
    sql = commands.add_parser("sql", help="run a read-only query against the warehouse")
    sql.add_argument("query", help='e.g. "SELECT count() FROM coinbase_matches"')
    sql.add_argument(
        "--format", choices=("table", "tsv", "json"), default="table", help="default: table"
    )
    sql.add_argument(
        "--admin",
        metavar="URL",
        help="query through this sink's admin port (e.g. http://127.0.0.1:8080)",
    )
    data_dir_option(sql)
    sql.set_defaults(handler=_sql)


def _sql(args: argparse.Namespace, settings: Settings) -> int:
    admin = args.admin or _running_dev_sink(settings)
    token = settings.admin.sql_token
    answer = (
        _through_admin(admin, args.query, token.get_secret_value() if token else None)
        if admin
        else _direct(settings, args.query)
    )
    columns, rows = answer["columns"], answer["rows"]
    if args.format == "json":
        print(json.dumps(answer, default=str))
    elif args.format == "tsv":
        print(tsv(columns, rows))
    else:
        print(text_table(columns, rows))
        note = " (cut: more rows matched)" if answer.get("truncated") else ""
        print(f"{len(rows)} row{'s' if len(rows) != 1 else ''}{note}")
    return 0


def _running_dev_sink(settings: Settings) -> str | None:
    """The admin URL of the sink of a running ``ingest dev`` on this data directory."""
    if settings.clickhouse.embedded_path is None:
        return None
    try:
        state = json.loads((settings.data_dir / STATE_FILE).read_text())
        pid, port = int(state["pid"]), int(state["sink_admin_port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # a dev run that was killed left its file behind
    except PermissionError:
        pass
    return f"http://127.0.0.1:{port}"


def _direct(settings: Settings, query: str) -> dict[str, Any]:
    from sink_workers.clickhouse.query import ReadOnlyQuery, check_read_only
    from sink_workers.clickhouse.warehouse import open_warehouse

    check_read_only(query.strip().rstrip(";").strip())  # before anything is opened
    path = settings.clickhouse.embedded_path
    if path is not None and not path.is_dir():
        # A read-only command creates nothing: opening chDB on a new folder would.
        raise WarehouseError(
            f"there is no warehouse in {path} yet: a sink creates it (ingest dev, or "
            "ingest sink run with this data directory)"
        )

    try:
        client = open_warehouse(settings.clickhouse)
    except WarehouseInUseError:
        socket_path = settings.data_dir / SQL_SOCKET
        if socket_path.exists():
            return through_socket(socket_path, query)
        raise WarehouseError(
            f"the embedded warehouse {settings.clickhouse.embedded_path} is owned by a "
            f"process that serves no {socket_path}: query through its admin port with "
            "--admin http://127.0.0.1:PORT"
        ) from None
    try:
        return ReadOnlyQuery(client)(query)
    finally:
        client.close()


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=60)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(str(self._path))
        self.sock = sock


def through_socket(path: Path, query: str) -> dict[str, Any]:
    """``POST /sql`` to the owning sink over its Unix socket."""
    connection = _UnixConnection(path)
    try:
        connection.request("POST", "/sql", body=query.encode())
        response = connection.getresponse()
        body: dict[str, Any] = json.loads(response.read())
    except (OSError, ValueError) as exc:
        raise QueryError(f"cannot query through the sink's socket {path}: {exc}") from None
    finally:
        connection.close()
    if response.status != 200:
        raise QueryError(str(body.get("error", f"HTTP {response.status}")))
    return body


def _through_admin(url: str, query: str, token: str | None = None) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 - an http(s) URL the user gave
        url.rstrip("/") + "/sql", data=query.encode(), method="POST"
    )
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    if not url.startswith(("http://", "https://")):
        raise QueryError(f"--admin {url} is not an http:// URL")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            body: dict[str, Any] = json.loads(response.read())
            return body
    except urllib.error.HTTPError as exc:
        try:
            reason = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            reason = exc.reason
        if exc.code == 404:
            reason = "that admin port serves no /sql (it is not a sink writing ClickHouse)"
        raise QueryError(str(reason)) from None
    except (OSError, ValueError) as exc:
        raise QueryError(f"cannot query through the sink at {url}: {exc}") from None
