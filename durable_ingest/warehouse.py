"""Opening the warehouse: ClickHouse's engine in-process (chDB) or a server.

Both are a clickhouse-connect ``Client``: ``chdb://<dir>`` opens the embedded
engine on a directory (one process at a time may own it), ``http(s)://`` a
server with the configured user, password and TLS settings.
clickhouse-connect errors are translated here and nowhere else.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from durable_ingest.config import ClickHouseSettings
from durable_ingest.errors import WarehouseError


def _describe_dsn(settings: ClickHouseSettings) -> str:
    parts = urlsplit(settings.dsn)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


def open_warehouse(settings: ClickHouseSettings) -> Client:
    """A connected client; raises :class:`WarehouseError` with a one-line reason."""
    path = settings.embedded_path
    try:
        if path is not None:
            path.mkdir(parents=True, exist_ok=True)
            return clickhouse_connect.get_client(interface="chdb", path=str(path.resolve()))
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
            raise WarehouseError(
                f"the embedded warehouse {path} is already open in another process "
                "(in embedded mode exactly one process owns it), or this process opened "
                "a different path first"
            ) from None
        first_line = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        raise WarehouseError(
            f"cannot open the warehouse at {_describe_dsn(settings)}: {first_line}"
        ) from None
