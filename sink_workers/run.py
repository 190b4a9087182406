"""``ingest sink run``: one sink process, one consumer-group member.

Composition and process life only: settings into a staging session, a
warehouse client and table writers, then :class:`SinkWorker` until SIGTERM or
SIGINT (finish the batch in hand, commit it, leave the group, exit 0) or,
with ``idle_exit_s``, until nothing arrives for that long.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from types import FrameType

from foundation.admin import start_admin, start_local_sql
from foundation.config import Settings
from foundation.errors import ConfigError
from sink_workers.clickhouse.query import ReadOnlyQuery
from sink_workers.clickhouse.warehouse import open_warehouse
from sink_workers.clickhouse.writer import ClickHouseTableWriter
from sink_workers.inserts import RetryPolicy, SinkStats
from sink_workers.stream import StreamTarget, stream_resource
from sink_workers.tables import table_spec
from sink_workers.targets import Target, table_target
from sink_workers.worker import SinkWorker
from staging.compose import checkpoint_store, schema_catalog, staged_resources, staging_provider
from staging.protocol import StagingContext
from staging.schemas import SchemaCatalog

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


def check_targets(settings: Settings, catalog: SchemaCatalog) -> None:
    """Across every configured source: table names unique, no stream into a staging topic."""
    resources = staged_resources(settings, catalog)
    staging_topics = {t.name for r in resources for t in (r.topic, r.dlq)}
    tables: dict[str, str] = {}
    for r in resources:
        target = settings.sources[r.source].resources[r.name]
        topic = target.stream_topic
        if topic is not None:
            if topic in staging_topics:
                raise ConfigError(
                    f"resource {r.qualified_name}: target {target.target} is a staging topic; "
                    "a sink would read its own output"
                )
            continue
        if not r.id_fields:
            raise ConfigError(
                f"resource {r.qualified_name}: a ClickHouse target needs id_fields (the natural "
                "key): without one, a re-read after a crash would leave duplicate rows"
            )
        name = table_name(r.source, r.name)
        if name in tables:
            raise ConfigError(
                f"resources {tables[name]} and {r.qualified_name} would both write table {name}"
            )
        tables[name] = r.qualified_name


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
    chunk_size: int = 20_000,
    idle_exit_s: float | None = None,
    admin_port: int | None = None,
    admin_host: str = "127.0.0.1",
) -> SinkStats:
    """Run one sink member for one source's resources (all by default)."""
    source = pick_source(settings, source)
    catalog = schema_catalog(settings)
    # Every version in the folder: records staged with an older schema still decode.
    catalog.load_all()
    declared = staged_resources(settings, catalog, source)
    if resources:
        unknown = sorted(set(resources) - {r.name for r in declared})
        if unknown:
            raise ConfigError(f"source {source} has no resource {unknown[0]!r}")
        declared = [r for r in declared if r.name in resources]
    source_settings = settings.sources[source].resources
    stream_topics = {r.name: source_settings[r.name].stream_topic for r in declared}
    check_targets(settings, catalog)
    to_tables = [r for r in declared if stream_topics[r.name] is None]
    to_streams = [
        stream_resource(r, t) for r in declared if (t := stream_topics[r.name]) is not None
    ]
    provider = staging_provider(settings, catalog)
    with ExitStack() as stack:
        targets: dict[str, Target] = {}
        query: ReadOnlyQuery | None = None
        if to_tables:
            # First: a second sink on one embedded warehouse fails here, clearly.
            client = open_warehouse(settings.clickhouse)
            stack.callback(client.close)
            lock = threading.Lock()
            if settings.clickhouse.embedded_path is not None:
                # /sql only for the embedded warehouse, which no other process may open
                # (a server is queried directly). Its own client: settings stick to a
                # chDB client, and the query's readonly=1 must never reach the inserts.
                query_client = open_warehouse(settings.clickhouse)
                stack.callback(query_client.close)
                query = ReadOnlyQuery(query_client, lock)
            for resource in to_tables:
                writer = ClickHouseTableWriter(
                    client,
                    table_spec(
                        resource.schema.parsed["fields"],
                        database=settings.clickhouse.database,
                        table=table_name(source, resource.name),
                        order_by=resource.id_fields,
                    ),
                    lock,
                )
                writer.ensure()
                targets[resource.topic.name] = table_target(
                    writer, resource.schema, avro_input=settings.clickhouse.avro_input
                )
        if to_streams:
            out = stack.enter_context(
                provider.allocate_session(
                    StagingContext(source=source, resources=tuple(to_streams))
                )
            )
            by_name = {r.name: r for r in declared}
            for destination in to_streams:
                targets[by_name[destination.name].topic.name] = StreamTarget(
                    out.writer(destination.name)
                )
        checkpoints = stack.enter_context(closing(checkpoint_store(settings)))
        context = StagingContext(source=source, resources=tuple(declared))
        session = stack.enter_context(provider.allocate_session(context))
        # Waits between retries poll the paused consumer, so the group keeps this
        # member; the time spent writing between waits must stay under
        # max.poll.interval.ms, hence the cap.
        retry = RetryPolicy(give_up_after_s=min(120.0, settings.kafka.max_poll_interval_ms / 2000))
        worker = SinkWorker(
            session,
            targets,
            chunk_size=chunk_size,
            checkpoints=checkpoints,
            retry=retry,
            per_instance=bool(settings.sources[source].instances),
            # Reading the next batch while the warehouse parses this one pays when the
            # warehouse is a server; embedded chDB parses on this process's own cores
            # (measured: no gain; bench/sink.py --overlap on|off).
            overlap=not (to_tables and settings.clickhouse.embedded_path is not None),
        )
        if query is not None:
            # The owner of the embedded warehouse answers ingest sql on this host with no
            # flag: a Unix socket in its data directory.
            local = start_local_sql(worker.metrics, worker.health, query, settings.data_dir)
            if local is not None:
                stack.callback(local.close)
        if admin_port is not None:
            token = settings.admin.sql_token
            admin = start_admin(
                worker.metrics,
                worker.health,
                host=admin_host,
                port=admin_port,
                query=query,
                sql_token=token.get_secret_value() if token is not None else None,
            )
            stack.callback(admin.close)
            log.info(
                "admin port: http://%s:%d (/health, /metrics%s)",
                admin_host,
                admin.port,
                ", /sql" if query is not None else "",
            )
        log.info(
            "sink for %s (%s) in group %s",
            source,
            ", ".join(f"{r.name} -> {stream_topics[r.name] or 'clickhouse'}" for r in declared),
            context.consumer_group,
        )
        # Everything built so far lives as long as the process: keep it out of
        # the collector's full passes (measured 7-9% of a sink's time).
        gc.freeze()
        with _stopping_on_signals(worker):
            stats = worker.run(idle_timeout_s=idle_exit_s)
    log.info(
        "sink stopped: %d rows in %d batches, %d dead letters, %d checkpoints saved",
        stats.rows_written,
        stats.batches,
        stats.dead_letters,
        stats.checkpoints_saved,
    )
    return stats
