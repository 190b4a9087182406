"""The Supabase source against the test Realtime + PostgREST server and the real broker."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from foundation.config import KafkaSettings, RuntimeSettings
from foundation.errors import ConfigError, ProviderRefusedError
from source_workers.connectors.supabase.pipeline import build
from source_workers.connectors.supabase.settings import SupabaseSettings
from source_workers.runtime import SourceRuntime
from staging.kafka import KafkaStagingProvider
from staging.protocol import StagingContext
from staging.resource import StagedResource
from staging.schemas import SchemaCatalog
from tests.helpers import unique
from tests.integration.conftest import python_json
from tests.integration.source_helpers import (
    RuntimeThread,
    process_env,
    source_config,
    wait_for,
)
from tests.servers.supabase import SupabaseServer

ROOT = Path(__file__).resolve().parents[2]
TABLES = ("projects", "time_entries")


@pytest.fixture
def supabase() -> Iterator[SupabaseServer]:
    with SupabaseServer() as server:
        yield server


def resources(source: str) -> tuple[StagedResource, ...]:
    catalog = SchemaCatalog.default()
    return tuple(
        StagedResource.define(
            source=source,
            name=table,
            schema=catalog.load(f"supabase/{table}.avsc"),
            key=("id",),
            id_fields=("id", "commit_timestamp", "operation"),
            time_field="commit_timestamp",
        )
        for table in TABLES
    )


def staged(kafka: KafkaSettings, source: str, expect: int) -> list[tuple[str, str, int]]:
    """(table, operation, id) of every staged change, read by a fresh group."""
    provider = KafkaStagingProvider(
        kafka, catalog=SchemaCatalog.default(), max_record_bytes=1_000_000
    )
    context = StagingContext(source=source, resources=resources(source), group_id=unique("g"))
    found = []
    with provider.allocate_session(context) as session:
        for batch in session.reader().iter_batches(5_000, poll_timeout_s=0.5, idle_timeout_s=3):
            found += [
                (r.topic.rsplit(".", 1)[1], r.record["operation"], r.record["id"])
                for r in batch.records
            ]
            if len(found) >= expect:
                break
    return sorted(found)


class Worker(RuntimeThread):
    """The Supabase runtime in a thread of its own, against the real broker."""

    def __init__(
        self,
        kafka: KafkaSettings,
        supabase: SupabaseServer,
        runtime: dict[str, Any] | None = None,
        **options: Any,
    ) -> None:
        self.source = unique("sb")
        provider = KafkaStagingProvider(
            kafka, catalog=SchemaCatalog.default(), max_record_bytes=1_000_000
        )
        session = provider.allocate_session(
            StagingContext(source=self.source, resources=resources(self.source))
        )
        settings = SupabaseSettings.model_validate(
            {"url": supabase.url, "service_role_key": supabase.key, **options}
        )
        super().__init__(
            SourceRuntime(
                build(self.source, settings),
                session,
                settings=RuntimeSettings(
                    **{"linger_s": 0.05, "backoff_initial_s": 0.05, "backoff_max_s": 0.2}
                    | (runtime or {})
                ),
                connector_settings=settings,
            ),
            session,
        )


def test_inserts_updates_and_deletes_become_change_rows(
    kafka: KafkaSettings, supabase: SupabaseServer
) -> None:
    """Every change of both tables is staged once with its operation; bad frames are
    dead-lettered and counted."""
    with Worker(kafka, supabase) as worker:
        wait_for(lambda: supabase.joined_channels == 1, 20, "the join")
        supabase.insert("projects", id=1, name="Apollo", client="NASA", archived=False)
        supabase.insert("time_entries", id=10, project_id=1, description="design", minutes=90)
        supabase.update("projects", 1, name="Apollo 11")
        supabase.send_raw(
            '{"topic": "realtime:durable-ingest", "event": "postgres_changes", "payload": {"data": {"table": "projects", "type": "MERGE"}}}'
        )
        supabase.send_raw("{oops")
        supabase.delete("time_entries", 10)
        wait_for(lambda: worker.runtime.stats.records_staged >= 4, 20, "staging")
    assert worker.runtime.stats.dead_letters == 2
    assert staged(kafka, worker.source, 4) == [
        ("projects", "INSERT", 1),
        ("projects", "UPDATE", 1),
        ("time_entries", "DELETE", 10),
        ("time_entries", "INSERT", 10),
    ]


def test_channel_errors_rejoin_and_backfill_recovers_missed_changes(
    kafka: KafkaSettings, supabase: SupabaseServer
) -> None:
    """phx_error, phx_close and a dropped socket rejoin; changes made while away come back
    through PostgREST as SNAPSHOT rows."""
    with Worker(kafka, supabase, backfill=True) as worker:
        wait_for(lambda: supabase.joined_channels == 1, 20, "the join")
        supabase.insert("projects", id=1, name="a")
        wait_for(lambda: worker.runtime.stats.records_staged >= 1, 20, "the first change")
        for fault in (
            lambda: supabase.channel_event("phx_error"),
            lambda: supabase.channel_event("phx_close"),
            supabase.disconnect,
        ):
            joins = supabase.joins
            fault()
            wait_for(
                lambda j=joins: supabase.joins > j and supabase.joined_channels == 1, 20, "a rejoin"
            )
        supabase.disconnect()
        supabase.insert("projects", id=2, name="made while away")  # Realtime never sends it
        wait_for(lambda: supabase.joined_channels == 1, 20, "a rejoin")
        supabase.insert("time_entries", id=5, minutes=3)
        # Every rejoin backfills again (more often on a loaded machine), so a count of
        # staged records says little: wait for the rows themselves.
        wanted = {("projects", "INSERT", 1), ("time_entries", "INSERT", 5)}
        wanted.add(("projects", "SNAPSHOT", 2))
        wait_for(
            lambda: wanted <= set(staged(kafka, worker.source, 10**9)),
            40,
            "the live changes and the backfilled one",
        )
    assert supabase.rest_requests >= 2


def test_backfill_pages_through_every_row_missed(
    kafka: KafkaSettings, supabase: SupabaseServer
) -> None:
    """25 rows changed while away come back through pages of 4, after an unreadable answer
    (the session is retried, the hold kept); the hold is released once all is read."""
    with Worker(kafka, supabase, backfill=True, backfill_page_size=4) as worker:
        wait_for(lambda: supabase.joined_channels == 1, 20, "the join")
        supabase.insert("projects", id=1, name="first")
        wait_for(lambda: worker.runtime.stats.records_staged >= 1, 20, "the first change")
        supabase.rest_garbage = 1  # the first backfill answer is a proxy's error page
        supabase.disconnect()
        for i in range(2, 27):
            supabase.insert("projects", id=i, name=f"away {i}")
        wait_for(lambda: worker.runtime.stats.records_staged >= 27, 30, "the backfill")
        mark = worker.runtime.source.resource("projects").process.__self__.mark  # type: ignore[attr-defined]
        assert mark.cap_us is None  # released once everything was read
    rows = staged(kafka, worker.source, 27)
    assert {r[2] for r in rows if r[1] == "SNAPSHOT"} >= set(range(2, 27))


def test_backfill_pages_over_the_frame_limit_are_halved_and_a_huge_row_dead_lettered(
    kafka: KafkaSettings, supabase: SupabaseServer
) -> None:
    """Pages too large for max_frame_bytes are asked for again smaller; one row too large on
    its own is dead-lettered by its key, and the rows after it are still read."""
    options = {"backfill": True, "backfill_page_size": 4, "join_timeout_s": 0.5}
    with Worker(kafka, supabase, runtime={"max_frame_bytes": 4_096}, **options) as worker:
        wait_for(lambda: supabase.joined_channels == 1, 20, "the join")
        supabase.insert("projects", id=1, name="first")
        wait_for(lambda: worker.runtime.stats.records_staged >= 1, 20, "the first change")
        supabase.answer_joins = False  # stay away while the rows change
        supabase.disconnect()
        for i in range(2, 5):
            supabase.insert("projects", id=i, name="n" * 1_500)
        supabase.insert("projects", id=5, name="h" * 5_000)  # over the limit on its own
        for i in range(6, 9):
            supabase.insert("projects", id=i, name="n" * 1_500)
        supabase.answer_joins = True
        wait_for(lambda: worker.runtime.stats.records_staged >= 7, 30, "the backfill")
        wait_for(lambda: worker.runtime.stats.dead_letters >= 1, 10, "the dead letter")
    rows = staged(kafka, worker.source, 10**9)  # every staged change: read until idle
    assert {r[2] for r in rows if r[1] == "SNAPSHOT"} >= {2, 3, 4, 6, 7, 8}
    assert ("projects", "SNAPSHOT", 5) not in rows
    # Once per backfill that reached it: a session that ends while joining (0.5 s) joins
    # and backfills again, and may end again before or after row 5. Row 2 counts the
    # backfills that began, row 6 those that got past row 5.
    began = rows.count(("projects", "SNAPSHOT", 2))
    past = rows.count(("projects", "SNAPSHOT", 6))
    assert 1 <= past <= worker.runtime.stats.dead_letters <= began


@pytest.mark.parametrize("fault", ["join", "heartbeat"])
def test_unanswered_joins_and_heartbeats_reconnect(
    kafka: KafkaSettings, supabase: SupabaseServer, fault: str
) -> None:
    """Connected but never joined, or heartbeats unanswered: the session ends and is tried
    again (a live socket that delivers nothing would lose changes)."""
    if fault == "join":
        supabase.answer_joins = False
        options: dict[str, Any] = {"join_timeout_s": 0.5}
    else:
        supabase.answer_heartbeats = False
        options = {"heartbeat_interval_s": 0.3}
    with Worker(kafka, supabase, **options) as worker:
        wait_for(lambda: supabase.joins >= 2, 20, "a second join")
        supabase.answer_joins = supabase.answer_heartbeats = True
        wait_for(lambda: supabase.joined_channels == 1, 20, "the join")
        supabase.insert("projects", id=4, name="joined")
        wait_for(lambda: worker.runtime.stats.records_staged >= 1, 20, "staging")
    assert worker.runtime.stats.sessions >= 2


@pytest.mark.parametrize("fault", ["join", "expired", "table"])
def test_refusals_stop_the_worker(
    kafka: KafkaSettings, supabase: SupabaseServer, fault: str
) -> None:
    """A refused key, an expired token and an unknown table stop the worker with the reason."""
    options: dict[str, Any] = {}
    if fault == "join":
        supabase.join_error = "Invalid JWT Token"
    if fault == "table":
        supabase.rows.pop("time_entries")  # not in the database (or not replicated)
    worker = Worker(kafka, supabase, **options)
    with worker:
        if fault == "expired":
            wait_for(lambda: supabase.joined_channels == 1, 20, "the join")
            supabase.expire_token()
        error = worker.finished()
    assert isinstance(error, ProviderRefusedError)
    words = {"join": "Invalid JWT", "expired": "Token has expired", "table": "Unable to subscribe"}
    assert words[fault] in str(error)


def test_tables_must_be_resources(kafka: KafkaSettings, supabase: SupabaseServer) -> None:
    """SUPABASE_TABLES naming a table the connector has no resource for is refused by name."""
    worker = Worker(kafka, supabase, tables="projects,invoices")
    with worker:
        error = worker.finished()
    assert isinstance(error, ConfigError) and "'invoices' is not a resource" in str(error)


def test_bad_key_and_missing_settings_are_one_line_and_the_key_never_shows(
    tmp_path: Path, kafka: KafkaSettings, supabase: SupabaseServer
) -> None:
    """A wrong key ends in one line, exit 2, and the key is in no output; so does a missing URL."""
    source = unique("sb")
    config = source_config(tmp_path, kafka, source, "supabase")
    secret = "sk-wrong-" + unique("k")
    env = process_env(config, "SUPABASE_")
    env.update(SUPABASE_URL=supabase.url, SUPABASE_SERVICE_ROLE_KEY=secret)
    command = [
        sys.executable,
        "-m",
        "durable_ingest.cli",
        "--log-level",
        "DEBUG",
        "source",
        "run",
        source,
    ]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "HTTP 401" in done.stderr.strip().splitlines()[-1]
    assert secret not in done.stderr + done.stdout
    env.pop("SUPABASE_URL")
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2 and "SUPABASE_URL must be set" in done.stderr
    assert secret not in done.stderr + done.stdout


QUERY = textwrap.dedent(
    """
    import json, sys
    from foundation.config import settings_from
    from sink_workers.clickhouse.warehouse import open_warehouse
    client = open_warehouse(settings_from({"data_dir": sys.argv[1]}).clickhouse)
    rows = client.query(
        f"SELECT id, toString(operation), name FROM default.{sys.argv[2]} FINAL "
        "ORDER BY commit_timestamp"
    ).result_rows
    print(json.dumps([list(r) for r in rows]))
    """
)


def test_changes_reach_clickhouse_as_a_change_log(
    tmp_path: Path, kafka: KafkaSettings, supabase: SupabaseServer
) -> None:
    """The sink writes the connector's resources with their default settings: one row per change."""
    with Worker(kafka, supabase) as worker:
        wait_for(lambda: supabase.joined_channels == 1, 20, "the join")
        supabase.insert("projects", id=7, name="first")
        supabase.update("projects", 7, name="second")
        supabase.delete("projects", 7)
        wait_for(lambda: worker.runtime.stats.records_staged >= 3, 20, "staging")
    config = source_config(tmp_path, kafka, worker.source, "supabase")
    env = process_env(config, "SUPABASE_")
    sink = subprocess.run(
        [sys.executable, "-m", "sink_workers", "--source", worker.source, "--idle-exit", "4"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert sink.returncode == 0, sink.stderr[-3000:]
    assert python_json(QUERY, str(tmp_path), f"{worker.source}_projects") == [
        [7, "INSERT", "first"],
        [7, "UPDATE", "second"],
        [7, "DELETE", None],
    ]
