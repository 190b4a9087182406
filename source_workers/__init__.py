"""Source workers: connect to a provider, parse and process its messages, stage envelopes.

* :mod:`.authoring`: ``define_source`` / ``define_resource`` (pure);
* :mod:`.frames`, :mod:`.buffer`: the runtime's pure core (untrusted-input
  limits, what waits to be staged);
* :mod:`.runtime` and :mod:`.context`: the Durable Runtime and what a
  source's ``start`` is handed;
* :mod:`.transport`: the provider websocket and HTTP clients (the only I/O);
* :mod:`.connectors`: one folder per provider (``coinbase``, ``supabase``, ``usgs``);
* :mod:`.run` and :mod:`.entry`: one source process (``ingest source run <source>``,
  ``python -m source_workers``).

See docs/sources.md.
"""

from source_workers.authoring import (
    Internal,
    Output,
    Resource,
    Source,
    define_resource,
    define_source,
)
from source_workers.capture import ReplaySpec
from source_workers.context import SourceContext
from source_workers.stats import RuntimeStats

__all__ = [
    "Internal",
    "Output",
    "ReplaySpec",
    "Resource",
    "RuntimeStats",
    "Source",
    "SourceContext",
    "define_resource",
    "define_source",
]
