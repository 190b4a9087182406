"""The usgs resource's logic, pure: feed features into records and checkpoints."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from source_workers.connectors.usgs.pipeline import build
from source_workers.connectors.usgs.resources.earthquakes import Newest, parse, record_of
from source_workers.connectors.usgs.source import FEED, UsgsSettings, features_of, revision
from staging.envelope import encode_value
from staging.schemas import SchemaCatalog
from tests.servers.usgs import quake


def changed(feature: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``feature`` with ``path`` (e.g. ``properties.mag``) set, or removed if ``...``."""
    result = copy.deepcopy(feature)
    *parents, last = path.split(".")
    where = result
    for part in parents:
        where = where[part]
    if value is ...:
        del where[last]
    else:
        where[last] = value
    return result


def test_a_feature_becomes_a_record_of_its_schema() -> None:
    """Every field is taken from the feature; the record fits the Avro schema."""
    feature = quake(2)
    payload = parse(feature)
    assert payload is not None
    output = Newest().process(payload, 0)
    [record] = output.records
    props, (lon, lat, depth) = feature["properties"], feature["geometry"]["coordinates"]
    assert record == {
        "id": feature["id"],
        "updated": datetime.fromtimestamp(props["updated"] / 1000, UTC),
        "time": datetime.fromtimestamp(props["time"] / 1000, UTC),
        "magnitude": props["mag"],
        "mag_type": props["magType"],
        "place": props["place"],
        "status": "automatic",
        "tsunami": False,
        "significance": props["sig"],
        "network": props["net"],
        "longitude": lon,
        "latitude": lat,
        "depth_km": depth,
        "url": props["url"],
        "title": props["title"],
    }
    schema = SchemaCatalog.default().load("usgs/earthquakes.avsc")
    assert set(record) == schema.field_names
    encode_value(schema, record)  # raises if the record does not fit the schema


def test_optional_fields_may_be_null() -> None:
    """No magnitude, place or depth yet: the record has nulls, and still fits the schema."""
    feature = changed(
        changed(quake(3), "properties.place", None), "geometry.coordinates", [1, 2, None]
    )
    record = record_of(feature)
    assert (record["magnitude"], record["mag_type"], record["place"], record["depth_km"]) == (
        None,
    ) * 4
    encode_value(SchemaCatalog.default().load("usgs/earthquakes.avsc"), record)


def test_the_checkpoint_is_the_newest_revision_and_never_goes_back() -> None:
    """The checkpoint is the newest updated processed, in RFC 3339; an older revision
    processed later leaves it where it was."""
    newest = Newest()
    expected = {"updated": "2026-12-01T11:53:30.000Z"}  # quake 0, reviewed
    assert newest.process(quake(0, revision=1), 0).checkpoint == expected
    assert newest.process(quake(1), 0).checkpoint == expected


def test_other_messages_are_not_this_resources() -> None:
    """Anything but a GeoJSON Feature is not claimed (the runtime dead-letters it)."""
    assert parse({"type": "FeatureCollection", "features": []}) is None
    assert parse("not a feature") is None


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("id", ...),
        ("id", 7),
        ("properties", None),
        ("properties.updated", ...),
        ("properties.updated", "2026-12-01T12:00:00Z"),
        ("properties.time", True),
        ("properties.mag", "1.2"),
        ("properties.status", ...),
        ("properties.tsunami", 2),
        ("properties.sig", 22.5),
        ("properties.net", None),
        ("properties.url", ...),
        ("properties.title", ...),
        ("geometry", ...),
        ("geometry.type", "Polygon"),
        ("geometry.coordinates", None),
        ("geometry.coordinates", [10.0, 20.0]),
        ("geometry.coordinates", [181.0, 20.0, 1.0]),
        ("geometry.coordinates", [10.0, -91.0, 1.0]),
        ("geometry.coordinates", [10.0, 20.0, "deep"]),
    ],
)
def test_a_bad_feature_raises_so_the_runtime_dead_letters_it(path: str, value: Any) -> None:
    """A required field missing or malformed raises in process."""
    payload = parse(changed(quake(7), path, value))
    assert payload is not None
    with pytest.raises(ValueError):
        Newest().process(payload, 0)


def test_a_revision_is_its_id_and_updated_time() -> None:
    """The source skips a feature whose id and updated it handed over before; a change of
    either is a new revision; a feature without both is told apart by its whole text."""
    assert revision(quake(4)) == revision(copy.deepcopy(quake(4)))
    assert revision(quake(4)) != revision(quake(4, revision=1))
    assert revision(quake(4)) != revision(quake(5))
    assert revision(["not", "a", "feature"]) != revision(["another"])
    nameless = changed(quake(4), "id", ...)
    assert revision(nameless) != revision(changed(nameless, "properties.mag", 9.9))


def test_an_answer_without_features_ends_the_session() -> None:
    """A body that is not a FeatureCollection raises ConnectionLostError (the runtime backs off)."""
    from foundation.errors import ConnectionLostError

    assert features_of({"type": "FeatureCollection", "features": [quake(0)]}) == [quake(0)]
    for body in ({"type": "FeatureCollection"}, [quake(0)], "maintenance"):
        with pytest.raises(ConnectionLostError):
            features_of(body)


def test_the_source_declares_its_resource_and_settings() -> None:
    """One resource, a change log keyed by (id, updated); the real feed by default."""
    [resource] = build().resources
    assert (resource.name, resource.staging.key, resource.staging.id_fields) == (
        "earthquakes",
        ["id"],
        ["id", "updated"],
    )
    assert UsgsSettings() == UsgsSettings(url=FEED, poll_interval_s=60)
    with pytest.raises(ValueError):
        UsgsSettings(url="ftp://earthquake.usgs.gov/feed")
