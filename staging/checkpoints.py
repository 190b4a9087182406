"""The Checkpoint Store contract: where each source resumes from.

A checkpoint is a small JSON object per (source, resource), saved only after
the write it describes is durable and loaded when a source starts.
Implementations: :class:`staging.kafka.checkpoints.KafkaCheckpointStore`
(a compacted topic) and :class:`staging.memory.checkpoints.InMemoryCheckpointStore`.
"""

from __future__ import annotations

from typing import Any, Protocol

from staging.envelope import Checkpoint


class CheckpointStore(Protocol):
    def load(self, source: str, resource: str) -> dict[str, Any] | None:
        """The newest saved checkpoint, or None if nothing was ever saved."""
        ...

    def save(self, source: str, resource: str, checkpoint: Checkpoint) -> None:
        """Store durably; returns only once the store confirmed it."""
        ...

    def close(self) -> None: ...


def checkpoint_key(source: str, resource: str) -> str:
    """The key a checkpoint is stored under: ``<source>/<resource>``."""
    return f"{source}/{resource}"
