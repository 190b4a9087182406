"""In-process staging: a real, contract-tested StagingProvider without a broker.

It keeps Kafka's semantics that workers rely on (partitions by key, consumer
groups that split partitions, explicit commits of next offsets, rebalances on
join and leave) and encodes records with the same envelope code as Kafka. It
is for fast tests and demos; nothing survives the process.
"""

from staging.memory.broker import MemoryBroker
from staging.memory.checkpoints import InMemoryCheckpointStore
from staging.memory.provider import MemoryStagingProvider, MemoryStagingSession

__all__ = [
    "InMemoryCheckpointStore",
    "MemoryBroker",
    "MemoryStagingProvider",
    "MemoryStagingSession",
]
