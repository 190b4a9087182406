"""What an ``ingest dev`` run leaves, read once its workers have stopped.

The records in the connector's staged topics (the broker is fresh for each
run), the point each resource's source would resume from (the checkpoint
store, the sink's last save included) and the rows in each table (the
warehouse the sink released). Each reading that fails is logged and left
out: the run's own counts still stand.
"""

from __future__ import annotations

import logging
from typing import Any, TextIO

from foundation.config import Settings
from foundation.errors import IngestError, StopError
from sink_workers.tables import identifier
from staging.resource import StagedResource

log = logging.getLogger("ingest.dev")


class RunSummary:
    def __init__(self, settings: Settings, connector: str, resources: list[StagedResource]) -> None:
        self.settings = settings
        self.connector = connector
        self.resources = resources

    def resume_points(self) -> dict[str, Any] | None:
        """What the source would resume from now, per resource, as the checkpoint store
        says once the sink has stopped (its last save included); None if unreadable."""
        from staging.checkpoints import entries_in, resume_point
        from staging.compose import checkpoint_store

        try:
            store = checkpoint_store(self.settings)
            try:
                saved = store.load_all()
            finally:
                store.close()
        except IngestError as exc:
            log.warning("cannot read the checkpoints: %s", exc)
            return None
        source = self.connector
        points = {r.name: resume_point(entries_in(saved, source, r.name)) for r in self.resources}
        return {name: point for name, point in points.items() if point is not None}

    def count_staged(self) -> int:
        """Records in this connector's staged topics (the broker is fresh for each run)."""
        from staging.kafka.scan import TopicScanner

        scanner = TopicScanner(self.settings.kafka)
        try:
            return sum(
                len(chunk)
                for r in self.resources
                for chunk in scanner.scan(r.topic.name, idle_s=3.0)
            )
        finally:
            scanner.close()

    def report_tables(self, out: TextIO) -> None:
        """The rows in each of the connector's tables, and a query to look at them."""
        tables = self.tables()
        for table, rows in tables:
            if rows is None:
                # The sink creates its tables as it starts: it stopped (or failed) first.
                print(f"  {table}: not created yet (the sink stopped before creating it)", file=out)
            else:
                print(f"  {table}: {rows:,} rows (FINAL: one per key, every run so far)", file=out)
        created = [table for table, rows in tables if rows is not None]
        if created:
            example = f"SELECT * FROM {created[0]} LIMIT 10"  # noqa: S608 - shown, not run
            print(f'query them: ingest sql "{example}"', file=out, flush=True)

    def tables(self) -> list[tuple[str, int | None]]:
        """Rows per table of this connector, read from the warehouse the sink released;
        None for a table not created yet."""
        from sink_workers.clickhouse.query import ReadOnlyQuery
        from sink_workers.clickhouse.warehouse import open_warehouse

        try:
            client = open_warehouse(self.settings.clickhouse)
        except StopError as exc:
            log.warning("cannot count the rows written: %s", exc)
            return []
        query = ReadOnlyQuery(client)
        counts: list[tuple[str, int | None]] = []
        try:
            for table in self._table_names():
                qualified = (
                    f"{identifier('database', self.settings.clickhouse.database)}."
                    f"{identifier('table', table)}"
                )
                if not query(f"EXISTS TABLE {qualified}")["rows"][0][0]:
                    counts.append((table, None))
                    continue
                # FINAL: one row per natural key, even before ClickHouse merges.
                answer = query(f"SELECT count() FROM {qualified} FINAL")  # noqa: S608 - identifiers checked
                counts.append((table, int(answer["rows"][0][0])))
        except StopError as exc:
            log.warning("cannot count the rows written: %s", exc)
        finally:
            client.close()
        return counts

    def _table_names(self) -> list[str]:
        from sink_workers.run import table_name

        configured = self.settings.sources[self.connector].resources
        return [
            table_name(self.connector, r.name)
            for r in self.resources
            if configured[r.name].stream_topic is None
        ]
