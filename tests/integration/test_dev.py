"""``ingest dev`` and ``ingest sql`` as a newcomer runs them: real processes, broker and chDB.

Every run starts its own embedded broker, source and sink worker processes and
owns a fresh data directory; the shipped Coinbase capture is the feed.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from foundation.config import KafkaSettings
from source_workers.capture import CaptureFile
from source_workers.replay_feed import sample_capture
from tests.helpers import ask_for_stacks, trade_keys, unique
from tests.integration.conftest import Spawn
from tests.integration.source_helpers import process_env, source_config, wait_for
from tests.servers.coinbase import CoinbaseExchange

ROOT = Path(__file__).resolve().parents[2]


def ingest(*args: str) -> list[str]:
    return [sys.executable, "-m", "durable_ingest.cli", *args]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("INGEST_", "COINBASE_"))}


def run(*args: str, cwd: Path, timeout_s: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ingest(*args), cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout_s
    )


def dev(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``ingest dev coinbase ARGS`` on the work directory's own data directory, to its end."""
    done = run("dev", "coinbase", *args, "--data-dir", str(workdir / "data"), cwd=workdir)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "Traceback" not in done.stderr
    return done


def wait_subscribed(
    exchange: CoinbaseExchange,
    process: subprocess.Popen[str],
    logs: Path | None = None,
    timeout_s: float = 90,
) -> None:
    """Until ``process`` subscribed to the test exchange. If it does not in time, or exits,
    fail with its output, its workers' logs (``logs``) and the stacks of what still ran."""
    try:
        wait_for(
            lambda: exchange.subscribed == 1 or process.poll() is not None,
            timeout_s,
            "subscription",
        )
        if exchange.subscribed == 1:
            return
        failure = f"exited ({process.returncode}) before it subscribed"
    except AssertionError as exc:
        failure = str(exc)
        ask_for_stacks(process.pid)
    process.kill()
    out, err = process.communicate(timeout=30)
    worker_logs = "".join(
        f"\n--- {log.name}:\n" + "\n".join(log.read_text(errors="replace").splitlines()[-80:])
        for log in sorted(logs.glob("*.log") if logs else [])
    )
    raise AssertionError(f"{failure}\n--- stdout:\n{out}\n--- stderr:\n{err}{worker_logs}")


def sql(cwd: Path, query: str) -> list[list[Any]]:
    done = run("sql", query, "--format", "json", "--data-dir", str(cwd / "data"), cwd=cwd)
    assert done.returncode == 0, done.stderr
    rows: list[list[Any]] = json.loads(done.stdout)["rows"]
    return rows


def summary(stdout: str) -> tuple[int, int, int]:
    """(staged, written, rows in the table) from the last lines of a dev run."""
    done = re.search(r"done: ([\d,]+) records staged, ([\d,]+) rows written", stdout)
    table = re.search(r"coinbase_matches: (?:([\d,]+) rows|not created yet)", stdout)
    assert done and table, stdout
    staged, written = (int(g.replace(",", "")) for g in done.groups())
    # Not created: a stop before the sink started, so nothing was written.
    rows = int(table.group(1).replace(",", "")) if table.group(1) else 0
    return staged, written, rows


class Lines:
    """A process's stdout lines, read in a thread as they come."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert process.stdout is not None
        stream = process.stdout
        self._thread = threading.Thread(
            target=lambda: self.lines.extend(iter(stream.readline, "")), daemon=True
        )
        self._thread.start()

    def text(self) -> str:
        return "".join(self.lines)

    def join(self) -> str:
        self._thread.join(30)
        return self.text()


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    """A directory without an ingest.toml: ``ingest dev`` runs on defaults there."""
    yield tmp_path


def test_the_readme_command_writes_the_shipped_capture_once_then_sql_reads_it(
    workdir: Path,
) -> None:
    """The newcomer's path: one command, rows arrive, it stops by itself, then a query."""
    keys = trade_keys(sample_capture("coinbase"))
    out = dev(workdir, "--replay", "--speed", "20").stdout
    assert "capture played" in out
    progress = [ln for ln in out.splitlines() if re.match(r"^\d\d:\d\d  staged", ln)]
    assert progress and any("written 0 " not in ln for ln in progress)
    staged, written, rows = summary(out)
    assert staged == written == rows == len(keys)
    count, distinct, products = sql(
        workdir,
        "SELECT count(), uniqExact(product_id, trade_id), groupUniqArray(product_id) "
        "FROM coinbase_matches",
    )[0]
    assert count == distinct == len(keys)
    assert sorted(products) == ["BTC-USD", "ETH-USD"]
    # The rows are the capture's trades, key for key.
    found = sql(workdir, "SELECT product_id, trade_id FROM coinbase_matches ORDER BY 1, 2")
    assert {(p, t) for p, t in found} == keys
    # A second run over the same warehouse adds no row: same keys, same tokens.
    dev(workdir, "--replay", "--speed", "20")
    assert sql(workdir, "SELECT count() FROM coinbase_matches FINAL")[0][0] == len(keys)


def test_ctrl_c_stops_in_order_and_loses_nothing_staged_and_sql_works_meanwhile(
    workdir: Path, spawn: Spawn, stack_engine: str
) -> None:
    """Ctrl-C mid-capture: everything staged is written, and ingest sql works meanwhile
    (on each engine: ``ingest dev --engine tansu|kafka``)."""
    process = spawn(
        ingest(
            "dev",
            "coinbase",
            "--replay",
            "--engine",
            stack_engine,
            "--data-dir",
            str(workdir / "data"),
        ),
        cwd=workdir,
        env=clean_env(),
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    lines = Lines(process)
    wait_for(
        lambda: re.search(r"written [1-9]", lines.text()) is not None,
        timeout_s=120,
        what="rows written",
    )
    # While it runs, the sink owns the warehouse: the query goes through its admin port.
    while_running = sql(workdir, "SELECT count() FROM coinbase_matches")[0][0]
    assert while_running > 0
    refused = run(
        "sql",
        "INSERT INTO coinbase_matches (trade_id) VALUES (1)",
        "--data-dir",
        str(workdir / "data"),
        cwd=workdir,
    )
    assert refused.returncode == 2, refused.stderr
    assert "read-only queries: INSERT statements are refused" in refused.stderr
    assert refused.stderr.count("\n") == 1
    # The engine's own refusals come back through the admin port as one line too.
    for query, message in [("SELECT * FROM nowhere", "nowhere"), ("SELECT FROM (", "Syntax error")]:
        done = run("sql", query, "--data-dir", str(workdir / "data"), cwd=workdir)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith("ingest: error:") and message in done.stderr, done.stderr
    os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends: the whole group
    process.wait(120)
    out = lines.join()
    assert process.returncode == 0, out
    assert "stopping: received SIGINT" in out
    staged, written, rows = summary(out)
    assert 0 < staged < len(trade_keys(sample_capture("coinbase")))  # stopped mid-capture
    assert rows == staged == written  # everything the source staged was written
    assert not (workdir / "data" / "dev.json").exists()


def test_sql_on_a_fresh_folder_creates_nothing(workdir: Path) -> None:
    """A read-only command on a data directory without a warehouse says so, in one line,
    and leaves no warehouse behind; a write is refused by its kind before anything opens."""
    fresh = workdir / "fresh"
    done = run("sql", "SELECT 1", "--data-dir", str(fresh), cwd=workdir)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert f"there is no warehouse in {fresh / 'warehouse'} yet" in done.stderr
    assert not (fresh / "warehouse").exists()
    done = run("sql", "DROP TABLE coinbase_matches", "--data-dir", str(fresh), cwd=workdir)
    assert done.returncode == 2 and "DROP statements are refused" in done.stderr


@pytest.mark.parametrize(
    ("flag", "reason"),
    [
        (["--max-events", "150"], "--max-events 150 reached"),
        (["--duration", "4"], "--duration 4 s"),
    ],
)
def test_it_stops_by_itself(workdir: Path, flag: list[str], reason: str) -> None:
    done = dev(workdir, "--replay", *flag)
    assert reason in done.stdout
    staged, written, rows = summary(done.stdout)
    assert rows == staged == written
    if flag[0] == "--max-events":
        assert staged >= 150
    # The line's resume point is exact: each product's checkpointed trade id is the
    # newest one in the table.
    resume = dict(re.findall(r"([A-Z]+-USD)\.trade_id=(\d+)", done.stdout.split("resume from")[1]))
    newest = sql(workdir, "SELECT product_id, max(trade_id) FROM coinbase_matches GROUP BY 1")
    assert {p: int(t) for p, t in resume.items()} == {p: int(t) for p, t in newest}


@pytest.mark.one_broker("tansu")
def test_a_recorded_feed_replays_to_the_same_rows(
    workdir: Path, kafka: KafkaSettings, spawn: Spawn
) -> None:
    """``source run --record`` against the test exchange, then ``dev --replay`` of the file."""
    source = unique("rec")
    config = source_config(workdir, kafka, source, "coinbase")
    capture = workdir / "recorded.jsonl"
    with CoinbaseExchange(["BTC-USD", "ETH-USD"]) as exchange:
        env = process_env(config, "COINBASE_")
        env.update(
            COINBASE_WS_URL=exchange.ws_url,
            COINBASE_REST_URL=exchange.rest_url,
            COINBASE_PRODUCTS="BTC-USD,ETH-USD",
        )
        worker = spawn(ingest("source", "run", source, "--record", str(capture)), cwd=ROOT, env=env)
        wait_subscribed(exchange, worker)
        for _ in range(5):
            exchange.trade("BTC-USD", 30)
            exchange.trade("ETH-USD", 10)
            time.sleep(0.2)
        made = {(p, t) for p, ids in exchange.all_trade_ids().items() for t in ids}
        wait_for(lambda: len(trade_keys(capture)) == len(made), timeout_s=60, what="recording")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0
    header = CaptureFile(capture).header
    assert header.connector == "coinbase"
    assert header.settings == {"products": ["BTC-USD", "ETH-USD"]}
    assert summary(dev(workdir, "--replay", str(capture), "--speed", "10").stdout)[2] == len(made)
    found = sql(workdir, "SELECT product_id, trade_id FROM coinbase_matches")
    assert {(p, t) for p, t in found} == made
    # Recording refuses to overwrite what it recorded.
    again = run("source", "run", source, "--record", str(capture), cwd=workdir)
    assert again.returncode == 2 and "already exists" in again.stderr


def bad_capture(workdir: Path) -> Path:
    path = workdir / "bad.jsonl"
    lines = sample_capture("coinbase").read_text().splitlines()[:5]
    lines[3] = '{"t": 0.1, "text": '
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dev", "nosuch"], "no connector 'nosuch'"),
        (["dev", "coinbase", "--replay", "missing.jsonl"], "capture missing.jsonl does not exist"),
        (["dev", "coinbase", "--replay", "BAD"], "bad.jsonl line 4: not JSON"),
        (["dev", "supabase", "--replay"], "connector supabase cannot replay a capture"),
        (["dev", "coinbase", "--replay", "--speed", "0"], "--speed must be above 0"),
        (["dev", "coinbase", "--max-events", "0"], "--max-events must be at least 1"),
        (["sql", "SELEC 1"], "SELEC statements are refused"),
        (["sql", "SELECT 1", "--admin", "ftp://x"], "is not an http:// URL"),
    ],
)
def test_bad_input_is_one_line(workdir: Path, args: list[str], message: str) -> None:
    args = [str(bad_capture(workdir)) if a == "BAD" else a for a in args]
    done = run(*args, "--data-dir", str(workdir / "data"), cwd=workdir, timeout_s=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("ingest: error:") and message in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert not (workdir / "data" / "dev").exists() or args[0] == "sql"


def test_a_feed_gone_quiet_ends_with_idle_exit(workdir: Path, spawn: Spawn) -> None:
    """A provider that sent a few trades and went quiet: --max-events would wait forever,
    --idle-exit ends the run, saying why, with everything written."""
    with CoinbaseExchange(["BTC-USD"]) as exchange:
        env = clean_env()
        env.update(
            COINBASE_WS_URL=exchange.ws_url,
            COINBASE_REST_URL=exchange.rest_url,
            COINBASE_PRODUCTS="BTC-USD",
        )
        process = spawn(
            ingest(
                "dev",
                "coinbase",
                "--max-events",
                "100000",
                "--idle-exit",
                "3",
                "--data-dir",
                str(workdir / "data"),
            ),
            cwd=workdir,
            env=env,
        )
        wait_subscribed(exchange, process, logs=workdir / "data" / "dev")
        exchange.trade("BTC-USD", 20)
        out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "stopping: nothing new staged or written for 3 s (--idle-exit)" in out
    staged, written, _ = summary(out)
    assert staged == written == 20


def importing_pydantic(pid: int, timeout_s: float = 30) -> None:
    """Wait until the process maps pydantic-core: Python has started, the CLI's Ctrl-C
    handling is in place, and its imports are under way. (A Ctrl-C in Python's own start-up,
    before any project code runs, prints Python's traceback: no program can change that,
    and a fixed delay lands there on a loaded machine.)"""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if "_pydantic_core" in Path(f"/proc/{pid}/maps").read_text():
                return
        time.sleep(0.002)
    raise AssertionError("the CLI never imported pydantic-core")


def test_the_summary_names_a_table_the_sink_stopped_before_creating(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A Ctrl-C before the sink started leaves its table uncreated: the summary says so,
    without a warning, and offers no query; once created, it counts the table's rows."""
    from durable_ingest.dev import DevOptions, DevRun
    from foundation.config import settings_from
    from sink_workers.clickhouse.warehouse import open_warehouse
    from sink_workers.clickhouse.writer import ClickHouseTableWriter
    from sink_workers.tables import table_spec

    run = DevRun(settings_from({"data_dir": str(tmp_path)}), DevOptions("coinbase"))
    summary = run._summary()
    out = io.StringIO()
    with caplog.at_level(logging.WARNING, logger="ingest.dev"):
        summary.report_tables(out)
    assert (
        out.getvalue()
        == "  coinbase_matches: not created yet (the sink stopped before creating it)\n"
    )
    assert caplog.records == []
    (resource,) = run.resources
    client = open_warehouse(run.settings.clickhouse)
    try:
        ClickHouseTableWriter(
            client,
            table_spec(
                resource.schema.parsed["fields"],
                database=run.settings.clickhouse.database,
                table="coinbase_matches",
                order_by=resource.id_fields,
            ),
        ).ensure()
    finally:
        client.close()
    out = io.StringIO()
    summary.report_tables(out)
    assert out.getvalue().splitlines() == [
        "  coinbase_matches: 0 rows (FINAL: one per key, every run so far)",
        'query them: ingest sql "SELECT * FROM coinbase_matches LIMIT 10"',
    ]


@pytest.mark.parametrize("after_s", ["importing", 0.4, 1.5])
def test_ctrl_c_at_any_moment_is_one_line_or_a_clean_stop(
    workdir: Path, after_s: float | str
) -> None:
    """Ctrl-C while it imports, starts the broker or starts the workers: exit 130 with one
    line, or the ordered stop with exit 0; never a traceback, never a worker's -15."""
    process = subprocess.Popen(
        ingest("dev", "coinbase", "--replay", "--data-dir", str(workdir / "data")),
        cwd=workdir,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    if isinstance(after_s, str):
        importing_pydantic(process.pid)
    else:
        time.sleep(after_s)
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "exited with code" not in err, err
    if process.returncode == 130:
        assert err.strip() == "ingest: interrupted", err
    else:
        assert process.returncode == 0, out + err
        assert "stopping: received SIGINT" in out
        staged, written, _ = summary(out)
        assert staged == written
