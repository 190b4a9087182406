"""Untrusted frames: size, depth, NaN and encoding limits, each with a clear reason."""

from __future__ import annotations

import json

import pytest

from foundation.errors import MalformedFrameError
from source_workers.frames import FrameLimits, decode_frame, json_depth

LIMITS = FrameLimits(max_bytes=2_000, max_depth=8)


def test_ordinary_frames_decode() -> None:
    """A normal message decodes to its JSON value, from text or bytes."""
    message = {"type": "match", "price": "1.5", "nested": [[{"a": [1]}]]}
    assert decode_frame("s", json.dumps(message), LIMITS) == message
    assert decode_frame("s", json.dumps(message).encode(), LIMITS) == message


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("x" * 2_001, "over the limit of 2000"),
        ('{"a": NaN}', "NaN is not allowed"),
        ('{"a": Infinity}', "Infinity is not allowed"),
        ("[-Infinity]", "-Infinity is not allowed"),
        ("{not json", "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        ("[" * 9 + "]" * 9, "nested 9 deep"),
    ],
)
def test_bad_frames_are_refused_with_the_reason(frame: str | bytes, reason: str) -> None:
    """Every refused frame says why and keeps its bytes for the dead letter."""
    with pytest.raises(MalformedFrameError) as info:
        decode_frame("coinbase", frame, LIMITS)
    assert reason in str(info.value) and "source coinbase" in str(info.value)
    assert info.value.frame


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    """Brackets and escaped quotes inside strings are text, not nesting."""
    text = json.dumps({"a": '[[[[[[[[[[{{{{{{ \\" [[[['})
    assert json_depth(text) == 1
    assert decode_frame("s", text, LIMITS)["a"].startswith("[[[[")


def test_depth_at_the_limit_is_accepted() -> None:
    """Exactly max_depth levels pass."""
    assert decode_frame("s", "[" * 8 + "]" * 8, LIMITS) == [[[[[[[[]]]]]]]]


def test_numbers_that_overflow_to_infinity_are_refused() -> None:
    """1e999 is valid JSON text but not a finite number: refused like NaN."""
    with pytest.raises(MalformedFrameError, match="overflows to infinity"):
        decode_frame("s", '{"x": 1e999}', LIMITS)
    assert decode_frame("s", '{"x": 1.5e3}', LIMITS) == {"x": 1500.0}
