"""``ingest sink run``: one sink process, one consumer-group member.

Composition and process life only: settings into a staging session, a
warehouse client and table writers, then :class:`SinkWorker` until SIGTERM or
SIGINT (finish the batch in hand, commit it, leave the group, exit 0) or,
with ``idle_exit_s``, until nothing arrives for that long.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from durable_ingest.admin import AdminServer
from durable_ingest.compose import (
    checkpoint_store,
    schema_catalog,
    staged_resources,
    staging_provider,
)
from durable_ingest.config import Settings
from durable_ingest.errors import ConfigError
from durable_ingest.warehouse import open_warehouse
from sink_workers.clickhouse.writer import ClickHouseTableWriter
from sink_workers.tables import table_spec
from sink_workers.worker import SinkStats, SinkWorker, TableWriter
from staging.protocol import StagingContext

log = logging.getLogger(__name__)


def table_name(source: str, resource: str) -> str:
    """A resource's table: ``<source>_<resource>``."""
    return f"{source}_{resource}"


def pick_source(settings: Settings, source: str | None) -> str:
    if source is not None:
        return source
    if len(settings.sources) != 1:
        known = ", ".join(sorted(settings.sources)) or "none"
        raise ConfigError(f"name the source to sink with --source (configured: {known})")
    return next(iter(settings.sources))


@contextmanager
def _stopping_on_signals(worker: SinkWorker) -> Iterator[None]:
    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info(
            "received %s: finishing the batch in hand, then stopping", signal.Signals(signum).name
        )
        worker.stop()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run_sink(
    settings: Settings,
    *,
    source: str | None = None,
    resources: list[str] | None = None,
    chunk_size: int = 5_000,
    idle_exit_s: float | None = None,
    admin_port: int | None = None,
) -> SinkStats:
    """Run one sink member for one source's resources (all by default)."""
    source = pick_source(settings, source)
    catalog = schema_catalog(settings)
    declared = staged_resources(settings, catalog, source)
    if resources:
        unknown = sorted(set(resources) - {r.name for r in declared})
        if unknown:
            raise ConfigError(f"source {source} has no resource {unknown[0]!r}")
        declared = [r for r in declared if r.name in resources]
    client = open_warehouse(settings.clickhouse)  # first: a second embedded sink fails here
    try:
        tables: dict[str, TableWriter] = {}
        for resource in declared:
            writer = ClickHouseTableWriter(
                client,
                table_spec(
                    resource.schema.parsed["fields"],
                    database=settings.clickhouse.database,
                    table=table_name(source, resource.name),
                    order_by=resource.id_fields,
                ),
            )
            writer.ensure()
            tables[resource.topic.name] = writer
        context = StagingContext(source=source, resources=tuple(declared))
        checkpoints = checkpoint_store(settings)
        try:
            with staging_provider(settings, catalog).allocate_session(context) as session:
                worker = SinkWorker(session, tables, chunk_size=chunk_size, checkpoints=checkpoints)
                admin = None
                if admin_port is not None:
                    admin = AdminServer(worker.metrics, worker.health, port=admin_port)
                    log.info("admin port: http://127.0.0.1:%d (/health, /metrics)", admin.port)
                log.info(
                    "sink for %s (%s) in group %s",
                    source,
                    ", ".join(r.name for r in declared),
                    context.consumer_group,
                )
                try:
                    with _stopping_on_signals(worker):
                        stats = worker.run(idle_timeout_s=idle_exit_s)
                finally:
                    if admin is not None:
                        admin.close()
        finally:
            checkpoints.close()
        log.info(
            "sink stopped: %d rows in %d batches, %d dead letters, %d checkpoints saved",
            stats.rows_written,
            stats.batches,
            stats.dead_letters,
            stats.checkpoints_saved,
        )
        return stats
    finally:
        client.close()
