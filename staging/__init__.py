"""The staging layer: Kafka as the durable buffer between sources and sinks.

Pure core: :mod:`.codec` (Avro single-object encoding), :mod:`.schemas`,
:mod:`.resource`, :mod:`.envelope`, :mod:`.offsets`. Contracts:
:mod:`.protocol` (StagingProvider, StagingSession, RecordWriter,
RecordReader) and :mod:`.checkpoints` (CheckpointStore). Implementations:
:mod:`.kafka` and :mod:`.memory`.
"""
