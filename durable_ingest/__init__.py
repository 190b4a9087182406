"""durable-ingest: live websocket and HTTP APIs into ClickHouse, staged in Kafka.

This package is the application layer, the top of the layers (docs/architecture.md):
:mod:`.cli` (the ``ingest`` command) and its :mod:`.commands`, dev mode
(:mod:`.dev`), the embedded stack (:mod:`.stack`, :mod:`.apache_kafka`) and the
operations tools (status, dead letters, replay, manifest, scaffolding). It imports
the workers, staging and the foundation; none of them imports it.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
