"""Resource ``earthquakes``: every revision of every USGS earthquake, once.

USGS revises an event in place: the same id comes back with a newer
``properties.updated`` (a reviewed magnitude, a better location, a
deletion). So the table ``<source>_earthquakes`` is a change log of
revisions with the natural key ``(id, updated)``: ``FINAL`` reads each
revision once, and ``argMax(column, updated)`` per id gives the latest.

``parse`` claims the feed's GeoJSON features; ``process`` turns one into a
record of ``schemas/usgs/earthquakes.avsc``, raising on a feature whose
required fields are missing or malformed (the runtime dead-letters it), and
returns the checkpoint: the newest ``updated`` this worker processed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from source_workers.authoring import Output, Resource, define_resource

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse(raw: Any) -> dict[str, Any] | None:
    """The feed's features (others: None)."""
    if isinstance(raw, dict) and raw.get("type") == "Feature":
        return raw
    return None


def _text(where: dict[str, Any], name: str, nullable: bool = False) -> str | None:
    value = where.get(name)
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} {value!r} is not a string")
    return value


def _integer(where: dict[str, Any], name: str) -> int:
    value = where.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} {value!r} is not an integer")
    return value


def _number(value: Any, name: str, limit: float | None = None) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"{name} {value!r} is not a number")
    if limit is not None and abs(value) > limit:
        raise ValueError(f"{name} {value!r} is not within ±{limit}")
    return float(value)


def _moment(where: dict[str, Any], name: str) -> datetime:
    """A time the feed gives in milliseconds since the epoch."""
    return _EPOCH + timedelta(milliseconds=_integer(where, name))


def record_of(feature: dict[str, Any]) -> dict[str, Any]:
    """The record of one feature; ValueError if a required field is missing or malformed."""
    properties, geometry = feature.get("properties"), feature.get("geometry")
    if not isinstance(properties, dict) or not isinstance(geometry, dict):
        raise ValueError("a feature needs properties and geometry objects")
    coordinates = geometry.get("coordinates")
    if geometry.get("type") != "Point" or not isinstance(coordinates, list):
        raise ValueError(f"geometry {geometry!r} is not a GeoJSON Point")
    if len(coordinates) != 3:
        raise ValueError(f"coordinates {coordinates!r} are not [longitude, latitude, depth]")
    tsunami = _integer(properties, "tsunami")
    if tsunami not in (0, 1):
        raise ValueError(f"tsunami {tsunami!r} is not 0 or 1")
    magnitude, depth = properties.get("mag"), coordinates[2]
    return {
        "id": _text(feature, "id"),
        "updated": _moment(properties, "updated"),
        "time": _moment(properties, "time"),
        "magnitude": None if magnitude is None else _number(magnitude, "mag"),
        "mag_type": _text(properties, "magType", nullable=True),
        "place": _text(properties, "place", nullable=True),
        "status": _text(properties, "status"),
        "tsunami": tsunami == 1,
        "significance": _integer(properties, "sig"),
        "network": _text(properties, "net"),
        "longitude": _number(coordinates[0], "longitude", limit=180),
        "latitude": _number(coordinates[1], "latitude", limit=90),
        "depth_km": None if depth is None else _number(depth, "depth"),
        "url": _text(properties, "url"),
        "title": _text(properties, "title"),
    }


def rfc3339(moment: datetime) -> str:
    """``2026-12-01T11:58:30.123Z``."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Newest:
    """This worker's newest revision time processed: the checkpoint, which never goes back."""

    def __init__(self) -> None:
        self.updated: datetime | None = None

    def process(self, feature: dict[str, Any], received_at_us: int) -> Output:
        """One record, and the checkpoint; raising means a bad feature (it is dead-lettered)."""
        record = record_of(feature)
        if self.updated is None or record["updated"] > self.updated:
            self.updated = record["updated"]
        return Output([record], {"updated": rfc3339(self.updated)})


def resource() -> Resource:
    """The resource, with a checkpoint of its own (one per source built)."""
    return define_resource(
        name="earthquakes",
        target="clickhouse",
        schema="usgs/earthquakes.avsc",
        key=("id",),
        id_fields=("id", "updated"),
        time_field="updated",
        parse=parse,
        process=Newest().process,
    )
