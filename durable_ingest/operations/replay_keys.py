"""The replay's keyed inserts: only rows whose natural key a table lacks. Pure code.

A replay inserts only rows whose natural key (the resource's ``id_fields``,
the table's ORDER BY) the table does not hold yet: :class:`KeyedTable` asks
the table (through an injected read-only query function) and inserts the rest
(through an injected table writer). The keys come from decoded staged
records, so they never reach the query text: each query names one typed
parameter (``{keys:Array(...)}`` of the key columns' types), and
clickhouse-connect binds the values, checked first by column type
(integers are ``int``, times are times, UUIDs parse...).

Keys are compared in a normalised form, so that a record's key and the
same key read back from ClickHouse are equal (times as integer
microseconds, UUIDs as text, decimals as :class:`~decimal.Decimal`).
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import uuid
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from foundation.errors import (
    BatchRejectedError,
    ConfigError,
    CorruptRecordError,
    StopError,
    WarehouseError,
)
from sink_workers.columns import to_columns
from sink_workers.tables import TableSpec, identifier
from staging.decoder import StagedRecord

MAX_KEYS_PER_QUERY = 1_000
MAX_QUERY_BYTES = 200_000
"""Bound values per key check, at most (counted with every byte escaped): each request
stays moderate. The query text itself is short; the values are parameters."""

_INT = re.compile(r"^U?Int(8|16|32|64|128|256)$")
_DATETIME64 = re.compile(r"^DateTime64\((\d+)")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Key = tuple[Hashable, ...]


def _base(type_name: str) -> str:
    if type_name.startswith("LowCardinality(") and type_name.endswith(")"):
        return type_name[len("LowCardinality(") : -1]
    return type_name


def _micros(value: Any, precision: int) -> int:
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return int((moment - _EPOCH) // timedelta(microseconds=1))
    if isinstance(value, int) and not isinstance(value, bool):  # Avro's raw time units
        if precision <= 6:
            return int(value * 10 ** (6 - precision))
        return int(value // 10 ** (precision - 6))
    raise ValueError(f"{value!r} is not a time")


Normal = Callable[[Any], Hashable]
"""A value in the form a record's key and the same key read back compare equal in."""
Bind = Callable[[Any, Any], Any]
"""(value, its normal form) as the value clickhouse-connect binds to the column type."""


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not an integer")
    return value


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string")
    return value


def _date(value: Any) -> str:
    if not isinstance(value, date) or isinstance(value, datetime):
        raise ValueError(f"{value!r} is not a date")
    return value.isoformat()


def _decimal(value: Any) -> Decimal:
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite decimal")
    return number


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")
    return float(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} is not a boolean")
    return value


def _fixed(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if not isinstance(value, bytes):
        raise ValueError(f"{value!r} is not bytes")
    return value


def _bind_time(_value: Any, micros: Any) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


@functools.cache
def _codec(type_name: str) -> tuple[Normal, Bind]:
    """How to normalise and bind values of one key column type; ConfigError if unsupported."""
    base = _base(type_name)
    if _INT.match(base):
        return _int, lambda _v, n: n
    if base == "String":
        return _text, lambda v, n: v if isinstance(v, bytes) else n
    if base.startswith("FixedString("):
        return _fixed, lambda _v, n: n
    if base.startswith("DateTime64("):
        found = _DATETIME64.match(base)
        precision = int(found.group(1)) if found else 6
        return functools.partial(_micros, precision=precision), _bind_time
    if base == "UUID":
        return lambda v: str(uuid.UUID(str(v))), lambda _v, n: uuid.UUID(n)
    if base in ("Date", "Date32"):
        return _date, lambda _v, n: date.fromisoformat(n)
    if base.startswith("Decimal("):
        return _decimal, lambda _v, n: n
    if base in ("Float32", "Float64"):
        return _float, lambda _v, n: n
    if base == "Bool":
        return _bool, lambda _v, n: n
    raise ConfigError(f"type {type_name}, which the replay's key check cannot compare")


def _key_value(value: Any, type_name: str) -> tuple[Hashable, Any]:
    """``value`` normalised (to compare) and as the value bound to the column type."""
    normal, bind = _codec(type_name)
    if value is None:
        raise ValueError("it is missing (null)")
    normalised = normal(value)
    return normalised, bind(value, normalised)


def bound(value: Any, type_name: str) -> Any:
    """``value`` as bound to a column of type ``type_name``; ValueError if it is none."""
    return _key_value(value, type_name)[1]


def _bound_size(value: Any) -> int:
    """An upper bound of the bytes ``value`` takes in the bound parameter (escapes included)."""
    if isinstance(value, str | bytes):
        return 4 * len(value) + 2
    return 48


@dataclass(frozen=True, slots=True)
class Prepared:
    """One record's natural key: normalised (to compare) and as bound values (to ask)."""

    key: Key
    values: tuple[Any, ...]

    @property
    def size(self) -> int:
        return sum(_bound_size(v) for v in self.values) + 4


@dataclass(frozen=True, slots=True)
class KeyQuery:
    """One key check: its text and the parameters clickhouse-connect binds."""

    sql: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class KeyColumns:
    """A table's natural-key columns: their names and ClickHouse types."""

    table: str
    names: tuple[str, ...]
    types: tuple[str, ...]

    @classmethod
    def of(cls, spec: TableSpec) -> KeyColumns:
        """The ORDER BY columns of ``spec``; ConfigError if there are none or one has a
        type the key check cannot compare."""
        if not spec.order_by:
            raise ConfigError(
                f"table {spec.database}.{spec.table} has no natural key (id_fields): a replay "
                "could not tell which rows the table already holds"
            )
        types = {c.name: c.type for c in spec.columns}
        for name in spec.order_by:
            try:
                _codec(types[name])
            except ConfigError as exc:
                raise ConfigError(
                    f"table {spec.database}.{spec.table}: natural key field {name!r} has {exc}"
                ) from None
        return cls(spec.qualified, spec.order_by, tuple(types[n] for n in spec.order_by))

    def prepare(self, record: Mapping[str, Any]) -> Prepared:
        """The record's key; ValueError naming the field when it cannot be one."""
        key = []
        values = []
        for name, type_name in zip(self.names, self.types, strict=True):
            try:
                normalised, value = _key_value(record.get(name), type_name)
            except (ValueError, TypeError, ArithmeticError) as exc:
                raise ValueError(f"natural key field {name!r}: {exc}") from None
            key.append(normalised)
            values.append(value)
        return Prepared(tuple(key), tuple(values))

    def row_key(self, row: Sequence[Any]) -> Key:
        """The normalised key of a row the key check read back."""
        return tuple(_codec(t)[0](v) for v, t in zip(row, self.types, strict=True))

    def queries(self, keys: Sequence[Prepared]) -> Iterator[KeyQuery]:
        """``SELECT DISTINCT`` queries that find which of ``keys`` the table holds, each
        with at most :data:`MAX_KEYS_PER_QUERY` keys and :data:`MAX_QUERY_BYTES` bytes of
        bound values."""
        columns = ", ".join(identifier("column", n) for n in self.names)
        bases = [_base(t) for t in self.types]
        if len(self.names) == 1:
            target, element = columns, bases[0]
        else:
            target, element = f"({columns})", f"Tuple({', '.join(bases)})"
        # Identifiers checked by identifier(); the keys are a bound parameter.
        sql = f"SELECT DISTINCT {columns} FROM {self.table} WHERE {target} IN {{keys:Array({element})}}"  # noqa: S608
        batch: list[Any] = []
        size = 0
        for prepared in keys:
            if batch and (
                len(batch) >= MAX_KEYS_PER_QUERY or size + prepared.size > MAX_QUERY_BYTES
            ):
                yield KeyQuery(sql, {"keys": batch})
                batch, size = [], 0
            batch.append(prepared.values[0] if len(self.names) == 1 else prepared.values)
            size += prepared.size
        if batch:
            yield KeyQuery(sql, {"keys": batch})


def replay_token(topic: str, partition: int, offsets: Sequence[int]) -> str:
    """The insert-deduplication token of one replay insert of one partition.

    A function of the offsets it holds (first, last, count and a digest of
    all), so a re-run after a crash that inserts the same records carries the
    same token and the server drops it. It never equals a live sink's token
    (``<topic>:<partition>:<first>-<last>:<ids>``).
    """
    digest = hashlib.sha256(",".join(map(str, offsets)).encode()).hexdigest()[:16]
    return f"replay:{topic}:{partition}:{offsets[0]}-{offsets[-1]}:{len(offsets)}:{digest}"


class Query(Protocol):
    """A read-only query: ``{"rows": [...], "truncated": bool, ...}`` (ReadOnlyQuery)."""

    def __call__(
        self,
        sql: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        strings_as_bytes: bool = False,
    ) -> Mapping[str, Any]: ...


class TableWriter(Protocol):
    """Inserts into one table with a deduplication token (ClickHouseTableWriter)."""

    @property
    def spec(self) -> TableSpec: ...

    def insert(self, columns: Sequence[Sequence[Any]], token: str) -> int: ...


def check_existing(query: Query, spec: TableSpec) -> None:
    """ConfigError if the table exists with another engine or ORDER BY than ``spec``'s."""
    found = query(
        "SELECT engine, sorting_key FROM system.tables "
        "WHERE database = {database:String} AND name = {table:String}",
        {"database": spec.database, "table": spec.table},
    )["rows"]
    if not found:
        return
    engine, sorting_key = (str(v) for v in found[0])
    order = ", ".join(spec.order_by)
    if not engine.endswith("ReplacingMergeTree") or sorting_key.replace("`", "").replace(
        " ", ""
    ) != order.replace(" ", ""):
        raise ConfigError(
            f"table {spec.database}.{spec.table} exists with ENGINE = {engine} ORDER BY "
            f"({sorting_key}), not ReplacingMergeTree ORDER BY ({order}): a replay into it "
            "could not keep each natural key once; pick another --into"
        )


@dataclass(slots=True)
class BlockResult:
    written: int = 0
    deduplicated: int = 0
    """Rows whose key the table held, or that the block held twice."""
    refused: list[str] = field(default_factory=list)
    """Why records were skipped: no usable natural key, or content the table refused."""


class KeyedTable:
    """Writes blocks of one partition's records, each natural key at most once."""

    def __init__(self, query: Query, writer: TableWriter, nonce: str) -> None:
        self.keys = KeyColumns.of(writer.spec)
        self._query = query
        self._writer = writer
        self._nonce = nonce
        """Salts the token of a re-send (see :meth:`_insert`); unique per replay run."""

    def held(self, keys: Sequence[Prepared]) -> set[Key]:
        """Which of ``keys`` the table holds (any row, merged or not)."""
        found: set[Key] = set()
        for check in self.keys.queries(keys):
            # Strings as stored: a key that is not UTF-8 must compare equal read back.
            answer = self._query(check.sql, check.parameters, strings_as_bytes=True)
            if answer["truncated"]:
                raise StopError(f"the key check on {self.keys.table} was cut short")
            found.update(self.keys.row_key(row) for row in answer["rows"])
        return found

    def write_block(self, records: Sequence[StagedRecord]) -> BlockResult:
        """Insert the records (of one partition, in offset order) whose key is missing."""
        result = BlockResult()
        unique: dict[Key, tuple[StagedRecord, Prepared]] = {}
        for record in records:
            try:
                prepared = self.keys.prepare(record.record)
            except (ValueError, CorruptRecordError) as exc:  # undecodable, when read undecoded
                where = f"{record.topic}[{record.partition}]@{record.offset}"
                result.refused.append(f"staged record {where}: {exc}")
                continue
            if prepared.key in unique:
                result.deduplicated += 1  # the same key twice in staging (at-least-once)
                continue
            unique[prepared.key] = (record, prepared)
        held = self.held([prepared for _, prepared in unique.values()])
        missing = [pair for key, pair in unique.items() if key not in held]
        result.deduplicated += len(unique) - len(missing)
        if missing:
            self._insert(missing, result)
        return result

    def _insert(self, rows: list[tuple[StagedRecord, Prepared]], result: BlockResult) -> None:
        """Insert ``rows``, then check they are there: an insert the server dropped as a
        repeat of an earlier identical one (whose rows were deleted since) is sent again
        with a salted token. Rows the table refuses are isolated by halving."""
        first = rows[0][0]
        offsets = [record.offset for record, _ in rows]
        spec = self._writer.spec
        try:
            self._writer.insert(
                to_columns([r.record for r, _ in rows], spec),
                replay_token(first.topic, first.partition, offsets),
            )
        except BatchRejectedError as exc:
            if len(rows) == 1:
                result.refused.append(f"{first.topic}[{first.partition}]@{offsets[0]}: {exc}")
                return
            middle = len(rows) // 2
            self._insert(rows[:middle], result)
            self._insert(rows[middle:], result)
            return
        held = self.held([prepared for _, prepared in rows])
        dropped = [pair for pair in rows if pair[1].key not in held]
        if dropped:
            again = [record.offset for record, _ in dropped]
            self._writer.insert(
                to_columns([r.record for r, _ in dropped], spec),
                f"{replay_token(first.topic, first.partition, again)}:again:{self._nonce}",
            )
            if self.held([prepared for _, prepared in dropped]) != {p.key for _, p in dropped}:
                raise WarehouseError(
                    f"rows of {first.topic}[{first.partition}] at offsets {again[0]}-{again[-1]} "
                    f"are not in {self.keys.table} after inserting them twice"
                )
        result.written += len(rows)
