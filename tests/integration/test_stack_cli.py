"""``ingest stack up``: a broker third-party clients can use, stopped cleanly, clear errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from durable_ingest.loopback import free_port, port_is_free
from tests.integration.conftest import Spawn

ROOT = Path(__file__).resolve().parents[2]


def start(
    spawn: Spawn, tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return spawn(
        [
            sys.executable,
            "-m",
            "durable_ingest.cli",
            "stack",
            "up",
            "--data-dir",
            str(tmp_path),
            *args,
        ],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def wait_up(process: subprocess.Popen[str], timeout_s: float = 30) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
        if "stack is up" in line:
            return lines
    process.kill()
    raise AssertionError(
        f"stack did not come up: {lines} {process.stderr.read() if process.stderr else ''}"
    )


def kcat_env(tmp_path: Path) -> dict[str, str]:
    """Run kcat on a current librdkafka: Debian 12's librdkafka 2.0.2 cannot parse
    Tansu's ApiVersions reply ("Read underflow"), 2.16 (from the confluent-kafka
    wheel) can. See docs/embedded-stack.md."""
    import confluent_kafka

    libs = Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs"
    found = sorted(libs.glob("librdkafka*.so*"))
    if not found:
        return dict(os.environ)
    shim = tmp_path / "librdkafka"
    shim.mkdir(exist_ok=True)
    (shim / "librdkafka.so.1").symlink_to(found[0])
    return {**os.environ, "LD_LIBRARY_PATH": str(shim)}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_stack_up_serves_kcat_and_stops_without_leftovers(
    spawn: Spawn, tmp_path: Path, stop_signal: signal.Signals
) -> None:
    """kcat lists the declared topics; Ctrl-C or SIGTERM stops broker and CLI, exit 0."""
    port = free_port()
    process = start(spawn, tmp_path, "--port", str(port))
    lines = wait_up(process)
    assert f"kafka bootstrap: 127.0.0.1:{port}" in lines
    state = json.loads((tmp_path / "stack.json").read_text())
    (broker_pid,) = state["broker_pids"]
    assert alive(broker_pid)
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    if kcat is not None:
        listing = subprocess.run(
            [kcat, "-b", f"127.0.0.1:{port}", "-L", "-J"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
            env=kcat_env(tmp_path),
        )
        topics = {t["topic"] for t in json.loads(listing.stdout)["topics"]}
        assert {
            "ingest.coinbase.matches",
            "ingest.coinbase.matches.dlq",
            "ingest._checkpoints",
        } <= topics
    else:  # .ci/run installs kcat; without it, list through librdkafka instead
        from confluent_kafka.admin import AdminClient

        metadata = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"}).list_topics(timeout=10)
        assert "ingest.coinbase.matches" in metadata.topics
    process.send_signal(stop_signal)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "stack stopped" in out
    assert gone_within(broker_pid, 5)
    assert port_is_free(port)
    assert not (tmp_path / "stack.json").exists()
    # Restarting at once on the same port works (TIME_WAIT leftovers do not block it).
    again = start(spawn, tmp_path, "--port", str(port))
    wait_up(again)
    again.send_signal(stop_signal)
    again.communicate(timeout=30)
    assert again.returncode == 0


def test_kill_9_of_the_cli_takes_the_broker_down(spawn: Spawn, tmp_path: Path) -> None:
    """The broker dies with its parent, so kill -9 of `ingest stack up` leaves no broker."""
    port = free_port()
    process = start(spawn, tmp_path, "--port", str(port))
    wait_up(process)
    (broker_pid,) = json.loads((tmp_path / "stack.json").read_text())["broker_pids"]
    process.kill()
    process.communicate(timeout=10)
    assert gone_within(broker_pid, 10)


def one_error_line(process: subprocess.Popen[str]) -> str:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2, (out, err)
    errors = [line for line in err.splitlines() if line.startswith("ingest: error:")]
    assert len(errors) == 1, err
    assert "Traceback" not in err
    return errors[0]


def test_taken_port_is_one_clear_line(spawn: Spawn, tmp_path: Path) -> None:
    """A port already in use gives one line naming the port, no traceback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        line = one_error_line(start(spawn, tmp_path, "--port", str(port)))
    assert f"port {port} on 127.0.0.1 is already in use" in line


def test_missing_binary_is_one_clear_line(spawn: Spawn, tmp_path: Path) -> None:
    """A missing broker binary gives one line naming the cause."""
    line = one_error_line(
        start(spawn, tmp_path, "--port", "0", env={"CALF_TANSU_BIN": str(tmp_path / "nope")})
    )
    assert "embedded broker binary is missing" in line


def test_broker_that_dies_at_start_is_one_clear_line(spawn: Spawn, tmp_path: Path) -> None:
    """A broker that exits before answering is reported with its last output."""
    fake = tmp_path / "fake-tansu"
    fake.write_text("#!/bin/sh\necho 'fatal: storage unavailable' >&2\nexit 3\n")
    fake.chmod(0o755)
    line = one_error_line(start(spawn, tmp_path, "--port", "0", env={"CALF_TANSU_BIN": str(fake)}))
    assert "exited with code 3 before answering: fatal: storage unavailable" in line


def test_malformed_config_is_one_clear_line(spawn: Spawn, tmp_path: Path) -> None:
    """A malformed configuration file gives one line naming the file."""
    config = tmp_path / "bad.toml"
    config.write_text("[kafka\n")
    process = spawn(
        [sys.executable, "-m", "durable_ingest.cli", "--config", str(config), "stack", "up"],
        cwd=ROOT,
    )
    assert f"{config} is not valid TOML" in one_error_line(process)
