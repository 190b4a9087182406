"""The staging layer: Kafka as the durable buffer between sources and sinks.

Pure core: :mod:`.codec` (Avro single-object encoding), :mod:`.schemas`,
:mod:`.resource`, :mod:`.envelope` (encoding), :mod:`.decoder`,
:mod:`.offsets`, :mod:`.deadletters`. Contracts:
:mod:`.protocol` (StagingProvider, StagingSession, RecordWriter,
RecordReader) and :mod:`.checkpoints` (CheckpointStore). Implementations:
:mod:`.kafka` and :mod:`.memory`.
"""

from staging.checkpoints import CarriedCheckpoint, CheckpointStore, resume_point
from staging.deadletters import DeadLetter
from staging.decoder import StagedRecord
from staging.envelope import Checkpoint
from staging.offsets import OffsetRange, Partition
from staging.protocol import (
    RecordReader,
    RecordWriter,
    StagedBatch,
    StagingContext,
    StagingProvider,
    StagingSession,
    WriteResult,
)
from staging.resource import StagedResource, TopicSpec
from staging.schemas import SchemaCatalog, StagedSchema

__all__ = [
    "CarriedCheckpoint",
    "Checkpoint",
    "CheckpointStore",
    "DeadLetter",
    "OffsetRange",
    "Partition",
    "RecordReader",
    "RecordWriter",
    "SchemaCatalog",
    "StagedBatch",
    "StagedRecord",
    "StagedResource",
    "StagedSchema",
    "StagingContext",
    "StagingProvider",
    "StagingSession",
    "TopicSpec",
    "WriteResult",
    "resume_point",
]
