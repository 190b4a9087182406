"""What one source process has done: counted by the runtime and the stager, returned
by :meth:`~source_workers.runtime.SourceRuntime.run` and logged when it stops."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class RuntimeStats:
    frames: int = 0
    records_staged: int = 0
    writes: int = 0
    dead_letters: int = 0
    ignored: int = 0
    """Messages no resource recognised (subscription acks, heartbeats...)."""
    sessions: int = 0
