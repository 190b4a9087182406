"""The warehouse opener: chDB in-process through clickhouse-connect, one owner per directory."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from durable_ingest.loopback import free_port
from foundation.config import ClickHouseSettings, settings_from
from foundation.errors import WarehouseError
from sink_workers.clickhouse.warehouse import open_warehouse
from tests.helpers import cli_process

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-Pa55w0rd-XYZ"

HOLD = textwrap.dedent(
    """
    import sys, time
    from foundation.config import settings_from
    from sink_workers.clickhouse.warehouse import open_warehouse
    client = open_warehouse(settings_from({"data_dir": sys.argv[1]}).clickhouse)
    client.command("CREATE TABLE IF NOT EXISTS t (x UInt8) ENGINE = MergeTree ORDER BY x")
    client.command("INSERT INTO t VALUES (1)")
    print(client.query("SELECT count() FROM t").result_rows[0][0], flush=True)
    time.sleep(float(sys.argv[2]))
    """
)

TRY = textwrap.dedent(
    """
    import sys
    from foundation.config import settings_from
    from foundation.errors import WarehouseError
    from sink_workers.clickhouse.warehouse import open_warehouse
    try:
        client = open_warehouse(settings_from({"data_dir": sys.argv[1]}).clickhouse)
        client.query("SELECT 1")
    except WarehouseError as exc:
        print("WarehouseError:", exc)
    else:
        print("opened")
    """
)


def python(code: str, *args: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[call-overload]
    )


def test_embedded_warehouse_runs_clickhouse_and_has_one_owner(tmp_path: Path) -> None:
    """chDB opens in the data dir and runs SQL; a second process is told clearly it cannot."""
    holder = python(HOLD, str(tmp_path), "20")
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "1"
    try:
        second = python(TRY, str(tmp_path))
        out, err = second.communicate(timeout=60)
        assert "WarehouseError: the embedded warehouse" in out, (out, err)
        assert "already open in another process" in out
    finally:
        holder.kill()
        holder.communicate()
    again = python(TRY, str(tmp_path))
    out, _ = again.communicate(timeout=60)
    assert out.strip() == "opened"  # the data survived and the directory is free again
    assert (tmp_path / "warehouse").is_dir()


def test_unreachable_server_is_a_warehouse_error_without_secrets() -> None:
    """An http DSN nobody answers gives a WarehouseError that does not show the password."""
    settings = settings_from(
        {
            "clickhouse": {
                "dsn": f"http://127.0.0.1:{free_port()}",
                "username": "u",
                "password": SECRET,
            }
        }
    )
    with pytest.raises(
        WarehouseError, match="cannot open the warehouse at http://127.0.0.1"
    ) as info:
        open_warehouse(settings.clickhouse)
    assert SECRET not in str(info.value)


def test_an_unreachable_server_is_one_line_naming_the_dsn_and_the_cause(tmp_path: Path) -> None:
    """As a user sees it: one line with the DSN (no password) and the socket's reason, no
    urllib3 or driver warnings, no query id."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env |= {
        "INGEST_CLICKHOUSE_DSN": f"http://127.0.0.1:{port}",
        "INGEST_CLICKHOUSE_USERNAME": "u",
        "INGEST_CLICKHOUSE_PASSWORD": SECRET,
    }
    done = cli_process("sql", "SELECT 1", cwd=tmp_path, env=env)
    assert done.returncode == 2
    assert done.stderr == (
        f"ingest: error: cannot open the warehouse at http://127.0.0.1:{port}: Connection refused\n"
    )


def test_warehouse_fixture_runs_clickhouse_sql(clickhouse: ClickHouseSettings) -> None:
    """The test warehouse (server or chDB) answers SQL with ClickHouse's engine."""
    client = open_warehouse(clickhouse)
    try:
        assert client.query("SELECT toDecimal128('1.5', 12) * 2").result_rows[0][0] == Decimal("3")
        version = client.query("SELECT version()").result_rows[0][0]
        assert int(version.split(".")[0]) >= 23
    finally:
        client.close()


def test_a_read_only_query_is_stopped_at_its_time_limit(
    clickhouse: ClickHouseSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ingest sql`` and ``/sql`` never hold the warehouse (and a sink's inserts) for long."""
    from foundation.errors import QueryError
    from sink_workers.clickhouse import query as query_module

    monkeypatch.setattr(query_module, "MAX_SECONDS", 1)
    client = open_warehouse(clickhouse)
    try:
        ask = query_module.ReadOnlyQuery(client)
        with pytest.raises(QueryError, match="TIMEOUT_EXCEEDED"):
            ask("SELECT sum(cityHash64(number)) FROM numbers(100000000000)")
        assert ask("SELECT 1")["rows"] == [[1]]  # the client is still usable
    finally:
        client.close()
