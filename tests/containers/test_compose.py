"""docker-compose.yml run for real with podman-compose: the local-trial profile (a sink
writing chDB on a volume, fed offline) end to end, and ``--scale sink=3``.

What this does not run: the ``clickhouse`` service (no ClickHouse server image can be had
here) and so the default ``sink`` writing it; the scale test gives the sinks a stream
target instead (an override file mounts a configuration), which exercises the compose
wiring, the images, the consumer group and the health checks, but not a server insert.
podman 4.3 cannot wait for ``condition: service_healthy`` (podman-compose says so and
starts the workers at once); the workers retry until Kafka answers, so nothing is lost.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from source_workers.replay_feed import sample_capture
from tests.containers.podman import ROOT, Podman, podman_env
from tests.helpers import trade_keys
from tests.integration.pipeline import read_topic
from tests.integration.source_helpers import wait_for

pytestmark = pytest.mark.containers
TRADES = trade_keys(sample_capture("coinbase"))
COMPOSE = ROOT / "docker-compose.yml"


def podman_compose() -> list[str]:
    found = shutil.which("podman-compose") or str(Path(sys.executable).with_name("podman-compose"))
    if not Path(found).exists():
        pytest.skip("podman-compose is not installed (pip install podman-compose)")
    return [found]


class Project:
    """A compose project of its own name; everything it made is removed afterwards."""

    def __init__(self, podman: Podman, *files: Path) -> None:
        self.podman = podman
        self.name = f"ditest{podman.tag}"
        self.files = [a for f in (COMPOSE, *files) for a in ("-f", str(f))]

    def __call__(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*podman_compose(), *self.files, "-p", self.name, "--profile", "local", *args],
            cwd=ROOT,
            env=podman_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return done

    def container(self, service: str, number: int = 1) -> str:
        return f"{self.name}_{service}_{number}"

    def containers(self) -> list[str]:
        listed = self.podman(
            "ps",
            "-a",
            "--filter",
            f"label=com.docker.compose.project={self.name}",
            "--format",
            "{{.Names}}",
        ).stdout
        return sorted(listed.split())

    def remove(self) -> None:
        for name in self.containers():
            self.podman("rm", "-f", "-t", "0", name, check=False)
        self.podman("network", "rm", "-f", f"{self.name}_default", check=False)
        for volume in ("warehouse", "kafka-data", "clickhouse-data"):
            self.podman("volume", "rm", "-f", f"{self.name}_{volume}", check=False)


@pytest.fixture
def project(podman: Podman, tmp_path: Path) -> Iterator[Project]:
    made = Project(podman)
    try:
        yield made
    finally:
        made.remove()


def test_the_local_profile_writes_every_trade_with_no_clickhouse_server(
    project: Project, podman: Podman
) -> None:
    """``--profile local up kafka coinbase-replay sink-local``: every trade of the capture
    reaches chDB on the volume; the compose health check answers; ``stop`` exits 0."""
    project("up", "-d", "kafka", "coinbase-replay", "sink-local")
    sink = project.container("sink-local")

    def rows() -> int:
        found = podman.sql(sink, "SELECT count() FROM coinbase_matches FINAL", check=False)
        return int(found[0][0]) if found is not None else -1

    wait_for(lambda: rows() == len(TRADES), 240, "every trade of the capture in chDB")
    for service in ("sink-local", "coinbase-replay"):
        assert podman("healthcheck", "run", project.container(service), check=False).returncode == 0
    project("stop", "coinbase-replay", "sink-local")
    for service in ("coinbase-replay", "sink-local"):
        state = podman.state(project.container(service))
        assert not state["Running"] and state["ExitCode"] == 0, podman.logs(
            project.container(service)
        )[-2000:]


def test_scale_sink_3_splits_the_partitions_and_delivers_everything(
    podman: Podman, tmp_path: Path
) -> None:
    """``up --scale sink=3`` (with a stream target, see the module docstring): three sink
    containers share the group, one partition each, and deliver every trade."""
    config = tmp_path / "ingest.toml"
    config.write_text(
        "[sources.coinbase.resources.matches]\n"
        'schema_file = "coinbase/matches.avsc"\nkey = ["product_id"]\n'
        'id_fields = ["product_id", "trade_id"]\ntime_field = "time"\npartitions = 3\n'
        'target = "kafka:derived.coinbase.matches"\n'
    )
    config.chmod(0o644)
    mount = f"      - {config}:/etc/durable-ingest/ingest.toml:ro\n"
    override = tmp_path / "streams.yml"
    override.write_text(
        f"services:\n  sink:\n    volumes:\n{mount}  coinbase-replay:\n    volumes:\n{mount}"
    )
    project = Project(podman, override)
    try:
        project("up", "-d", "--no-deps", "--scale", "sink=3", "kafka", "coinbase-replay", "sink")
        sinks = [project.container("sink", n) for n in (1, 2, 3)]
        assert set(sinks) <= set(project.containers())

        def assigned(name: str) -> list[str]:
            """The partitions the sink's latest assignment gave it (none before its first)."""
            marker = "staging.kafka.reader: assigned "
            lines = [ln for ln in podman.logs(name).splitlines() if marker in ln]
            latest = lines[-1].split(marker, 1)[1].strip() if lines else "nothing"
            return [] if latest == "nothing" else latest.split(", ")

        wait_for(lambda: all(assigned(s) for s in sinks), 180, "every sink assigned partitions")
        delivered: list[tuple[str, int]] = []

        def complete() -> bool:
            delivered[:] = [
                (r.product, r.trade_id)
                for r in read_topic("127.0.0.1:9094", "derived.coinbase.matches", timeout_s=20)
            ]
            return set(delivered) == TRADES

        wait_for(complete, 240, "every trade delivered")
        owned = [assigned(s) for s in sinks]
        assert all(len(parts) == 1 for parts in owned), owned  # one partition each
        assert len({p for parts in owned for p in parts}) == 3, owned
        project("stop", *["sink", "coinbase-replay"])
        for name in sinks:
            assert podman.state(name)["ExitCode"] == 0, podman.logs(name)[-2000:]
        print(f"\n{len(TRADES)} trades, {len(delivered)} delivered by 3 sink containers")
    finally:
        project.remove()
