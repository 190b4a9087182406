"""A scratch table that lets ClickHouse check natural keys for a replay.

``ingest replay`` inserts only the rows whose natural key a table lacks. With
:class:`KeyedScratch` the server does the check: a block's staged Avro
bodies are loaded into a ``Memory`` table shaped like the target (``FORMAT
Avro``, nothing decoded in Python), then one ``INSERT ... SELECT`` moves the
rows whose key the target does not hold, one per key, into the target. The
key lookup uses the target's primary key (``key IN (SELECT key FROM
scratch)``), so it reads only the granules that can hold those keys.

The move is sent with ``insert_deduplicate=0``: the key check is what makes a
replay safe to run again, and the server's block deduplication would drop a
block identical to one inserted before even if its rows were deleted since.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from clickhouse_connect.driver.client import Client

from sink_workers.clickhouse.translate import warehouse_call
from sink_workers.clickhouse.writer import AVRO_INPUT_SETTINGS
from sink_workers.tables import TableSpec, identifier


class KeyedScratch:
    """Two ``Memory`` tables next to ``spec``'s table: what a block holds, and what of
    it the table lacks. :meth:`drop` removes them (also after a failed replay)."""

    def __init__(
        self, client: Client, spec: TableSpec, nonce: str, lock: threading.Lock | None = None
    ) -> None:
        self._client = client
        self._spec = spec
        database = identifier("database", spec.database)
        self._loaded = f"{database}.{identifier('table', f'_replay_{nonce}')}"
        self._missing = f"{database}.{identifier('table', f'_replay_{nonce}_missing')}"
        self._lock: AbstractContextManager[Any] = lock if lock is not None else nullcontext()
        key = ", ".join(identifier("column", n) for n in spec.order_by)
        self._key = f"({key})"
        self._key_names = key

    def create(self) -> None:
        with warehouse_call(f"creating replay scratch tables for {self._spec.qualified}"):
            for table in (self._loaded, self._missing):
                self._client.command(
                    f"CREATE TABLE IF NOT EXISTS {table} AS {self._spec.qualified} ENGINE = Memory"
                )

    def drop(self) -> None:
        with warehouse_call("dropping replay scratch tables"):
            for table in (self._loaded, self._missing):
                self._client.command(f"DROP TABLE IF EXISTS {table}")

    def clear(self) -> None:
        """Empty the scratch tables (before each block)."""
        with warehouse_call("clearing replay scratch tables"), self._lock:
            for table in (self._loaded, self._missing):
                self._client.command(f"TRUNCATE TABLE {table}")

    def load(self, container: bytes, rows: int) -> None:
        """Add one Avro container file of ``rows`` records to the block; refused content
        raises :class:`~foundation.errors.BatchRejectedError` and adds nothing."""
        with warehouse_call(f"loading {rows} Avro records for a replay check"), self._lock:
            self._client.raw_insert(
                self._loaded, insert_block=container, fmt="Avro", settings=AVRO_INPUT_SETTINGS
            )

    def insert_missing(self) -> int:
        """Insert into the table the loaded rows whose key it lacks, one per key; returns
        how many."""
        # Every name below went through identifier(): no value reaches the SQL text.
        table, loaded, missing_table = self._spec.qualified, self._loaded, self._missing
        key, names = self._key, self._key_names
        select_missing = (
            f"SELECT * FROM {loaded} WHERE {key} NOT IN "  # noqa: S608
            f"(SELECT {names} FROM {table} WHERE {key} IN (SELECT {names} FROM {loaded})) "
            f"LIMIT 1 BY {names}"
        )
        with warehouse_call(f"inserting the missing keys into {table}"), self._lock:
            self._client.command(f"INSERT INTO {missing_table} {select_missing}")
            count = self._client.command(f"SELECT count() FROM {missing_table}")  # noqa: S608
            missing = int(count)  # type: ignore[arg-type]  # a count is one integer
            if missing:
                self._client.command(
                    f"INSERT INTO {table} SELECT * FROM {missing_table}",  # noqa: S608
                    settings={"async_insert": 0, "insert_deduplicate": 0},
                )
        return missing
