"""A local USGS earthquake feed, for the tests and for trying the connector by hand.

It answers what the real summary feeds answer (the GeoJSON format documented
at https://earthquake.usgs.gov/earthquakes/feed/v1.0/geojson.php):
``GET /earthquakes/feed/v1.0/summary/all_hour.geojson`` gives a
``FeatureCollection`` with ``metadata``, ``bbox`` and one ``Feature`` per
earthquake, newest first, made from deterministic synthetic quakes. Like the
real feed it has no cursor: every answer is the whole window. From the
second answer on, every ``revise_every``-th quake has been reviewed (a new
magnitude, status ``reviewed``, a newer ``updated``), so a poller sees those
ids twice. Faults: ``malformed=True`` adds a feature without coordinates to
every answer; ``errors=[503, 500]`` answers those statuses to the first
requests. By hand::

    .venv/bin/python -m tests.servers.usgs          # prints the export line
"""

from __future__ import annotations

import asyncio
import http
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from source_workers.transport.local_server import LocalServer

PATH = "/earthquakes/feed/v1.0/summary/all_hour.geojson"
T0_MS = int(datetime(2026, 12, 1, 12, 0, tzinfo=UTC).timestamp() * 1000)
"""The synthetic "now": quake i happened 10 + 2.5 i minutes before it."""
NETWORKS = ("ak", "ci", "nc", "us", "hv", "nn", "uw", "pr")
PLACES = (
    "Anchorage, Alaska",
    "Ridgecrest, CA",
    "The Geysers, CA",
    "Hualien City, Taiwan",
    "Pahala, Hawaii",
    "Tonopah, Nevada",
    "Port Townsend, Washington",
    "Ponce, Puerto Rico",
)
REVIEW_MS = 120_000
"""A review comes two minutes after the automatic solution."""


def quake(i: int, revision: int = 0) -> dict[str, Any]:
    """The i-th synthetic quake as a feed feature, at its ``revision``-th revision."""
    net = NETWORKS[i % len(NETWORKS)]
    event_id = f"{net}{(0x2B1C7 * (i + 1)) % 16**8:08x}"
    time_ms = T0_MS - 600_000 - 150_000 * i
    mag = None if i % 7 == 3 else round(0.4 + (i * 37 % 45) / 10 + 0.1 * revision, 1)
    place = f"{3 + i * 7 % 40} km {('N', 'NNE', 'SW', 'ESE')[i % 4]} of {PLACES[i % 8]}"
    return {
        "type": "Feature",
        "id": event_id,
        "properties": {
            "mag": mag,
            "place": place,
            "time": time_ms,
            "updated": time_ms + 90_000 + REVIEW_MS * revision,
            "tz": None,
            "url": f"https://earthquake.usgs.gov/earthquakes/eventpage/{event_id}",
            "detail": f"https://earthquake.usgs.gov/earthquakes/feed/v1.0/detail/{event_id}.geojson",
            "felt": None,
            "cdi": None,
            "mmi": None,
            "alert": None,
            "status": "reviewed" if revision else "automatic",
            "tsunami": 1 if i % 11 == 5 else 0,
            "sig": int((mag or 0) ** 2 * 10),
            "net": net,
            "code": event_id[2:],
            "ids": f",{event_id},",
            "sources": f",{net},",
            "types": ",origin,phase-data,",
            "nst": None,
            "dmin": None,
            "rms": round(0.1 + i % 5 / 10, 2),
            "gap": None,
            "magType": None if mag is None else ("ml", "md", "mb")[i % 3],
            "type": "earthquake",
            "title": f"M {'?' if mag is None else f'{mag:.1f}'} - {place}",
        },
        "geometry": {
            "type": "Point",
            "coordinates": [
                round(-170 + i * 13.7 % 340, 4),
                round(-60 + i * 7.3 % 120, 4),
                round(i * 13 % 90 + 0.3, 2),
            ],
        },
    }


def malformed_feature() -> dict[str, Any]:
    """A feature the connector must dead-letter: its geometry has no coordinates."""
    feature = quake(999)
    feature["id"] = "us0bad0000"
    feature["geometry"] = {"type": "Point", "coordinates": None}
    return feature


class UsgsProvider(LocalServer):
    """``with UsgsProvider(quakes=N) as feed:`` serves ``feed.url``."""

    name = "USGS test feed"

    def __init__(
        self,
        quakes: int = 20,
        revise_every: int = 4,
        malformed: bool = False,
        errors: Sequence[int] = (),
    ) -> None:
        super().__init__()
        self.quakes = quakes
        self.revise_every = revise_every
        self.malformed = malformed
        self.errors = list(errors)
        self.polls = 0
        """Feed answers given (HTTP 200)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    def revised(self, i: int) -> bool:
        return i % self.revise_every == 0

    def features(self, poll: int) -> list[dict[str, Any]]:
        """The features of the ``poll``-th answer (1 is the first), newest first."""
        return [quake(i, 1 if poll > 1 and self.revised(i) else 0) for i in range(self.quakes)]

    def revisions(self) -> list[tuple[str, int]]:
        """Every (id, updated) the feed shows by its second answer, sorted."""
        shown = self.features(1) + [quake(i, 1) for i in range(self.quakes) if self.revised(i)]
        return sorted((f["id"], f["properties"]["updated"]) for f in shown)

    async def _handler(self, connection: ServerConnection) -> None:
        await connection.close()  # no websocket here

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        if urlsplit(request.path).path != PATH:
            return _json(http.HTTPStatus.NOT_FOUND, {"error": "not found"})
        if self.errors:
            status = http.HTTPStatus(self.errors.pop(0))
            return _json(status, {"error": status.phrase})
        self.polls += 1
        features = self.features(self.polls)
        if self.malformed:
            features.append(malformed_feature())
        points = [f["geometry"]["coordinates"] for f in features if f["id"] != "us0bad0000"]
        return _json(
            http.HTTPStatus.OK,
            {
                "type": "FeatureCollection",
                "metadata": {
                    "generated": T0_MS + 60_000 * self.polls,
                    "url": self.url,
                    "title": "USGS All Earthquakes, Past Hour",
                    "status": 200,
                    "api": "1.14.1",
                    "count": len(features),
                },
                "features": features,
                "bbox": [min(p[k] for p in points) for k in range(3)]
                + [max(p[k] for p in points) for k in range(3)]
                if points
                else [],
            },
        )


def _json(status: http.HTTPStatus, body: Any) -> Response:
    data = json.dumps(body).encode()
    headers = Headers({"Content-Type": "application/json", "Content-Length": str(len(data))})
    return Response(status.value, status.phrase, headers, data)


def main() -> int:
    quakes = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    with UsgsProvider(quakes=quakes, malformed=True) as feed:
        print(f"export USGS_URL={feed.url}   # Ctrl-C stops", flush=True)
        try:
            while True:
                asyncio.run(asyncio.sleep(3600))
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
