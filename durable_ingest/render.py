"""Rows as text for a terminal: aligned tables, tab-separated values. Pure code."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def text_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell, with a rule under the header."""
    cells = [[cell(v).replace("\n", "\\n") for v in row] for row in rows]
    widths = [len(c) for c in columns]
    for row in cells:
        for i, text in enumerate(row):
            widths[i] = max(widths[i], len(text))
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip(),
        "  ".join("-" * w for w in widths),
    ]
    lines += [
        "  ".join(t.ljust(w) for t, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def tsv(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Tab-separated, header first; tabs and newlines in values escaped."""

    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")

    lines = ["\t".join(map(escape, columns))]
    lines += ["\t".join(escape(cell(v)) for v in row) for row in rows]
    return "\n".join(lines)
