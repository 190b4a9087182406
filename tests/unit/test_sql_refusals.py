"""``ingest sql`` says what it refuses and why, in the user's own terms. Pure."""

from __future__ import annotations

import pytest

from foundation.errors import QueryError
from sink_workers.clickhouse.query import check_read_only, statement_kind, users_view


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("SELECT 1", "SELECT"),
        ("  select 1", "SELECT"),
        ("-- note\nWITH x AS (SELECT 1) SELECT * FROM x", "WITH"),
        ("/* a\nb */ (SELECT 1)", "SELECT"),
        ("insert into t values (1)", "INSERT"),
        ("DROP TABLE t", "DROP"),
        ("", ""),
    ],
)
def test_the_statement_kind_is_its_first_keyword(text: str, kind: str) -> None:
    assert statement_kind(text) == kind


@pytest.mark.parametrize(
    "text", ["SELECT 1", "SHOW TABLES", "DESCRIBE t", "EXPLAIN SELECT 1", "EXISTS t"]
)
def test_reads_pass(text: str) -> None:
    check_read_only(text)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("INSERT INTO t VALUES (1)", "INSERT"),
        ("ALTER TABLE t DELETE WHERE 1", "ALTER"),
        ("SET readonly = 0", "SET"),
        ("OPTIMIZE TABLE t FINAL", "OPTIMIZE"),
    ],
)
def test_a_write_is_refused_by_its_kind(text: str, named: str) -> None:
    with pytest.raises(QueryError, match=f"read-only queries: {named} statements are refused"):
        check_read_only(text)


def test_the_appended_settings_and_their_positions_never_show() -> None:
    """The reasons chDB gave for the user's text once the read-only settings were appended."""
    text = "SELECT * FROM nowhere"
    reason = (
        "Code: 60. DB::Exception: Unknown table expression identifier 'nowhere'. In scope "
        "SELECT * FROM nowhere SETTINGS readonly = '1', max_result_rows = '10001', "
        "result_overflow_mode = 'break', max_execution_time = '10'. (UNKNOWN_TABLE)"
    )
    assert users_view(reason, text) == (
        "Code: 60. DB::Exception: Unknown table expression identifier 'nowhere'. "
        "In scope SELECT * FROM nowhere. (UNKNOWN_TABLE)"
    )
    past_end = (
        "Code: 62. DB::Exception: Syntax error: failed at position 31 (=) (line 2, col 20): "
        "= '1', max_result_rows = '10001'"
    )
    assert users_view(past_end, "SELECT 1 +").endswith(
        "Syntax error: the query ends before it is complete"
    )
    inside = "Code: 62. DB::Exception: Syntax error: failed at position 20 (system) (line 1, col 20): system.one"
    assert users_view(inside, "SELECT count( FROM system.one").endswith(
        "Syntax error at line 1, column 20 (near system)"
    )
