"""Settings completed from the connectors' own definitions: a source that runs a
connector stages every resource the connector defines, unless the TOML declares it."""

from __future__ import annotations

from foundation.config import Settings, SourceSettings
from source_workers.connectors import CONNECTORS, connector_of, load_connector
from staging.resource import default_topic


def with_connector_defaults(settings: Settings, name: str | None = None) -> Settings:
    """Settings in which every source that runs a connector declares its resources.

    A resource the TOML declares (``[sources.<s>.resources.<r>]``) keeps that
    declaration whole; the connector's own definition fills in the others. With
    ``name``, the source ``name`` is added when it is a connector not configured.
    """
    sources = dict(settings.sources)
    if name is not None and name not in sources and name in CONNECTORS:
        sources[name] = SourceSettings()
    changed = False
    for source_name, source_settings in sources.items():
        if source_settings.connector is None and source_name not in CONNECTORS:
            continue  # a source declared by hand, with no connector behind it
        connector = load_connector(connector_of(source_name, source_settings.connector))
        definition = connector.build(source_name)
        resources = dict(source_settings.resources)
        for resource in definition.resources:
            if resource.name not in resources:
                resources[resource.name] = resource.staging
                changed = True
        sources[source_name] = source_settings.model_copy(update={"resources": resources})
    if not changed and sources.keys() == settings.sources.keys():
        return settings
    return settings.model_copy(update={"sources": sources})


def unconfigured_connectors(settings: Settings) -> dict[str, list[str]]:
    """Connectors no configured source is named after, with their resources' names: a
    source may run as one (``ingest source run usgs``) without being in the TOML."""
    return {
        name: [r.name for r in load_connector(name).build(name).resources]
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
