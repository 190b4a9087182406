"""An HTTP source's first good answer of a session is its connection; errors are not."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from foundation.clock import ManualClock
from foundation.errors import RateLimitedError
from foundation.metrics import Metrics
from source_workers.context import SourceContext
from source_workers.transport.http import HttpResponse


class FakeClient:
    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers

    async def get_json(self, url: str, params: Any = None, headers: Any = None) -> HttpResponse:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return HttpResponse(200, {}, answer)


def context(answers: list[Any]) -> tuple[SourceContext, list[str]]:
    marks: list[str] = []
    runtime = SimpleNamespace(
        source_name="demo",
        clock=ManualClock(),
        metrics=Metrics(),
        http=FakeClient(answers),
        connected=lambda: marks.append("connected"),
    )
    return SourceContext(runtime, None), marks  # type: ignore[arg-type]


def test_a_good_answer_marks_the_session_connected_once() -> None:
    ctx, marks = context(
        [
            RateLimitedError("429", url="http://x", status=429, retry_after_s=None),
            {"a": 1},
            {"b": 2},
        ]
    )
    with pytest.raises(RateLimitedError):
        asyncio.run(ctx.http.get_json("http://x"))
    assert marks == []  # a refused request is no connection
    assert asyncio.run(ctx.http.get_json("http://x")).body == {"a": 1}
    asyncio.run(ctx.http.get_json("http://x"))
    assert marks == ["connected"]
