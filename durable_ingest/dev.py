"""``ingest dev <connector>``: the whole pipeline on a laptop, in one command.

:class:`DevRun` starts a fresh broker (the embedded Tansu, or one Apache Kafka
node with ``--engine kafka``) and creates the topics, then one
source worker and one sink worker as separate processes (``ingest source run``
and ``ingest sink run``, exactly what a deployment runs), with the embedded
warehouse (chDB) owned by the sink. With ``--replay`` a
:class:`~source_workers.transport.capture_server.CaptureServer` plays a
captured feed to the real connector over a local websocket, so it runs
offline. Every ``interval_s`` it polls both admin ports and prints a progress
line (:mod:`durable_ingest.progress`).

It stops on Ctrl-C or SIGTERM, after ``duration_s``, after ``idle_exit_s``
without anything new staged or written, once ``max_events``
records are staged, or once a replayed capture is fully staged and written.
Stopping is ordered so that nothing accepted is lost: the source first (it
stages what it received and exits), then the sink once it has written
everything staged (it commits and exits), then the broker. The workers run in
sessions of their own (so does the broker), so a Ctrl-C in the terminal reaches only this
supervisor, which then stops them in that order.

While it runs, ``<data_dir>/dev.json`` names the sink's admin port:
``ingest sql`` queries the embedded warehouse through it (only the sink
process may open the chDB directory).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from durable_ingest.commands.stack import prepare_topics, with_broker
from durable_ingest.dev_summary import RunSummary
from durable_ingest.processes import Worker
from durable_ingest.progress import Quiet, Snapshot, describe_checkpoint, render
from durable_ingest.stack import Broker, make_broker
from foundation.config import Settings
from foundation.errors import IngestError, StopError
from source_workers.capture import CaptureFile, ReplaySpec
from source_workers.connectors import Connector, load_connector
from source_workers.connectors.defaults import with_connector_defaults
from source_workers.replay_feed import check_speed, load_capture, replay_env
from staging.compose import schema_catalog, staged_resources

STATE_FILE = "dev.json"
SETTLE_S = 3.0
"""A worker count unchanged this long counts as caught up (sink) or drained (source)."""
DRAIN_LIMIT_S = 120.0


@dataclass(frozen=True, slots=True)
class DevOptions:
    connector: str
    replay: Path | None = None
    speed: float = 1.0
    duration_s: float | None = None
    max_events: int | None = None
    idle_exit_s: float | None = None
    port: int | None = 0
    engine: str = "tansu"
    interval_s: float = 1.0
    config: Path | None = None
    log_level: str = "INFO"


class DevRun:
    def __init__(self, settings: Settings, options: DevOptions, out: TextIO = sys.stdout) -> None:
        self.options = options
        self.out = out
        self.connector: Connector = load_connector(options.connector)
        self.settings = with_connector_defaults(settings, options.connector)
        self.resources = staged_resources(
            self.settings, schema_catalog(self.settings), options.connector
        )
        """The connector's staged resources (topics, tables), resolved once."""
        self.capture: CaptureFile | None = None
        self.replay_spec: ReplaySpec | None = None
        if options.replay is not None:
            self.capture, self.replay_spec = load_capture(self.connector, options.replay)
        check_speed(options.speed)
        if options.idle_exit_s is not None and not options.idle_exit_s > 0:
            raise StopError(f"--idle-exit must be above 0 seconds, not {options.idle_exit_s}")
        if options.max_events is not None and options.max_events < 1:
            raise StopError(f"--max-events must be at least 1, not {options.max_events}")
        if options.duration_s is not None and not options.duration_s > 0:
            raise StopError(f"--duration must be above 0 seconds, not {options.duration_s}")
        self._stop = threading.Event()
        self._why = ""

    # --- life ---------------------------------------------------------------

    def run(self) -> int:
        if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
            # The progress lines are the output; the workers log to their files.
            for name in ("websockets", "staging", "durable_ingest"):
                logging.getLogger(name).setLevel(logging.WARNING)
        data_dir = self.settings.data_dir
        dev_dir = data_dir / "dev"
        dev_dir.mkdir(parents=True, exist_ok=True)
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            with ExitStack() as stack:
                # Every run starts on a fresh broker: Tansu keeps nothing, and an Apache
                # Kafka node's folder from an earlier run is cleared first.
                shutil.rmtree(dev_dir / "kafka", ignore_errors=True)
                broker = make_broker(self.options.engine, dev_dir, self.options.port)
                bootstrap = broker.start()
                stack.callback(broker.stop)
                self.settings = with_broker(self.settings, broker)
                prepare_topics(self.settings)
                env = self._env(bootstrap)
                if self.capture is not None:
                    from source_workers.transport.capture_server import CaptureServer

                    server = stack.enter_context(
                        CaptureServer(self.capture, speed=self.options.speed)
                    )
                    env.update(self._replay_env(server.ws_url, server.http_url))
                else:
                    server = None
                sink = self._start(
                    "sink", ["sink", "run", "--source", self.options.connector], env, dev_dir
                )
                stack.callback(sink.stop, 60)  # on an error below; after a stop: nothing
                source = self._start(
                    "source", ["source", "run", self.options.connector], env, dev_dir
                )
                stack.callback(source.stop, 30)
                state = data_dir / STATE_FILE
                state.write_text(
                    json.dumps(
                        {
                            "pid": os.getpid(),
                            "sink_admin_port": sink.admin_port,
                            "source_admin_port": source.admin_port,
                            "bootstrap": bootstrap,
                        }
                    )
                )
                stack.callback(state.unlink, missing_ok=True)
                self._banner(bootstrap, server is not None, dev_dir)
                return self._watch(source, sink, server, broker)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if not self._stop.is_set():
            self._why = f"received {signal.Signals(signum).name}"
        self._stop.set()

    def _env(self, bootstrap: str) -> dict[str, str]:
        env = dict(os.environ)
        env["INGEST_KAFKA_BOOTSTRAP"] = bootstrap
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _replay_env(self, ws_url: str, http_url: str) -> dict[str, str]:
        assert self.replay_spec is not None and self.capture is not None
        return replay_env(self.connector, self.capture, self.replay_spec, ws_url, http_url)

    def _start(self, name: str, command: list[str], env: dict[str, str], dev_dir: Path) -> Worker:
        args = [sys.executable, "-m", "durable_ingest.cli", "--log-level", self.options.log_level]
        if self.options.config is not None:
            args += ["--config", str(self.options.config)]
        args += [*command, "--data-dir", str(self.settings.data_dir)]
        return Worker(name, args, env, dev_dir / f"{name}.log")

    def _banner(self, bootstrap: str, replaying: bool, dev_dir: Path) -> None:
        prefix = self.connector.spec.env_prefix
        feed = f"capture {self.options.replay}" if replaying else f"the provider ({prefix}_*)"
        clickhouse = self.settings.clickhouse
        where = "embedded, " if clickhouse.embedded_path is not None else ""
        print(
            f"ingest dev {self.options.connector}: {feed} -> Kafka {bootstrap} -> "
            f"ClickHouse ({where}{clickhouse.dsn})",
            file=self.out,
        )
        logs = (
            f"{dev_dir}/{{source,sink,broker}}.log"
            if self.options.engine == "tansu"
            else f"{dev_dir}/{{source,sink}}.log, the broker's {dev_dir}/kafka/node-*.log"
        )
        print(f"worker logs: {logs}; Ctrl-C stops", file=self.out, flush=True)

    # --- watching ---------------------------------------------------------------

    def _snapshot(self, started: float, source: Worker, sink: Worker) -> Snapshot:
        health = _json(sink.get("/health"))
        return Snapshot.of(
            time.monotonic() - started, source.get("/metrics"), sink.get("/metrics"), health
        )

    def _watch(self, source: Worker, sink: Worker, server: Any, broker: Broker) -> int:
        started = time.monotonic()
        before: Snapshot | None = None
        last = Snapshot(0.0)
        quiet = Quiet()
        while not self._stop.wait(self.options.interval_s):
            last = _keep(last, self._snapshot(started, source, sink))
            print(render(last, before), file=self.out, flush=True)
            before = last
            failed = self._failure(source, sink, broker)
            if failed:
                return self._shutdown(source, sink, last, failed)
            quiet_s = quiet.observe(last)
            reason = self._done(last, server, quiet_s, quiet.unchanged_for(last))
            if reason:
                self._why = reason
                break
        return self._shutdown(source, sink, last, None)

    def _done(self, now: Snapshot, server: Any, quiet_s: float, unchanged_s: float) -> str:
        """Why the run should end now, or "". ``quiet_s``: nothing new since, counted from
        the source's first connection; ``unchanged_s``: the same, counted from the start."""
        options = self.options
        if options.duration_s is not None and now.at >= options.duration_s:
            return f"--duration {options.duration_s:g} s reached"
        if options.max_events is not None and now.staged >= options.max_events:
            return f"--max-events {options.max_events} reached ({now.staged} staged)"
        if options.idle_exit_s is not None and quiet_s >= options.idle_exit_s and now.settled:
            return (
                f"nothing new staged or written for {options.idle_exit_s:g} s (--idle-exit): "
                "the provider has gone quiet"
            )
        if server is None or not server.finished.is_set():
            return ""
        if unchanged_s >= SETTLE_S and now.settled:
            return f"capture played: {server.sent} frames sent"
        return ""

    def _failure(self, source: Worker, sink: Worker, broker: Broker) -> str:
        for worker in (source, sink):
            if not worker.running():
                return f"the {worker.name} worker exited: {worker.last_error()}"
        if not broker.running():
            return f"the broker exited; see {broker.log_path}"
        return ""

    # --- stopping ---------------------------------------------------------------

    def _shutdown(self, source: Worker, sink: Worker, last: Snapshot, failed: str | None) -> int:
        print(f"stopping: {failed or self._why or 'stopped'}", file=self.out, flush=True)
        timeout = self.settings.sources[self.options.connector].runtime.shutdown_timeout_s + 15
        source_code = source.stop(timeout)  # SIGTERM: it stages what it received
        summary = self._summary()
        errors = []
        try:
            # The source's last write can land after its last poll: count the topics
            # (never fewer than the source reported).
            last = replace(last, staged=max(last.staged, summary.count_staged()))
        except IngestError as exc:
            errors.append(f"cannot count the staged records: {exc}")
        last, unwritten = self._drain(sink, last)
        if unwritten:
            errors.append(unwritten)
        sink_code = sink.stop(60)
        # -SIGTERM: the worker was stopped before it installed its own handling (a Ctrl-C
        # in the first second): it had not staged or written anything yet, nothing is lost.
        errors += [
            f"{w.name} worker exited with code {code}: {w.last_error()}"
            for w, code in ((source, source_code), (sink, sink_code))
            if code not in (0, -signal.SIGTERM)
        ]
        resume = summary.resume_points()
        print(
            f"done: {last.staged:,} records staged, {last.written:,} rows written, "
            f"{last.dead_letters} dead letters in this run; the source would resume from "
            f"{describe_checkpoint(resume if resume is not None else last.checkpoints, 200)}",
            file=self.out,
        )
        if last.dead_letters:
            print(
                f"note: the {last.dead_letters} dead letters were staged in this run's broker, "
                "which has stopped (the next ingest dev starts a fresh one); to inspect and "
                "re-drive them (ingest dlq), run the workers against ingest stack up or a "
                "Kafka cluster",
                file=sys.stderr,
            )
        summary.report_tables(self.out)
        for line in errors:
            print(f"ingest: error: {line}", file=sys.stderr)
        return 1 if errors or failed else 0

    def _summary(self) -> RunSummary:
        """What the run leaves, read from its broker, checkpoint store and warehouse."""
        return RunSummary(self.settings, self.options.connector, self.resources)

    def _drain(self, sink: Worker, last: Snapshot) -> tuple[Snapshot, str]:
        """Follow the sink until it wrote (or dead-lettered) every staged record; with
        the counts, what is left unwritten if it exits or ``DRAIN_LIMIT_S`` passes first."""
        deadline = time.monotonic() + DRAIN_LIMIT_S
        while sink.running() and not last.settled:
            metrics = sink.get("/metrics")
            if metrics is not None:
                now = Snapshot.of(last.at, None, metrics, _json(sink.get("/health")))
                last = _keep(last, replace(now, staged=last.staged, connected=last.connected))
                if last.settled:
                    break
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        missing = last.staged - last.written - last.sink_dead_letters
        if missing <= 0:
            return last, ""
        why = "exited" if not sink.running() else f"did not within {DRAIN_LIMIT_S:.0f} s"
        return last, f"{missing} staged records were not written: the sink {why} (see sink.log)"


def _json(text: str | None) -> dict[str, Any]:
    """A worker's ``/health`` body, or nothing when it is missing or not JSON."""
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _keep(last: Snapshot, now: Snapshot) -> Snapshot:
    """A poll that found a worker's port not answering keeps the counts seen before."""
    return Snapshot(
        at=now.at,
        staged=max(last.staged, now.staged),
        written=max(last.written, now.written),
        source_dead_letters=max(last.source_dead_letters, now.source_dead_letters),
        sink_dead_letters=max(last.sink_dead_letters, now.sink_dead_letters),
        connected=now.connected,
        freshness_s=now.freshness_s if now.freshness_s is not None else last.freshness_s,
        checkpoints=now.checkpoints or last.checkpoints,
    )
