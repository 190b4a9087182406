"""Supabase changes into rows: operations, columns by schema, timestamps, the checkpoint."""

from __future__ import annotations

import pytest

from foundation.errors import ConnectionLostError, ProviderRefusedError
from source_workers.connectors.supabase.changes import ChangeMapper, CommitMark, pg_time_us
from source_workers.connectors.supabase.settings import SupabaseSettings
from source_workers.connectors.supabase.source import Realtime
from source_workers.connectors.supabase.tables import TableChanges
from staging.schemas import SchemaCatalog


def mapper() -> ChangeMapper:
    fields = SchemaCatalog.default().load("supabase/projects.avsc").parsed["fields"]
    return ChangeMapper("projects", fields)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-22T09:00:00.5+00:00",
        "2026-11-22 09:00:00.5+00",
        "2026-11-22T09:00:00.500Z",
        "2026-11-22T11:00:00.5+02:00",
        "2026-11-22T09:00:00.5",
    ],
)
def test_postgres_timestamps_in_every_spelling(text: str) -> None:
    """Offsets, Z, a space for T, a short +00 and naive (UTC) all give the same instant."""
    assert pg_time_us(text) == pg_time_us("2026-11-22T09:00:00.500000Z")


def test_insert_update_delete_rows() -> None:
    """Columns come from record (INSERT, UPDATE) or old_record (DELETE); others are null."""
    m = mapper()
    insert = m.change(
        {
            "type": "INSERT",
            "commit_timestamp": "2026-11-22T09:00:00Z",
            "record": {"id": 1, "name": "a", "unknown": 5},
            "old_record": {},
        }
    )
    assert insert["operation"] == "INSERT" and insert["name"] == "a" and insert["client"] is None
    assert "unknown" not in insert
    delete = m.change(
        {
            "type": "DELETE",
            "commit_timestamp": "2026-11-22T09:00:01Z",
            "record": {},
            "old_record": {"id": 1},
        }
    )
    assert delete["operation"] == "DELETE" and delete["id"] == 1 and delete["name"] is None
    js = m.change(
        {
            "eventType": "UPDATE",
            "commit_timestamp": "2026-11-22T09:00:02Z",
            "new": {"id": 1, "archived": True},
        }
    )
    assert js["archived"] is True


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (
            {"type": "MERGE", "commit_timestamp": "2026-11-22T09:00:00Z"},
            "not INSERT, UPDATE or DELETE",
        ),
        ({"type": "INSERT", "commit_timestamp": "2026-11-22T09:00:00Z"}, "carries no row"),
        ({"type": "INSERT", "commit_timestamp": "soon", "record": {"id": 1}}, "not ISO 8601"),
        (
            {"type": "INSERT", "commit_timestamp": "2026-11-22T09:00:00Z", "record": {"id": "x"}},
            "not an integer",
        ),
        (
            {
                "type": "INSERT",
                "commit_timestamp": "2026-11-22T09:00:00Z",
                "record": {"id": 1, "archived": "yes"},
            },
            "column archived",
        ),
    ],
)
def test_malformed_changes_say_what_is_wrong(data: dict[str, object], words: str) -> None:
    """A change that cannot be mapped raises ValueError naming the problem (then dead-lettered)."""
    with pytest.raises(ValueError, match=words):
        mapper().change(data)


def see(mark: CommitMark, commit_us: int) -> dict[str, object]:
    """A staged change at ``commit_us``, and the checkpoint it would carry."""
    mark.advance(commit_us)
    return mark.checkpoint()


def test_checkpoint_is_the_newest_commit_timestamp() -> None:
    """The mark only moves forwards and restores from its own checkpoint."""
    mark = CommitMark()
    later = see(mark, pg_time_us("2026-11-22T09:00:05Z"))
    assert see(mark, pg_time_us("2026-11-22T09:00:01Z")) == later
    again = CommitMark()
    again.restore(later)
    assert again.newest_us == pg_time_us("2026-11-22T09:00:05Z")


def settings(**extra: object) -> SupabaseSettings:
    return SupabaseSettings.model_validate(
        {"url": "https://x.supabase.co", "service_role_key": "k", **extra}
    )


def test_join_message_asks_for_each_table_of_the_schema() -> None:
    """phx_join carries a postgres_changes entry per table, the key as access_token."""
    realtime = Realtime({"projects": TableChanges("projects", "supabase/projects.avsc")})
    message = realtime.join_message(settings(schema="crm", tables="projects"))
    assert message["event"] == "phx_join" and message["payload"]["access_token"] == "k"
    assert message["payload"]["config"]["postgres_changes"] == [
        {"event": "*", "schema": "crm", "table": "projects"}
    ]
    assert (
        settings().websocket_url == "wss://x.supabase.co/realtime/v1/websocket?apikey=k&vsn=1.0.0"
    )


def test_control_routes_protocol_messages() -> None:
    """Replies, system messages and channel errors are handled; changes go to resources."""
    realtime = Realtime({})
    join = realtime.join_message(settings())
    assert realtime.control(
        {
            "event": "phx_reply",
            "topic": join["topic"],
            "ref": join["ref"],
            "payload": {"status": "ok"},
        }
    )
    assert realtime.joined.is_set()
    assert realtime.control(
        {"event": "system", "payload": {"status": "ok", "message": "Subscribed"}}
    )
    assert not realtime.control({"event": "postgres_changes", "payload": {}})
    with pytest.raises(ConnectionLostError):
        realtime.control({"event": "phx_error", "topic": "realtime:x"})
    with pytest.raises(ProviderRefusedError, match="expired"):
        realtime.control(
            {
                "event": "system",
                "payload": {"status": "error", "message": "Token has expired 5 seconds ago"},
            }
        )


def test_settings_need_a_url_and_a_key_and_hide_the_key() -> None:
    """Missing URL or key are refused; the key never shows in the settings' repr."""
    with pytest.raises(ValueError, match="SUPABASE_URL"):
        SupabaseSettings.model_validate({"service_role_key": "k"})
    with pytest.raises(ValueError, match="SERVICE_ROLE_KEY"):
        SupabaseSettings.model_validate({"url": "https://x.supabase.co"})
    assert "sekret" not in repr(settings(service_role_key="sekret"))


def test_a_backfill_holds_the_checkpoint_at_its_progress() -> None:
    """Live changes during a backfill do not move the checkpoint past unread rows."""
    mark = CommitMark()
    see(mark, pg_time_us("2026-11-22T09:00:00Z"))
    assert mark.hold() == pg_time_us("2026-11-22T09:00:00Z")
    live = see(mark, pg_time_us("2026-11-22T10:00:00Z"))
    assert live == {"commit_timestamp": "2026-11-22T09:00:00.000000Z"}
    mark.cap_us = pg_time_us("2026-11-22T09:30:00Z")  # the backfill read up to here
    assert mark.hold() == pg_time_us("2026-11-22T09:30:00Z")  # a resumed backfill keeps it
    mark.release()
    assert mark.checkpoint() == {"commit_timestamp": "2026-11-22T10:00:00.000000Z"}


def test_join_errors_with_odd_responses_are_still_recognised() -> None:
    """A join error whose response is a plain string is read, not crashed on."""
    realtime = Realtime({})
    join = realtime.join_message(settings())
    reply = {
        "event": "phx_reply",
        "topic": join["topic"],
        "ref": join["ref"],
        "payload": {"status": "error", "response": "Invalid JWT Token"},
    }
    with pytest.raises(ProviderRefusedError, match="Invalid JWT"):
        realtime.control(reply)


def test_plain_http_is_only_for_this_machine() -> None:
    """The key must not travel in clear text to another host."""
    with pytest.raises(ValueError, match="https"):
        settings(url="http://x.supabase.co")
    assert settings(url="http://127.0.0.1:5432").url == "http://127.0.0.1:5432"


def test_a_change_with_payload_errors_is_refused() -> None:
    """A change Realtime cut short (errors set) is not staged with false NULLs."""
    with pytest.raises(ValueError, match="arrived with errors"):
        mapper().change(
            {
                "type": "UPDATE",
                "commit_timestamp": "2026-11-22T09:00:00Z",
                "record": {"id": 1},
                "errors": ["Error 413: Payload Too Large"],
            }
        )
