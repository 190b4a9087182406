"""What the source-worker tests share: a runtime in a thread, and polling."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Self

from source_workers.runtime import RuntimeStats, SourceRuntime
from staging.protocol import StagingSession


def wait_for(condition: Callable[[], bool], timeout_s: float = 20, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class RuntimeThread:
    """A SourceRuntime running in a thread of its own, over its staging session."""

    def __init__(self, runtime: SourceRuntime, session: StagingSession) -> None:
        self.runtime = runtime
        self.session = session
        self.stats: RuntimeStats | None = None
        self.tasks_left = -1
        """asyncio tasks still alive when run() returned (besides the main one)."""
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self.stats = await self.runtime.run()
            self.tasks_left = len(asyncio.all_tasks()) - 1

        try:
            asyncio.run(main())
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._shut_down()

    def _shut_down(self) -> None:
        self.runtime.stop()
        self._thread.join(30)
        self.session.close()

    def stop(self) -> RuntimeStats:
        """Stop, and insist that the runtime ended without an error."""
        self._shut_down()
        assert self.error is None, self.error
        assert self.stats is not None
        return self.stats

    def finished(self, timeout_s: float = 30) -> BaseException | None:
        """Wait for the runtime to end by itself; the error that ended it, if any."""
        self._thread.join(timeout_s)
        return self.error
