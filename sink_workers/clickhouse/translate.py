"""clickhouse-connect errors into durable-ingest errors, by server error code.

* transient (network, timeouts, TOO_MANY_PARTS, memory limits, read-only
  replicas, unknown insert status): :class:`WarehouseUnavailableError`, back
  off and retry the identical batch (same deduplication token);
* the batch's content was refused (parse, type, overflow, Avro bytes): :class:`BatchRejectedError`,
  split the batch to isolate the bad records;
* anything else (unknown table, access denied...): :class:`WarehouseError`, stop.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from clickhouse_connect.driver.exceptions import (
    ClickHouseError,
    DatabaseError,
    DataError,
    OperationalError,
    ProgrammingError,
)

from foundation.errors import BatchRejectedError, WarehouseError, WarehouseUnavailableError

TRANSIENT_CODES = frozenset(
    {
        3,  # UNEXPECTED_END_OF_FILE
        159,  # TIMEOUT_EXCEEDED
        164,  # READONLY
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY
        252,  # TOO_MANY_PARTS
        319,  # UNKNOWN_STATUS_OF_INSERT
        425,  # SYSTEM_ERROR
        999,  # KEEPER_EXCEPTION
    }
)
CONTENT_CODES = frozenset(
    {
        6,  # CANNOT_PARSE_TEXT
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        38,  # CANNOT_PARSE_DATE
        41,  # CANNOT_PARSE_DATETIME
        53,  # TYPE_MISMATCH
        69,  # ARGUMENT_OUT_OF_BOUND
        70,  # CANNOT_CONVERT_TYPE
        72,  # CANNOT_PARSE_NUMBER
        117,  # INCORRECT_DATA
        131,  # TOO_LARGE_STRING_SIZE
        407,  # DECIMAL_OVERFLOW
    }
)

STD_EXCEPTION = 1001
"""Also content when it is ClickHouse's Avro parser refusing bytes (``avro::Exception``)."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


@contextmanager
def warehouse_call(what: str) -> Iterator[None]:
    """Translate a clickhouse-connect error raised inside the block."""
    try:
        yield
    except OperationalError as exc:
        raise WarehouseUnavailableError(f"{what}: {_first_line(exc)}", code=None) from None
    except (DataError, ProgrammingError, TypeError, ValueError) as exc:
        # Raised while serialising the batch, before anything reached the server.
        raise BatchRejectedError(f"{what}: {_first_line(exc)}", code=None) from None
    except DatabaseError as exc:
        code = getattr(exc, "code", None)
        if code in TRANSIENT_CODES:
            raise WarehouseUnavailableError(f"{what}: {_first_line(exc)}", code=code) from None
        if code in CONTENT_CODES or (code == STD_EXCEPTION and "avro::" in str(exc)):
            raise BatchRejectedError(f"{what}: {_first_line(exc)}", code=code) from None
        raise WarehouseError(f"{what}: {_first_line(exc)}") from None
    except ClickHouseError as exc:
        raise WarehouseError(f"{what}: {_first_line(exc)}") from None
