"""Sink workers: read staged batches, write ClickHouse, then commit offsets and checkpoints.

Not built yet (issue "Sink workers"); they read through
:class:`staging.protocol.RecordReader`.
"""
