"""Staging from validated settings: the schema catalog, the staged resources, the
StagingProvider and the checkpoint store, so one place decides which implementation
the workers and the operations commands get."""

from __future__ import annotations

from foundation.config import ResourceSettings, Settings
from foundation.errors import UnknownResourceError
from staging.kafka import KafkaCheckpointStore, KafkaStagingProvider
from staging.resource import StagedResource, TopicSpec, check_topic
from staging.schemas import SchemaCatalog


def schema_catalog(settings: Settings) -> SchemaCatalog:
    """The schemas folder the settings name, or the one shipped with durable-ingest."""
    if settings.staging.schemas_dir is not None:
        return SchemaCatalog(settings.staging.schemas_dir)
    return SchemaCatalog.default()


def staged_resources(
    settings: Settings, catalog: SchemaCatalog, source: str | None = None
) -> list[StagedResource]:
    """Every resource the settings declare (of one source, when ``source`` is given)."""
    if source is not None and source not in settings.sources:
        known = ", ".join(sorted(settings.sources)) or "none"
        raise UnknownResourceError(
            f"no source {source!r} is configured (configured: {known})", source=source, resource=""
        )
    result = []
    for source_name, source_settings in sorted(settings.sources.items()):
        if source is not None and source_name != source:
            continue
        for name, res in sorted(source_settings.resources.items()):
            result.append(
                staged_resource(
                    source_name, name, res, catalog, settings.staging.replication_factor
                )
            )
    return result


def staged_resource(
    source: str,
    name: str,
    settings: ResourceSettings,
    catalog: SchemaCatalog,
    replication_factor: int = 1,
) -> StagedResource:
    """The staging view of one resource from its configuration view (the schema loaded,
    the topics named); ``replication_factor`` when the resource sets none."""
    return StagedResource.define(
        source=source,
        name=name,
        schema=catalog.load(settings.schema_file),
        key=tuple(settings.key),
        id_fields=tuple(settings.id_fields),
        time_field=settings.time_field,
        topic=settings.topic,
        partitions=settings.partitions,
        retention_ms=settings.retention_ms,
        replication_factor=settings.replication_factor or replication_factor,
    )


def checkpoint_topic(settings: Settings) -> TopicSpec:
    """The compacted topic that holds every source's checkpoints."""
    return TopicSpec(
        check_topic(settings.staging.checkpoint_topic),
        partitions=1,
        retention_ms=-1,
        replication_factor=settings.staging.checkpoint_replication_factor
        or settings.staging.replication_factor,
        compacted=True,
    )


def staging_provider(settings: Settings, catalog: SchemaCatalog) -> KafkaStagingProvider:
    """Kafka as the StagingProvider, as the settings describe it."""
    return KafkaStagingProvider(
        settings.kafka, catalog=catalog, max_record_bytes=settings.staging.max_record_bytes
    )


def checkpoint_store(settings: Settings) -> KafkaCheckpointStore:
    """The checkpoint store on the compacted checkpoint topic (created if missing)."""
    return KafkaCheckpointStore(settings.kafka, checkpoint_topic(settings))
