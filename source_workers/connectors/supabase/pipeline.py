"""Composition of the Supabase connector: source, resources, settings, defaults.

Resources ``projects`` and ``time_entries`` (topics ``ingest.<source>.<table>``,
tables ``<source>_<table>``, change logs keyed by ``(id, commit_timestamp,
operation)``). The checkpoint per resource is the newest commit timestamp
staged. SUPABASE_TABLES may name a subset of the resources.
"""

from __future__ import annotations

from functools import partial

from source_workers.authoring import Source, define_source
from source_workers.connectors import ConnectorSpec
from source_workers.connectors.supabase.resources import projects, time_entries
from source_workers.connectors.supabase.settings import SupabaseSettings
from source_workers.connectors.supabase.source import Realtime, start

_COMMIT_MARK = {
    "description": "The newest commit timestamp staged (held at the backfill's start while "
    "a backfill of the table runs).",
    "type": "object",
    "properties": {"commit_timestamp": {"type": "string", "format": "date-time"}},
    "required": ["commit_timestamp"],
}


def build(name: str = "supabase", settings: SupabaseSettings | None = None) -> Source:
    """A fresh Supabase source (its own protocol state) called ``name``; the settings
    are read by ``start`` (the connection, tables and backfill)."""
    built = [projects.resource(), time_entries.resource()]
    realtime = Realtime({resource.name: changes for resource, changes in built})
    return define_source(
        name=name,
        resources=[resource for resource, _ in built],
        start=partial(start, realtime=realtime),
        control=realtime.control,
    )


CONNECTOR = ConnectorSpec(
    build=build,
    settings=SupabaseSettings,
    env_prefix="SUPABASE",
    # Realtime over a websocket; the optional backfill over PostgREST.
    kind="websocket",
    checkpoint={"projects": _COMMIT_MARK, "time_entries": _COMMIT_MARK},
)
