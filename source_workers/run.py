"""``ingest source run <source>``: one source process.

Composition and process life only: settings into the connector's Source, its
connector settings (``<PREFIX>_*`` variables), staged resources, the resume
point of each resource (the newest checkpoint sinks confirmed written), a
staging session, then the Durable Runtime until SIGTERM or SIGINT (stop
reading, stage what was received, close the socket, exit 0).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import Mapping
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Any

from foundation.admin import start_admin
from foundation.config import Settings
from foundation.config_load import connector_settings
from foundation.errors import StopError
from source_workers.authoring import Source
from source_workers.capture import CaptureRecorder, recorded_settings
from source_workers.connectors import Connector, connector_of, load_connector
from source_workers.connectors.defaults import with_connector_defaults
from source_workers.replay_feed import load_capture, replay_env
from source_workers.runtime import SourceRuntime
from source_workers.stats import RuntimeStats
from staging.checkpoints import entries_in, resume_point
from staging.compose import checkpoint_store, schema_catalog, staged_resources, staging_provider
from staging.protocol import StagingContext
from staging.resource import check_name

log = logging.getLogger(__name__)


def source_connector(settings: Settings, name: str) -> Connector:
    """The connector the source ``name`` runs."""
    configured = settings.sources.get(name)
    return load_connector(connector_of(name, configured.connector if configured else None))


def build_source(
    settings: Settings,
    name: str,
    env: Mapping[str, str] | None = None,
    connector: Connector | None = None,
) -> tuple[Source, Any]:
    """The configured source ``name`` and its connector settings (from ``env``, default
    the process environment); ``connector``: the source's, when already looked up."""
    connector = connector or source_connector(settings, name)
    options = connector_settings(connector.spec.settings, connector.spec.env_prefix, env)
    source = connector.build(name, options)
    return source, options


def run_source(
    settings: Settings,
    name: str,
    *,
    admin_port: int | None = None,
    admin_host: str = "127.0.0.1",
    record: Path | None = None,
    instance: str = "",
    replay: Path | None = None,
    speed: float = 1.0,
) -> RuntimeStats:
    """Run the source ``name`` until stopped; raises a StopError for what cannot be retried.

    ``record``: write every websocket frame received to this new capture file
    (see :mod:`source_workers.capture`). ``instance``: this process's name among
    several of the same source (see :class:`~staging.protocol.StagingContext`).
    ``replay``: feed the connector this capture, played ``speed`` times faster by a
    local capture server, instead of its provider.
    """
    declared_instances = settings.sources[name].instances if name in settings.sources else []
    if instance and instance not in declared_instances:
        check_name("instance", instance)
        raise StopError(
            f"source {name} has no instance {instance!r} (declared: "
            f"{', '.join(declared_instances) or 'none'}): add it to instances in "
            f"[sources.{name}], so that its sinks keep each instance's checkpoints apart"
        )
    if declared_instances and not instance:
        raise StopError(
            f"source {name} runs as instances {', '.join(declared_instances)}: pass --instance NAME"
        )
    connector = source_connector(settings, name)
    if record is not None and connector.spec.kind != "websocket":
        raise StopError(
            f"--record captures websocket frames, and connector {connector.name} polls HTTP: "
            "it would write a capture with no frames, which no replay can play"
        )
    with ExitStack() as feed:
        env: dict[str, str] | None = None
        if replay is not None:
            env = dict(os.environ) | _replay(feed, connector, replay, speed)
        source, options = build_source(settings, name, env, connector)
        return _run_source(
            settings, connector, name, source, options, admin_port, admin_host, record, instance
        )


def _replay(feed: ExitStack, connector: Connector, path: Path, speed: float) -> dict[str, str]:
    """Start a capture server on ``path`` (closed with ``feed``); the connector's variables."""
    from source_workers.transport.capture_server import CaptureServer

    capture, spec = load_capture(connector, path)
    server = feed.enter_context(CaptureServer(capture, speed=speed))
    log.info("replaying capture %s at %gx over %s", path, speed, server.ws_url)

    def watch() -> None:
        server.finished.wait()
        log.info(
            "capture played: %d frames sent; the source keeps running until stopped", server.sent
        )

    threading.Thread(target=watch, name="capture watcher", daemon=True).start()
    return replay_env(connector, capture, spec, server.ws_url, server.http_url)


def _run_source(
    settings: Settings,
    connector: Connector,
    name: str,
    source: Source,
    options: Any,
    admin_port: int | None,
    admin_host: str,
    record: Path | None,
    instance: str,
) -> RuntimeStats:
    settings = with_connector_defaults(settings, name)
    catalog = schema_catalog(settings)
    declared = {r.name: r for r in staged_resources(settings, catalog, name)}
    missing = [r.name for r in source.resources if r.name not in declared]
    if missing:
        raise StopError(f"source {name}: resource {missing[0]} is not configured")
    runtime_settings = settings.sources[name].runtime
    with ExitStack() as stack:
        recorder = _recorder(connector, name, options, record) if record is not None else None
        if recorder is not None:
            stack.callback(recorder.close)
            log.info("recording every frame received to %s", record)
        store = stack.enter_context(closing(checkpoint_store(settings)))
        saved = store.load_all()  # one read of the checkpoint topic for every resource
        checkpoints = {
            r.name: resume_point(entries_in(saved, name, r.name, instance))
            for r in source.resources
        }
        for r in source.resources:
            if instance and checkpoints[r.name] is None and entries_in(saved, name, r.name):
                log.warning(
                    "source %s, resource %s: instance %s has no checkpoint yet, but checkpoints "
                    "saved without an instance name exist; they are not used: instance %s "
                    "starts from the live feed",
                    name,
                    r.name,
                    instance,
                    instance,
                )
        for resource, checkpoint in checkpoints.items():
            log.info(
                "source %s%s, resource %s: resuming from %s",
                name,
                f" (instance {instance})" if instance else "",
                resource,
                checkpoint or "the live feed (no checkpoint yet)",
            )
        provider = staging_provider(settings, catalog)
        context = StagingContext(
            source=name,
            resources=tuple(declared[r.name] for r in source.resources),
            instance=instance,
        )
        session = stack.enter_context(provider.allocate_session(context))
        runtime = SourceRuntime(
            source,
            session,
            settings=runtime_settings,
            connector_settings=options,
            checkpoints=checkpoints,
            on_frame=recorder.record if recorder is not None else None,
        )
        if admin_port is not None:
            admin = start_admin(
                runtime.metrics, lambda: _health(runtime), host=admin_host, port=admin_port
            )
            stack.callback(admin.close)
            log.info("admin port: http://%s:%d (/health, /metrics)", admin_host, admin.port)
        stats = asyncio.run(_run(runtime))
    log.info(
        "source stopped: %d frames, %d records staged in %d writes, %d dead letters, %d sessions",
        stats.frames,
        stats.records_staged,
        stats.writes,
        stats.dead_letters,
        stats.sessions,
    )
    return stats


def _recorder(connector: Connector, name: str, options: Any, path: Path) -> CaptureRecorder:
    spec = connector.spec.replay
    kept = recorded_settings(options, spec) if spec is not None else {}
    return CaptureRecorder(path, connector.name, kept, note=f"recorded by source {name}")


def _health(runtime: SourceRuntime) -> dict[str, Any]:
    """``/health``: up and connected, and what this process has handled so far."""
    connected = runtime.metrics.value("source_connected", {"source": runtime.source.name})
    stats = runtime.stats
    return {
        "healthy": not runtime.stopping_event.is_set(),
        "connected": bool(connected),
        "frames": stats.frames,
        "records_staged": stats.records_staged,
        "dead_letters": stats.dead_letters,
        "ignored": stats.ignored,
        "sessions": stats.sessions,
    }


async def _run(runtime: SourceRuntime) -> RuntimeStats:
    loop = asyncio.get_running_loop()

    def on_signal(signum: signal.Signals) -> None:
        log.info("received %s: staging what was received, then stopping", signum.name)
        runtime.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        return await runtime.run()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
