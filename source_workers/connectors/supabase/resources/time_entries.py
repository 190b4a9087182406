"""Resource ``time_entries``: every change of the example table ``time_entries``, once.

Table ``<source>_time_entries`` is a change log: one row per (id, commit
timestamp, operation), with the columns of ``schemas/supabase/time_entries.avsc``.
"""

from __future__ import annotations

from source_workers.authoring import Resource
from source_workers.connectors.supabase.tables import TableChanges, table_resource


def resource() -> tuple[Resource, TableChanges]:
    return table_resource("time_entries", "supabase/time_entries.avsc")
