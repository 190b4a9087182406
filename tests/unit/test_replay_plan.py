"""The pure core of ``ingest replay``: bounds, plans, gates, the warning, keys and tokens."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from durable_ingest.operations.replay_keys import (
    MAX_KEYS_PER_QUERY,
    KeyColumns,
    KeyedTable,
    bound,
    replay_token,
)
from durable_ingest.operations.replay_plan import (
    AtOffsets,
    AtTime,
    Earliest,
    PartitionCounts,
    PartitionGate,
    PartitionPlan,
    ReplayPlan,
    ReplayReport,
    check_order,
    format_ms,
    live_table_warning,
    parse_bound,
    plan_replay,
)
from foundation.errors import BatchRejectedError, ConfigError, ReplayRangeError
from sink_workers.tables import Column, TableSpec, table_spec
from staging.decoder import FixedHeaders, StagedRecord
from staging.schemas import SchemaCatalog
from tests.unit.test_architecture import IO_LIBRARIES, ROOT, imports

T = "ingest.src.matches"
NOW = 1_800_000_000_000
MINUTE = 60_000


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


# --- bounds ----------------------------------------------------------------


def test_bounds_parse_times_offsets_and_earliest() -> None:
    """Each syntax of --from/--to parses to its bound."""
    assert parse_bound("earliest") == Earliest()
    assert parse_bound("2026-11-22T03:00:00Z") == AtTime(
        ms("2026-11-22T03:00:00+00:00"), "2026-11-22T03:00:00Z"
    )
    assert parse_bound("2026-11-22T04:00:00.250+01:00").ms == ms("2026-11-22T03:00:00.250+00:00")
    assert parse_bound("offset:1200") == AtOffsets("offset:1200", every=1200)
    assert parse_bound("0:1200,2:900") == AtOffsets("0:1200,2:900", per_partition={0: 1200, 2: 900})


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("yesterday", "is not a time or offsets: use an RFC 3339 time"),
        ("offset:-5", "is not a time or offsets"),
        ("offset:", "is not a time or offsets"),
        ("0:10,x:3", "is not a time or offsets"),
        ("2026-11-22T03:00:00", "has no time zone"),
        ("2026-11-22", "has no time zone"),
        ("0:10,0:20", "names a partition twice"),
        ("", "is not a time or offsets"),
        ("0001-01-01T00:00:00+14:00", "is before 1970"),
        ("1969-12-31T23:59:59Z", "is before 1970"),
    ],
)
def test_malformed_bounds_are_one_line_errors(text: str, says: str) -> None:
    """A malformed bound names the option, the text and the syntax, on one line."""
    with pytest.raises(ReplayRangeError, match=says) as info:
        parse_bound(text, "--from")
    assert str(info.value).startswith(f"--from {text!r}")
    assert "\n" not in str(info.value)


def test_order_is_checked_before_any_lookup() -> None:
    """A time --from not before --to (or now), and --to earliest, are refused."""
    with pytest.raises(ReplayRangeError, match="is not before --to 2026-11-22T03:00:00Z"):
        check_order(parse_bound("2026-11-22T04:00:00Z"), parse_bound("2026-11-22T03:00:00Z"), NOW)
    with pytest.raises(ReplayRangeError, match=r"is not before now \("):
        check_order(AtTime(NOW + 1, "later"), None, NOW)
    with pytest.raises(ReplayRangeError, match="--to earliest is no end"):
        check_order(Earliest(), Earliest(), NOW)
    check_order(AtTime(NOW - 1, "t"), None, NOW)
    check_order(AtOffsets("offset:9", every=9), AtOffsets("offset:3", every=3), NOW)


# --- plans -----------------------------------------------------------------


def plan(start: str, stop: str | None = None, **kwargs: Any) -> ReplayPlan:
    arguments: dict[str, Any] = {"low": {0: 0, 1: 0, 2: 0}, "now_ms": NOW}
    arguments.update(kwargs)
    return plan_replay(
        T,
        [0, 1, 2],
        parse_bound(start),
        None if stop is None else parse_bound(stop, "--to"),
        **arguments,
    )


def test_earliest_starts_at_the_low_watermarks_and_ends_now() -> None:
    """earliest: every partition from its first retained offset, up to the replay's start."""
    got = plan("earliest", low={0: 0, 1: 7, 2: 0})
    assert got.partitions == tuple(
        PartitionPlan(p, start, None, until_ms=NOW) for p, start in ((0, 0), (1, 7), (2, 0))
    )
    assert got.gaps == ()


def test_offsets_every_and_per_partition() -> None:
    """offset:N starts every partition at N; P:N only the named ones; --to offsets stop exactly."""
    every = plan("offset:5", "offset:9")
    assert [(pp.partition, pp.start, pp.stop, pp.until_ms) for pp in every.partitions] == [
        (0, 5, 9, None),
        (1, 5, 9, None),
        (2, 5, 9, None),
    ]
    some = plan("0:3,2:4", "2:10")
    assert [(pp.partition, pp.start, pp.stop, pp.until_ms) for pp in some.partitions] == [
        (0, 3, None, NOW),
        (2, 4, 10, None),
    ]


def test_offsets_below_retention_are_refused_or_start_at_it_with_allow_gap() -> None:
    """An offset below the low watermark says where the retained data starts."""
    with pytest.raises(
        ReplayRangeError, match=r"ingest.src.matches\[1\] is below its retained"
    ) as e:
        plan("offset:2", low={0: 0, 1: 40, 2: 0})
    assert "starts at offset 40" in str(e.value) and "--allow-gap" in str(e.value)
    assert e.value.partition == 1
    allowed = plan("offset:2", low={0: 0, 1: 40, 2: 0}, allow_gap=True)
    assert [pp.start for pp in allowed.partitions] == [2, 40, 2]
    assert len(allowed.gaps) == 1 and "starts at offset 40" in allowed.gaps[0]


def test_reversed_offsets_and_unknown_partitions_are_refused() -> None:
    """--from after --to, a partition the topic lacks, a --to partition --from skips."""
    with pytest.raises(ReplayRangeError, match=r"--from \(offset 9\) is after --to \(offset 3\)"):
        plan("offset:9", "offset:3")
    with pytest.raises(ReplayRangeError, match="names partition 7, but .* has partitions 0, 1, 2"):
        plan("7:1")
    with pytest.raises(ReplayRangeError, match="--to names partition 7"):
        plan("0:1", "7:3")
    with pytest.raises(ReplayRangeError, match="--to names partition 1, which --from does not"):
        plan("0:1", "1:3")
    with pytest.raises(ReplayRangeError, match=r"--from \(offset 5\) is after --to \(offset 4\)"):
        plan("earliest", "offset:4", low={0: 0, 1: 5, 2: 0})


def test_a_time_starts_at_the_offsets_by_time_and_gates_on_record_times() -> None:
    """A time --from seeks to the broker's offsets (never below low) and keeps the time."""
    start = ms("2026-11-22T03:00:00+00:00")
    got = plan(
        "2026-11-22T03:00:00Z",
        "2026-11-22T04:00:00Z",
        low={0: 0, 1: 10, 2: 0},
        offsets_at_start={0: 100, 1: 0, 2: None},
        first_times={1: start - MINUTE},
    )
    assert got.partitions == (
        PartitionPlan(0, 100, None, since_ms=start, until_ms=start + 60 * MINUTE),
        PartitionPlan(1, 10, None, since_ms=start, until_ms=start + 60 * MINUTE),
    )  # partition 2 has no record at or after --from


def test_a_time_before_the_retained_data_is_refused() -> None:
    """low > 0 and the first retained record newer than --from: one line naming where data starts."""
    start = ms("2026-11-22T03:00:00+00:00")
    kwargs: dict[str, Any] = {
        "low": {0: 0, 1: 120, 2: 0},
        "offsets_at_start": {0: 0, 1: 120, 2: 0},
        "first_times": {1: start + 5 * MINUTE},
        "now_ms": start + 60 * MINUTE,
    }
    with pytest.raises(ReplayRangeError) as info:
        plan("2026-11-22T03:00:00Z", **kwargs)
    message = str(info.value)
    assert "is before the retained data of ingest.src.matches[1]" in message
    assert "starts at offset 120 written 2026-11-22T03:05:00.000Z" in message
    assert "\n" not in message
    allowed = plan("2026-11-22T03:00:00Z", allow_gap=True, **kwargs)
    assert [pp.start for pp in allowed.partitions] == [0, 120, 0] and len(allowed.gaps) == 1
    # The first retained record at or before --from: nothing of the range is gone.
    kwargs["first_times"] = {1: start - MINUTE}
    assert plan("2026-11-22T03:00:00Z", **kwargs).gaps == ()


def test_a_partition_emptied_by_retention_is_a_gap_only_past_the_retention_period() -> None:
    """No retained record left: a gap if --from is older than the retention period."""
    kwargs: dict[str, Any] = {
        "low": {0: 0, 1: 50, 2: 0},
        "offsets_at_start": {0: 0, 1: None, 2: 0},
        "first_times": {1: None},
        "retention_ms": 60 * MINUTE,
    }
    recent = format_ms(NOW - 10 * MINUTE)
    assert [pp.partition for pp in plan(recent, **kwargs).partitions] == [0, 2]
    with pytest.raises(ReplayRangeError, match="holds no records any more"):
        plan(format_ms(NOW - 120 * MINUTE), **kwargs)


# --- gates -----------------------------------------------------------------


def test_gate_skips_before_since_then_takes_everything_until_a_bound() -> None:
    """Like offsets_for_times: skip until the first record at/after --from, then take all."""
    gate = PartitionGate(PartitionPlan(0, 0, None, since_ms=100, until_ms=200))
    verdicts = [gate.admit(o, ts) for o, ts in enumerate([90, 99, 100, 95, None, 150, 200, 120])]
    assert verdicts == ["skip", "skip", "take", "take", "take", "take", "end", "end"]
    assert gate.ended


def test_gate_ends_with_the_last_offset_of_a_bounded_range() -> None:
    """The record just before --to's offset is taken and ends the partition."""
    gate = PartitionGate(PartitionPlan(0, 5, 8))
    assert [gate.admit(o, 1) for o in (5, 6)] == ["take", "take"] and not gate.ended
    assert gate.admit(7, 1) == "take" and gate.ended
    assert gate.admit(8, 1) == "end"


# --- the warning -----------------------------------------------------------


def warning(partitions: Sequence[PartitionPlan], committed: Mapping[int, int]) -> str | None:
    return live_table_warning(
        ReplayPlan(T, tuple(partitions)),
        committed,
        table="default.src_matches",
        group="ingest.sink.src",
        id_fields=("product_id", "trade_id"),
    )


def test_warning_names_the_overlap_what_protects_and_the_residual_risk() -> None:
    """Below the committed offsets: overlap counted; what protects the rows; FINAL."""
    text = warning([PartitionPlan(0, 10, 50), PartitionPlan(1, 0, 20)], {0: 100, 1: 20})
    assert text is not None
    assert "up to 60 records" in text and "[0] 40, [1] 20" in text
    assert "group ingest.sink.src" in text
    assert "last 10000 inserts" in text and "no token matches" in text
    assert "natural key (product_id, trade_id)" in text and "ReplacingMergeTree" in text
    assert "FINAL" in text
    assert "reach past" not in text


def test_warning_names_partitions_the_live_sink_has_not_committed() -> None:
    """A range reaching past the committed offsets (or a group without commits) warns of races."""
    text = warning([PartitionPlan(0, 90, None), PartitionPlan(2, 0, 5)], {0: 100})
    assert text is not None
    assert "partitions 0, 2 reach past the live group's committed offsets" in text
    assert "up to 10 records" in text


def test_no_warning_for_an_empty_plan_or_a_range_at_the_committed_offsets() -> None:
    """Nothing to read, or an empty range exactly at the committed offset: no warning."""
    assert warning([], {0: 5}) is None
    assert warning([PartitionPlan(0, 5, 5)], {0: 5}) is None


# --- the report ------------------------------------------------------------


def test_report_json_totals_and_dry_run() -> None:
    """Totals add up per partition; a dry run says null for what it did not compare."""
    counts = [
        PartitionCounts(0, 0, None, 0, 9, read=10, written=4, deduplicated=5, corrupt=1),
        PartitionCounts(1, 3, 8, 3, 7, read=5, deduplicated=5, skipped=2),
    ]
    report = ReplayReport("src", "matches", T, "default.x", True, False, counts, ["w"])
    data = report.as_json()
    assert data["totals"] == {
        "read": 15,
        "written": 4,
        "deduplicated": 10,
        "corrupt": 1,
        "skipped": 2,
    }
    assert data["partitions"][1]["stop"] == 8 and data["partitions"][0]["first_read"] == 0
    assert data["warnings"] == ["w"] and data["live_table"] is True
    dry = ReplayReport("src", "matches", T, "default.x", False, True, counts).as_json()
    assert dry["totals"]["written"] is None and dry["partitions"][0]["deduplicated"] is None
    assert dry["totals"]["read"] == 15


# --- keys ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "type_name", "bound_value"),
    [
        (42, "Int64", 42),
        (-7, "Int32", -7),
        (True, "Bool", True),
        ("BTC-USD", "String", "BTC-USD"),
        ("INSERT", "LowCardinality(String)", "INSERT"),
        ("x\\' OR 1=1 --", "String", "x\\' OR 1=1 --"),
        (b"\x00a", "String", b"\x00a"),
        ("abc", "FixedString(3)", b"abc"),
        (uuid.UUID(int=7), "UUID", uuid.UUID(int=7)),
        ("00000000-0000-0000-0000-00000000000A", "UUID", uuid.UUID(int=10)),
        (
            datetime(2026, 11, 22, 3, 0, 0, 137, tzinfo=UTC),
            "DateTime64(6, 'UTC')",
            datetime(2026, 11, 22, 3, 0, 0, 137, tzinfo=UTC),
        ),
        (
            datetime(2026, 11, 22, 4, 0, 0, 5000, tzinfo=timezone(timedelta(hours=1))),
            "DateTime64(3, 'UTC')",
            datetime(2026, 11, 22, 3, 0, 0, 5000, tzinfo=UTC),
        ),
        (
            1_795_000_000_000_137,
            "DateTime64(6, 'UTC')",
            datetime(2026, 11, 18, 11, 6, 40, 137, tzinfo=UTC),
        ),
        (datetime(2026, 1, 2).date(), "Date32", datetime(2026, 1, 2).date()),
        (Decimal("0.00123400"), "Decimal(18, 8)", Decimal("0.00123400")),
        (1.5, "Float64", 1.5),
    ],
)
def test_key_values_are_bound_by_column_type(value: Any, type_name: str, bound_value: Any) -> None:
    """Each supported key type is checked and bound from its parsed value (the engine
    round trip of every type is in tests/integration/test_replay.py)."""
    assert bound(value, type_name) == bound_value


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (True, "Int64"),
        ("42", "Int64"),
        ("1 OR 1=1", "Int64"),
        (None, "String"),
        ("not-a-uuid", "UUID"),
        ("2026-11-22", "DateTime64(6, 'UTC')"),
        (Decimal("NaN"), "Decimal(18, 8)"),
        (float("inf"), "Float64"),
        (1, "Bool"),
    ],
)
def test_values_that_do_not_fit_the_key_type_are_refused(value: Any, type_name: str) -> None:
    """A value of the wrong type is refused before any query."""
    with pytest.raises((ValueError, TypeError)):
        bound(value, type_name)


def spec(catalog: SchemaCatalog) -> TableSpec:
    fields = catalog.load("coinbase/matches.avsc").parsed["fields"]
    return table_spec(
        fields, database="default", table="src_matches", order_by=("product_id", "trade_id")
    )


def test_keys_of_records_and_rows_read_back_compare_equal() -> None:
    """A record's key and the same key read back from ClickHouse (naive UTC times) are equal."""
    columns = KeyColumns(
        "`d`.`t`", ("id", "at", "op"), ("Int64", "DateTime64(6, 'UTC')", "LowCardinality(String)")
    )
    moment = datetime(2026, 11, 22, 4, 0, 0, 137, tzinfo=timezone(timedelta(hours=1)))
    prepared = columns.prepare({"id": 5, "at": moment, "op": "UPDATE", "other": "x"})
    assert prepared.values == (5, datetime(2026, 11, 22, 3, 0, 0, 137, tzinfo=UTC), "UPDATE")
    assert prepared.key == columns.row_key([5, datetime(2026, 11, 22, 3, 0, 0, 137), "UPDATE"])
    with pytest.raises(ValueError, match="natural key field 'id'"):
        columns.prepare({"id": None, "at": moment, "op": "UPDATE"})


def test_key_columns_refuse_tables_without_a_key_or_with_uncomparable_types() -> None:
    """No ORDER BY, or an Array in it: ConfigError before any query."""
    bare = TableSpec("d", "t", (Column("x", "Int64", False),), ())
    with pytest.raises(ConfigError, match="has no natural key"):
        KeyColumns.of(bare)
    arrays = TableSpec("d", "t", (Column("x", "Array(Int64)", False),), ("x",))
    with pytest.raises(ConfigError, match="type Array\\(Int64\\), which the replay's key check"):
        KeyColumns.of(arrays)


def test_key_queries_are_cut_by_count_and_size(catalog: SchemaCatalog) -> None:
    """SELECT DISTINCT ... IN {keys:Array(...)} per batch of keys; one key column: an
    array of its type, several: an array of tuples. No value is in the text."""
    columns = KeyColumns.of(spec(catalog))
    keys = [columns.prepare({"product_id": "BTC-USD", "trade_id": i}) for i in range(2_500)]
    queries = list(columns.queries(keys))
    assert [len(q.parameters["keys"]) for q in queries] == [MAX_KEYS_PER_QUERY, 1_000, 500]
    assert queries[0].sql == (
        "SELECT DISTINCT `product_id`, `trade_id` FROM `default`.`src_matches` "
        "WHERE (`product_id`, `trade_id`) IN {keys:Array(Tuple(String, Int64))}"
    )
    assert queries[0].parameters["keys"][:2] == [("BTC-USD", 0), ("BTC-USD", 1)]
    big = [columns.prepare({"product_id": "x" * 20_000, "trade_id": i}) for i in range(7)]
    assert [len(q.parameters["keys"]) for q in columns.queries(big)] == [2, 2, 2, 1]
    single = KeyColumns("`d`.`t`", ("id",), ("Int64",))
    (query,) = single.queries([single.prepare({"id": 1}), single.prepare({"id": 2})])
    assert query.sql == "SELECT DISTINCT `id` FROM `d`.`t` WHERE `id` IN {keys:Array(Int64)}"
    assert query.parameters == {"keys": [1, 2]}


def test_tokens_are_deterministic_and_differ_from_the_live_sinks() -> None:
    """Same offsets, same token; other offsets, another; never the live sink's form."""
    token = replay_token(T, 1, [10, 11, 14])
    assert token == replay_token(T, 1, [10, 11, 14])
    assert token.startswith(f"replay:{T}:1:10-14:3:")
    assert token != replay_token(T, 1, [10, 11, 13, 14]) != replay_token(T, 2, [10, 11, 14])


# --- keyed inserts, against an in-memory table -----------------------------


class MemoryTable:
    """A table that remembers rows and insert tokens, like ClickHouse's dedup window."""

    def __init__(self, spec: TableSpec, rows: Sequence[tuple[str, int]] = ()) -> None:
        self.spec = spec
        self.rows: list[tuple[str, int]] = list(rows)
        self.tokens: list[str] = []
        self.refuse: set[int] = set()

    def insert(self, columns: Sequence[Sequence[Any]], token: str) -> int:
        names = self.spec.column_names
        products, ids = columns[names.index("product_id")], columns[names.index("trade_id")]
        got = list(zip(products, ids, strict=True))
        if self.refuse & {t for _, t in got}:
            raise BatchRejectedError("refused", code=53)
        if token in self.tokens:
            return len(got)  # dropped by the server as a repeat
        self.tokens.append(token)
        self.rows += got
        return len(got)

    def query(
        self, sql: str, parameters: Mapping[str, Any] | None = None, strings_as_bytes: bool = False
    ) -> dict[str, Any]:
        assert sql.endswith("IN {keys:Array(Tuple(String, Int64))}") and parameters is not None
        wanted = set(parameters["keys"])
        rows = [list(r) for r in dict.fromkeys(self.rows) if r in wanted]
        return {"rows": rows, "truncated": False}


def staged(offset: int, trade_id: int, partition: int = 0) -> StagedRecord:
    return StagedRecord(
        T,
        partition,
        offset,
        None,
        None,  # type: ignore[arg-type]  # the schema is not needed here
        b"",
        FixedHeaders(()),
        {"product_id": "BTC-USD", "trade_id": trade_id},
    )


def test_a_block_inserts_only_missing_keys_once(catalog: SchemaCatalog) -> None:
    """Held keys and repeats within the block are deduplicated; the rest inserted once."""
    table = MemoryTable(spec(catalog), [("BTC-USD", 1)])
    keyed = KeyedTable(table.query, table, "n1")
    result = keyed.write_block([staged(0, 1), staged(1, 2), staged(2, 2), staged(3, 3)])
    assert (result.written, result.deduplicated, result.refused) == (2, 2, [])
    assert sorted(table.rows) == [("BTC-USD", 1), ("BTC-USD", 2), ("BTC-USD", 3)]
    assert table.tokens == [replay_token(T, 0, [1, 3])]
    again = keyed.write_block([staged(0, 1), staged(1, 2), staged(2, 2), staged(3, 3)])
    assert (again.written, again.deduplicated) == (0, 4)


def test_rows_dropped_as_a_repeated_insert_are_sent_again(catalog: SchemaCatalog) -> None:
    """Deleted after an identical insert: the server drops the repeat, the check sends it again."""
    table = MemoryTable(spec(catalog))
    KeyedTable(table.query, table, "n1").write_block([staged(0, 1), staged(1, 2)])
    table.rows.clear()  # DELETE FROM the table; its token window still remembers the insert
    result = KeyedTable(table.query, table, "n2").write_block([staged(0, 1), staged(1, 2)])
    assert result.written == 2 and sorted(table.rows) == [("BTC-USD", 1), ("BTC-USD", 2)]
    assert table.tokens[-1] == replay_token(T, 0, [0, 1]) + ":again:n2"


def test_a_record_read_undecoded_that_does_not_decode_is_reported(
    catalog: SchemaCatalog,
) -> None:
    """A block handed over undecoded (the key check in ClickHouse falls back here for some
    writer schemas): a body that does not decode is reported, the rest written."""
    schema = catalog.load("coinbase/matches.avsc")
    bad = StagedRecord(T, 0, 1, None, schema, schema.header + b"\xff" * 4, FixedHeaders(()))
    table = MemoryTable(spec(catalog))
    result = KeyedTable(table.query, table, "n").write_block([staged(0, 1), bad])
    assert result.written == 1 and len(result.refused) == 1
    assert "@1 cannot be decoded" in result.refused[0]


def test_rows_the_table_refuses_are_isolated_and_reported(catalog: SchemaCatalog) -> None:
    """A refused row is found by halving; the others are written."""
    table = MemoryTable(spec(catalog))
    table.refuse = {3}
    result = KeyedTable(table.query, table, "n").write_block([staged(i, i) for i in range(6)])
    assert result.written == 5 and len(result.refused) == 1 and "@3" in result.refused[0]
    assert sorted(t for _, t in table.rows) == [0, 1, 2, 4, 5]


def test_the_pure_replay_modules_do_no_io() -> None:
    """replay_plan and replay_keys import no Kafka, ClickHouse, socket or process library."""
    for module in (
        "durable_ingest/operations/replay_plan.py",
        "durable_ingest/operations/replay_keys.py",
    ):
        assert not imports(ROOT / module) & set(IO_LIBRARIES), module
