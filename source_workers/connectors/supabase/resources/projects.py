"""Resource ``projects``: every change of the example table ``projects``, once.

Table ``<source>_projects`` is a change log: one row per (id, commit
timestamp, operation), with the columns of ``schemas/supabase/projects.avsc``.
"""

from __future__ import annotations

from source_workers.authoring import Resource
from source_workers.connectors.supabase.tables import TableChanges, table_resource


def resource() -> tuple[Resource, TableChanges]:
    return table_resource("projects", "supabase/projects.avsc")
