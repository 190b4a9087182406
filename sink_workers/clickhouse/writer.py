"""Write batches into one resource's ClickHouse table, idempotently.

``ensure()`` creates the database and table from the resource's schema, or
brings an existing table forward (new optional fields add columns; an
incompatible change stops with the field and both types). ``insert()`` sends
one column-oriented insert, and ``insert_avro()`` one Avro container file
that ClickHouse parses itself (``FORMAT Avro``); both with ``async_insert=0``,
``insert_deduplicate=1`` and the batch's deterministic
``insert_deduplication_token``: a retried batch with the same token is dropped
by the server inside the table's deduplication window.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from clickhouse_connect.driver.client import Client

from sink_workers.clickhouse.translate import warehouse_call
from sink_workers.tables import TableSpec

log = logging.getLogger(__name__)


def insert_settings(token: str) -> dict[str, Any]:
    """Per-insert settings: synchronous, deduplicated by ``token``."""
    return {"async_insert": 0, "insert_deduplicate": 1, "insert_deduplication_token": token}


AVRO_INPUT_SETTINGS = {"input_format_avro_allow_missing_fields": 1}
"""A column the writer schema lacks (an older version) takes its ClickHouse default;
:func:`sink_workers.tables.writer_gaps` sends writers for which that is wrong
down the Python path."""


class ClickHouseTableWriter:
    """One table; the client is shared and owned by the caller.

    ``lock``, when given, is held around each insert: the sink's admin thread
    queries the same client (see :mod:`sink_workers.clickhouse.query`).
    """

    def __init__(self, client: Client, spec: TableSpec, lock: threading.Lock | None = None) -> None:
        self._client = client
        self.spec = spec
        self._lock: AbstractContextManager[Any] = lock if lock is not None else nullcontext()

    def ensure(self) -> list[str]:
        """Create or migrate the table; returns the DDL statements it ran."""
        spec = self.spec
        ran: list[str] = []
        with warehouse_call(f"preparing table {spec.database}.{spec.table}"):
            create_db = f"CREATE DATABASE IF NOT EXISTS `{spec.database}`"
            self._client.command(create_db)
            existing: dict[str, str] = dict(
                self._client.query(  # type: ignore[arg-type]
                    "SELECT name, type FROM system.columns WHERE database = {db:String} "
                    "AND table = {table:String} ORDER BY position",
                    parameters={"db": spec.database, "table": spec.table},
                ).result_rows
            )
            statements = [spec.create_sql()] if not existing else spec.migration_sql(existing)
            for statement in statements:
                self._client.command(statement)
                ran.append(statement)
                log.info("warehouse: %s", statement.splitlines()[0])
        return ran

    def insert(self, columns: Sequence[Sequence[Any]], token: str) -> int:
        """Insert one batch; returns the rows sent. Deduplicated by ``token``."""
        spec = self.spec
        rows = len(columns[0]) if columns else 0
        if rows == 0:
            return 0
        with (
            warehouse_call(f"inserting {rows} rows into {spec.database}.{spec.table}"),
            self._lock,
        ):
            self._client.insert(
                spec.table,
                columns,
                column_names=spec.column_names,
                database=spec.database,
                column_oriented=True,
                settings=insert_settings(token),
            )
        return rows

    def insert_avro(self, container: bytes, rows: int, token: str) -> int:
        """Insert one Avro Object Container File of ``rows`` records (columns by
        field name); ClickHouse parses it. Deduplicated by ``token``."""
        spec = self.spec
        if rows == 0:
            return 0
        with (
            warehouse_call(f"inserting {rows} Avro records into {spec.database}.{spec.table}"),
            self._lock,
        ):
            self._client.raw_insert(
                spec.qualified,
                insert_block=container,
                fmt="Avro",
                settings={**insert_settings(token), **AVRO_INPUT_SETTINGS},
            )
        return rows
