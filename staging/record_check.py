"""What the envelope encoder checks in a record that fastavro does not: schema facts. Pure."""

from __future__ import annotations

import decimal
from collections.abc import Mapping
from typing import Any

from staging.schemas import StagedSchema


def decimal_limits(schema: StagedSchema) -> list[tuple[str, decimal.Decimal]]:
    """(field, exclusive bound) for each decimal field: |value| < 10^(precision-scale)."""
    limits = []
    for field in schema.parsed["fields"]:
        for branch in field["type"] if isinstance(field["type"], list) else [field["type"]]:
            if isinstance(branch, dict) and branch.get("logicalType") == "decimal":
                digits = int(branch["precision"]) - int(branch.get("scale", 0))
                limits.append((field["name"], decimal.Decimal(10) ** digits))
    return limits


def logical_fields(schema: StagedSchema, logical: str) -> list[str]:
    """Top-level fields (or their nullable branch) of one logical type."""
    names = []
    for field in schema.parsed["fields"]:
        for branch in field["type"] if isinstance(field["type"], list) else [field["type"]]:
            if isinstance(branch, dict) and branch.get("logicalType") == logical:
                names.append(field["name"])
    return names


def failing_field(parsed: Any, record: Mapping[str, Any]) -> str | None:
    """Name of the first top-level field whose value the schema rejects."""
    from fastavro.validation import validate

    for field in parsed["fields"]:
        name = field["name"]
        if name in record and not validate(record[name], field["type"], raise_errors=False):
            return str(name)
    return None
