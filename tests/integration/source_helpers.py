"""What the source-worker tests share: a runtime in a thread, and polling."""

from __future__ import annotations

import asyncio
import os
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

from foundation.config import KafkaSettings
from source_workers.runtime import SourceRuntime
from source_workers.stats import RuntimeStats
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


def source_config(
    tmp: Path, kafka: KafkaSettings, source: str, connector: str, runtime: str = ""
) -> Path:
    """An ``ingest.toml`` for one source running ``connector`` (``runtime``: extra TOML lines
    of ``[sources.<source>.runtime]``), with the embedded warehouse in ``tmp``."""
    path = tmp / "ingest.toml"
    text = textwrap.dedent(
        f"""
        data_dir = "{tmp}"
        [kafka]
        bootstrap = "{kafka.bootstrap}"
        session_timeout_ms = 6000
        heartbeat_interval_ms = 1000
        [sources.{source}]
        connector = "{connector}"
        """
    )
    if runtime:
        text += f"[sources.{source}.runtime]\n{textwrap.dedent(runtime)}"
    path.write_text(text)
    return path


def process_env(config: Path, *drop_prefixes: str) -> dict[str, str]:
    """This process's environment for a worker reading ``config``, without ``INGEST_*`` and
    the connectors' own variables (``drop_prefixes``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INGEST_", *drop_prefixes))}
    env["INGEST_CONFIG"] = str(config)
    return env
