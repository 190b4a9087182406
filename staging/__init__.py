"""The staging layer: Kafka as the durable buffer between sources and sinks.

Pure core: :mod:`.codec` (Avro single-object encoding), :mod:`.schemas`,
:mod:`.resource`, :mod:`.envelope` (encoding), :mod:`.decoder`,
:mod:`.offsets`, :mod:`.deadletters`. Contracts:
:mod:`.protocol` (StagingProvider, StagingSession, RecordWriter,
RecordReader) and :mod:`.checkpoints` (CheckpointStore). Implementations:
:mod:`.kafka` and :mod:`.memory`.
"""
