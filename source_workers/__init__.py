"""Source workers: connect to a provider, parse and process its messages, stage envelopes.

Not built yet (issue "Source workers"); they write through
:class:`staging.protocol.RecordWriter` and load their checkpoint from a
:class:`staging.checkpoints.CheckpointStore`.
"""
