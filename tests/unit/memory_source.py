"""A source run wholly in memory: the Durable Runtime over in-memory staging, the
in-memory transports and a manual clock. No socket, no thread but the stager's, no
sleep: time moves only when a test calls :meth:`MemoryRun.advance`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Self

from foundation.clock import ManualClock
from foundation.config import RuntimeSettings
from source_workers.authoring import Source
from source_workers.runtime import SourceRuntime
from source_workers.stats import RuntimeStats
from source_workers.transport.memory import MemoryHttp, MemoryWebSocket
from staging.compose import staged_resource
from staging.memory import MemoryStagingProvider
from staging.offsets import Partition
from staging.protocol import StagingContext
from staging.schemas import SchemaCatalog


def run_for_at_most(test: Coroutine[Any, Any, None], seconds: float) -> None:
    """Run an async test; a test waiting for what never comes fails instead of hanging."""
    asyncio.run(asyncio.wait_for(test, timeout=seconds))


async def until(condition: Callable[[], bool], what: str = "condition") -> None:
    """Let the event loop run until ``condition`` holds (no time passes on the clock)."""
    for _ in range(20_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


class MemoryRun:
    """``async with MemoryRun(source, settings) as run:`` runs the source until ``stop()``."""

    def __init__(
        self,
        source: Source,
        connector_settings: Any,
        *,
        checkpoints: Mapping[str, Mapping[str, Any] | None] | None = None,
        **runtime: Any,
    ) -> None:
        self.clock = ManualClock()
        self.websocket = MemoryWebSocket()
        self.http = MemoryHttp(source=source.name, clock=self.clock)
        catalog = SchemaCatalog.default()
        self.resources = {
            r.name: staged_resource(source.name, r.name, r.staging, catalog)
            for r in source.resources
        }
        self.provider = MemoryStagingProvider(catalog=catalog)
        self.session = self.provider.allocate_session(
            StagingContext(source=source.name, resources=tuple(self.resources.values()))
        )
        options = {"linger_s": 0.5, "backoff_initial_s": 1.0, "backoff_max_s": 4.0, **runtime}
        self.runtime = SourceRuntime(
            source,
            self.session,
            settings=RuntimeSettings(**options),
            connector_settings=connector_settings,
            checkpoints=checkpoints,
            clock=self.clock,
            jitter=lambda: 0.5,
            http=self.http,
            websocket=self.websocket,
        )
        self._task: asyncio.Future[RuntimeStats] | None = None
        self._reads = 0

    async def __aenter__(self) -> Self:
        self._task = asyncio.ensure_future(self.runtime.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None and not self._task.done():
            self.runtime.stop()
            await asyncio.gather(self._task, return_exceptions=True)

    async def advance(self, seconds: float) -> None:
        """Let what can run, run; move the clock ``seconds``; let what woke, run."""
        for _ in range(50):
            await asyncio.sleep(0)
        self.clock.advance(seconds)
        for _ in range(50):
            await asyncio.sleep(0)

    async def stop(self) -> RuntimeStats:
        """Stop the runtime (staging what it received); its stats, or the error that ended it."""
        assert self._task is not None
        self.runtime.stop()
        return await asyncio.wait_for(self._task, timeout=10)

    async def ended(self) -> BaseException | None:
        """Wait for the runtime to end by itself; the error that ended it."""
        assert self._task is not None
        try:
            await asyncio.wait_for(self._task, timeout=10)
        except Exception as exc:
            return exc
        return None

    def staged(self, resource: str) -> list[Any]:
        """The staged records of ``resource``, as a fresh consumer group reads them."""
        self._reads += 1
        context = StagingContext(
            source=self.runtime.source_name,
            resources=(self.resources[resource],),
            group_id=f"read-{self._reads}",
        )
        with self.provider.allocate_session(context) as session:
            reader = session.reader()
            return [r for b in reader.iter_batches(10_000, idle_timeout_s=0) for r in b.records]

    def dead_letters(self, resource: str) -> list[Any]:
        topic = self.resources[resource].dlq.name
        return self.provider.broker.fetch(Partition(topic, 0), 0, 10_000)
