"""Composition of the ``usgs`` connector: source, resource, settings, defaults.

Resource ``earthquakes``: topic ``ingest.<source>.earthquakes`` (3
partitions, 7 days; keyed by event id, so the revisions of one event stay in
order), table ``<source>_earthquakes``, a change log with the natural key
``(id, updated)``. ``[sources.<name>.resources.earthquakes]`` in
``ingest.toml`` may override the staging defaults.
"""

from __future__ import annotations

from source_workers.authoring import Source, define_source
from source_workers.connectors import ConnectorSpec
from source_workers.connectors.usgs.resources import earthquakes
from source_workers.connectors.usgs.source import UsgsSettings, starter


def build(name: str = "usgs", settings: UsgsSettings | None = None) -> Source:
    """A fresh usgs source (its own memory of the revisions staged) called ``name``."""
    return define_source(name=name, resources=[earthquakes.resource()], start=starter())


CONNECTOR = ConnectorSpec(
    build=build,
    settings=UsgsSettings,
    env_prefix="USGS",
    kind="http",
    checkpoint={
        "earthquakes": {
            "description": "The newest revision time (properties.updated) staged. Informational: "
            "the feed has no cursor, so a restart polls the feed's whole window again.",
            "type": "object",
            "properties": {"updated": {"type": "string", "format": "date-time"}},
            "required": ["updated"],
        }
    },
)
