"""An in-memory Checkpoint Store, for fast tests."""

from __future__ import annotations

import json
import threading
from typing import Any

from staging.checkpoints import checkpoint_key
from staging.envelope import Checkpoint, encode_checkpoint


class InMemoryCheckpointStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, bytes] = {}

    def load(self, source: str, resource: str) -> dict[str, Any] | None:
        with self._lock:
            raw = self._values.get(checkpoint_key(source, resource))
        return None if raw is None else dict(json.loads(raw))

    def load_all(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {k: dict(json.loads(v)) for k, v in self._values.items()}

    def save(self, source: str, resource: str, checkpoint: Checkpoint) -> None:
        # Encoded like the Kafka store, so the same checkpoints are refused.
        raw = encode_checkpoint(checkpoint)
        with self._lock:
            self._values[checkpoint_key(source, resource)] = raw

    def close(self) -> None:
        pass
