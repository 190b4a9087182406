"""An in-memory Checkpoint Store, for fast tests.

Like the Kafka store, it keeps checkpoints as records of a one-partition topic
(in a :class:`MemoryBroker`), newest per key wins. Store objects are cheap
views: a new one over the same broker sees what an earlier one saved, as a
restarted worker sees what its predecessor saved in Kafka.
"""

from __future__ import annotations

import json
from typing import Any

from foundation.errors import StagingClosedError
from staging.checkpoints import checkpoint_key
from staging.envelope import Checkpoint, encode_checkpoint
from staging.memory.broker import MemoryBroker
from staging.offsets import Partition
from staging.resource import CHECKPOINT_TOPIC, TopicSpec


class InMemoryCheckpointStore:
    def __init__(self, broker: MemoryBroker | None = None, topic: str = CHECKPOINT_TOPIC) -> None:
        self._broker = MemoryBroker() if broker is None else broker
        self._partition = Partition(topic, 0)
        self._broker.create_topic(TopicSpec(topic, partitions=1, compacted=True))
        self._closed = False

    def load(self, source: str, resource: str) -> dict[str, Any] | None:
        return self.load_all().get(checkpoint_key(source, resource))

    def load_all(self) -> dict[str, dict[str, Any]]:
        """Newest checkpoint per ``<source>/<resource>`` key."""
        self._check_open()
        end = self._broker.end_offset(self._partition)
        found: dict[str, dict[str, Any]] = {}
        for record in self._broker.fetch(self._partition, 0, end):
            if record.key is not None and record.value is not None:
                found[record.key.decode()] = dict(json.loads(record.value))
        return found

    def save(self, source: str, resource: str, checkpoint: Checkpoint) -> None:
        self._check_open()
        # Encoded like the Kafka store, so the same checkpoints are refused.
        raw = encode_checkpoint(checkpoint)
        key = checkpoint_key(source, resource).encode()
        self._broker.append(self._partition.topic, key, raw, (), partition=0)

    def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise StagingClosedError("checkpoint store is closed")
