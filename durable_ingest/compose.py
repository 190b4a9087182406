"""The composition root: turns validated settings into the objects workers use.

Workers and the CLI get their schema catalog, resources, staging provider and
checkpoint store here, so one place decides which implementation they get.
"""

from __future__ import annotations

from durable_ingest.config import ResourceSettings, Settings, SourceSettings
from durable_ingest.errors import UnknownResourceError
from staging.kafka import KafkaCheckpointStore, KafkaStagingProvider
from staging.resource import StagedResource, TopicSpec, check_topic, default_topic
from staging.schemas import SchemaCatalog


def schema_catalog(settings: Settings) -> SchemaCatalog:
    """The schemas folder the settings name, or the one shipped with durable-ingest."""
    if settings.staging.schemas_dir is not None:
        return SchemaCatalog(settings.staging.schemas_dir)
    return SchemaCatalog.default()


def with_connector_defaults(settings: Settings, name: str | None = None) -> Settings:
    """Settings in which every source that runs a connector declares its resources.

    A resource the TOML declares (``[sources.<s>.resources.<r>]``) keeps that
    declaration whole; the connector's own definition fills in the others. With
    ``name``, the source ``name`` is added when it is a connector not configured.
    """
    from source_workers.connectors import CONNECTORS, connector_of, load_connector

    sources = dict(settings.sources)
    if name is not None and name not in sources and name in CONNECTORS:
        sources[name] = SourceSettings()
    changed = False
    for source_name, source_settings in sources.items():
        if source_settings.connector is None and source_name not in CONNECTORS:
            continue  # a source declared by hand, with no connector behind it
        connector = load_connector(connector_of(source_name, source_settings.connector))
        definition = connector.pipeline.build(source_name)
        resources = dict(source_settings.resources)
        for resource in definition.resources:
            if resource.name not in resources:
                resources[resource.name] = ResourceSettings(**resource.staging_defaults())
                changed = True
        sources[source_name] = source_settings.model_copy(update={"resources": resources})
    if not changed and sources.keys() == settings.sources.keys():
        return settings
    return settings.model_copy(update={"sources": sources})


def unconfigured_connectors(settings: Settings) -> dict[str, list[str]]:
    """Connectors no configured source is named after, with their resources' names: a
    source may run as one (``ingest source run usgs``) without being in the TOML."""
    from source_workers.connectors import CONNECTORS, load_connector

    return {
        name: [r.name for r in load_connector(name).pipeline.build(name).resources]
        for name in CONNECTORS
        if name not in settings.sources
    }


def with_staged_connectors(settings: Settings, topics: set[str]) -> Settings:
    """``settings`` plus every unconfigured connector that has staged topics (by their
    default names), so that operations see every source that staged something."""
    for name, resources in unconfigured_connectors(settings).items():
        if any(default_topic(name, r) in topics for r in resources):
            settings = with_connector_defaults(settings, name)
    return settings


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
                StagedResource.define(
                    source=source_name,
                    name=name,
                    schema=catalog.load(res.schema_file),
                    key=tuple(res.key),
                    id_fields=tuple(res.id_fields),
                    time_field=res.time_field,
                    topic=res.topic,
                    partitions=res.partitions,
                    retention_ms=res.retention_ms,
                    replication_factor=res.replication_factor
                    or settings.staging.replication_factor,
                )
            )
    return result


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
