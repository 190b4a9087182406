"""Opening the warehouse: ClickHouse's engine in-process (chDB) or a server.

Both are a clickhouse-connect ``Client``: ``chdb://<dir>`` opens the embedded
engine on a directory (one process at a time may own it), ``http(s)://`` a
server with the configured user, password and TLS settings.
clickhouse-connect errors are translated here and nowhere else.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from foundation.config import ClickHouseSettings
from foundation.errors import WarehouseError, WarehouseInUseError

# clickhouse-connect's HTTP client (urllib3) logs every retry and driver error as a
# warning before it raises: the one-line WarehouseError below says the same.
for _noisy in (
    "urllib3.connectionpool",
    "clickhouse_connect.driver._backend.http_sync",
    "clickhouse_connect.driver.httpclient",
):
    logging.getLogger(_noisy).setLevel(logging.ERROR)


_OPENED_HERE: set[Path] = set()
"""chDB directories this process opened: its own engine holds their lock (a second client
of the same process, as a sink's /sql client, is no other owner)."""


def owned_elsewhere(path: Path) -> bool:
    """True if another process holds the chDB directory's lock (``status``, flock-ed by
    the engine that opened it). Asked first so that chDB's own ``Code: 76 ... Cannot lock
    file`` line never reaches the terminal."""
    status = path / "status"
    try:
        descriptor = os.open(status, os.O_RDONLY)
    except OSError:
        return False  # no engine ever opened it, or it was closed cleanly
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(descriptor)  # releases a lock this call took
    return False


def _describe_dsn(settings: ClickHouseSettings) -> str:
    parts = urlsplit(settings.dsn)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


def _in_use(path: Path) -> str:
    return (
        f"the embedded warehouse {path} is already open in another process "
        "(in embedded mode exactly one process owns it"
    )


def open_warehouse(settings: ClickHouseSettings) -> Client:
    """A connected client; raises :class:`WarehouseError` with a one-line reason."""
    path = settings.embedded_path
    try:
        if path is not None:
            path.mkdir(parents=True, exist_ok=True)
            resolved = path.resolve()
            if resolved not in _OPENED_HERE and owned_elsewhere(path):
                raise WarehouseInUseError(f"{_in_use(path)})")
            client = clickhouse_connect.get_client(interface="chdb", path=str(resolved))
            _OPENED_HERE.add(resolved)
            return client
        kwargs: dict[str, Any] = {
            "dsn": settings.dsn,
            "database": settings.database,
            "verify": settings.verify_tls,
        }
        if settings.username is not None:
            kwargs["username"] = settings.username
        if settings.password is not None:
            kwargs["password"] = settings.password.get_secret_value()
        if settings.ca_cert is not None:
            kwargs["ca_cert"] = settings.ca_cert
        if settings.client_cert is not None:
            kwargs["client_cert"] = settings.client_cert
        if settings.client_key is not None:
            kwargs["client_cert_key"] = settings.client_key
        return clickhouse_connect.get_client(**kwargs)
    except OSError as exc:
        raise WarehouseError(
            f"cannot open the warehouse at {_describe_dsn(settings)}: {exc.strerror}"
        ) from None
    except ClickHouseError as exc:
        text = str(exc)
        if path is not None and "EmbeddedServer" in text:
            raise WarehouseInUseError(
                f"{_in_use(path)}, or this process opened a different path first"
            ) from None
        raise WarehouseError(
            f"cannot open the warehouse at {_describe_dsn(settings)}: {connection_cause(text)}"
        ) from None


_CAUSES = (
    re.compile(r"\[Errno -?\d+\] ([^\"')]+)"),
    re.compile(r"(Read timed out|timed out|Connection aborted)", re.IGNORECASE),
    re.compile(r"\b(Code: \d+\. DB::Exception: [^.(]+)"),
)


def connection_cause(text: str) -> str:
    """The reason worth a line out of clickhouse-connect's message: the socket error
    (``Connection refused``), a timeout, or the server's own exception, never the retry
    and query-id wrapping; else its first line."""
    for pattern in _CAUSES:
        found = pattern.search(text)
        if found is not None:
            return found.group(1).strip().rstrip(".:")
    stripped = text.strip()
    return stripped.splitlines()[0][:300] if stripped else "no reason given"
