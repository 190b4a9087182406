"""Source ``usgs``: the USGS earthquake summary feed (GeoJSON over HTTP), polled.

The feed (``USGS_URL``; by default every earthquake of the past hour) has
no cursor: each answer is the whole window, and an event USGS revises comes
back with the same id and a newer ``properties.updated``. ``start`` fetches
it every ``USGS_POLL_INTERVAL_S`` seconds and hands the resource
``earthquakes`` only the features that were not in the answer before (same
id and ``updated``: the same revision), so a poll stages what changed, not
the whole window again. That memory is the worker's own: after a restart
the first poll stages the window again, which the table's natural key
``(id, updated)`` makes harmless.

A 429 or 5xx ends the session (``ctx.http`` raises), and so does an answer
that is not a FeatureCollection; the Durable Runtime backs off and calls
``start`` again, which keeps this worker's memory.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from foundation.errors import ConnectionLostError
from source_workers.context import SourceContext

FEED = "https://earthquake.usgs.gov/earthquakes/feed/v1.0/summary/all_hour.geojson"


class UsgsSettings(BaseModel):
    """``USGS_*`` environment variables."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = FEED
    """The GeoJSON summary feed (``USGS_URL``): ``all_hour``, or ``all_day`` to cover
    longer outages, or a filtered one such as ``2.5_hour``."""
    poll_interval_s: float = Field(60.0, gt=0)
    """Seconds between polls (``USGS_POLL_INTERVAL_S``); USGS updates the feeds every minute."""

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


class Seen:
    """The revisions in the last answer, kept across the sessions of one worker."""

    def __init__(self) -> None:
        self.revisions: set[str] = set()


def revision(feature: Any) -> str:
    """What tells one revision from another: the id and ``properties.updated``
    (for a feature without a string id and an integer ``updated``, its whole text)."""
    if isinstance(feature, dict) and isinstance(feature.get("properties"), dict):
        key = [feature.get("id"), feature["properties"].get("updated")]
        if isinstance(key[0], str) and isinstance(key[1], int):
            return json.dumps(key)
    return json.dumps(feature, sort_keys=True)


def features_of(body: Any) -> list[Any]:
    """The features of one answer, a GeoJSON FeatureCollection; anything else ends the session."""
    features = body.get("features") if isinstance(body, dict) else None
    if not isinstance(features, list):
        raise ConnectionLostError(
            "usgs: the answer is not a FeatureCollection with features",
            url="usgs",
            reason="bad answer",
        )
    return features


async def start(ctx: SourceContext, *, seen: Seen) -> None:
    """One session: poll, emit the new revisions, wait; until stopped."""
    settings: UsgsSettings = ctx.settings
    checkpoint = ctx.checkpoint("earthquakes")
    if checkpoint and not seen.revisions:
        ctx.log.info("revisions up to %s are staged; polling the feed", checkpoint["updated"])
    while not ctx.stopping:
        answer = await ctx.http.get_json(settings.url)
        current: set[str] = set()
        for feature in features_of(answer.body):
            key = revision(feature)
            if key not in seen.revisions and key not in current:
                await ctx.emit_raw(feature, "earthquakes")
            current.add(key)
        seen.revisions = current
        if not await ctx.sleep(settings.poll_interval_s):
            return


def starter() -> Callable[[SourceContext], Awaitable[None]]:
    """``start`` with a memory of its own: one per worker."""
    return partial(start, seen=Seen())
