"""durable-ingest: live websocket and HTTP APIs into ClickHouse, staged in Kafka.

Cross-cutting pieces live here: :mod:`.config` (settings, validated in one
place), :mod:`.errors` (the error tree), :mod:`.compose` (settings into
objects), :mod:`.stack` (the embedded broker), :mod:`.warehouse` (chDB or a
ClickHouse server) and :mod:`.cli` (the ``ingest`` command).
"""

__version__ = "0.1.0"
