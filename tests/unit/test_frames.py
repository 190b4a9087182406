"""Untrusted frames: size, depth, NaN and encoding limits, each with a clear reason."""

from __future__ import annotations

import json
import math
import random
import struct

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


_STANDARD = json.JSONDecoder()


@pytest.mark.parametrize(
    "frame",
    [
        '{"a": 1, "a": 2}',  # the last duplicate key wins
        " [1, -0, 0.1, 1E5, 1.0e-400, 5e-324] ",
        "9223372036854775807",  # the largest signed 64-bit integer
        "-9223372036854775808",
        "18446744073709551615",  # the largest unsigned one
        "18446744073709551616",  # one over
        '{"id": 123456789012345678901234567890}',
        "[-123456789012345678901234567890, 1.2345678901234567890123]",
        '{"s": "\\ud800"}',  # a lone surrogate: msgspec refuses, the standard decoder keeps it
        '{"s": "\\ud83d\\ude00 \\u00e9 caf\u00e9"}',
        '{"s": "tab\\tquote\\"slash\\/"}',
        '{"deep": [[[[[[[1]]]]]]]}',
        "[true, false, null]",
        "[-0.0, 0.30000000000000004, 2.2250738585072011e-308, 1.7976931348623157e308]",
        "[9007199254740993.0, 4.9406564584124654e-324, 1e23, 8.41e21, 123456.789e-3]",
    ],
)
def test_the_fast_parser_gives_what_the_standard_decoder_gives(frame: str) -> None:
    """msgspec is only a faster road to the standard decoder's value: equal, and of the
    same types (an integer over 64 bits keeps every digit; it does not become a float)."""
    for given in (frame, frame.encode()):
        value = decode_frame("s", given, LIMITS)
        expected = _STANDARD.decode(frame)
        assert value == expected
        assert json.dumps(value) == json.dumps(expected)  # same types, digits and order


def test_a_refusal_is_worded_by_the_standard_decoder() -> None:
    """A frame msgspec refuses is judged again by the standard decoder, which names the
    place (the reason users saw before)."""
    with pytest.raises(MalformedFrameError) as info:
        decode_frame("s", '{"a": [1, 2,]}', LIMITS)
    assert "not JSON: Expecting value: line 1 column 13" in str(info.value)


def test_random_numbers_decode_as_the_standard_decoder_decodes_them() -> None:
    """Floats written every way (shortest repr, long fractions, exponents) and integers
    of every size come out bit for bit as the standard decoder gives them."""
    rng = random.Random(16)
    numbers = []
    for _ in range(3_000):
        bits = rng.getrandbits(64)
        value = struct.unpack("<d", bits.to_bytes(8, "little"))[0]
        if math.isfinite(value):
            numbers += [repr(value), f"{value:.25e}", f"{value:.17g}"]
        numbers.append(str(rng.randrange(-(10**30), 10**30)))
        numbers.append(f"{rng.randrange(10**20)}.{rng.randrange(10**20):020d}")
    frame = "[" + ",".join(numbers) + "]"
    limits = FrameLimits(max_bytes=10_000_000, max_depth=8)
    value = decode_frame("s", frame, limits)
    expected = _STANDARD.decode(frame)
    assert [(type(v), repr(v)) for v in value] == [(type(v), repr(v)) for v in expected]


def test_a_wide_page_is_measured_on_its_value_and_deep_nesting_inside_it_is_refused() -> None:
    """A page with thousands of brackets but shallow is accepted; the same page with one
    item nested past the limit is refused with the text's depth; a too-deep frame that is
    also not JSON still says it is too deep (the depth is judged first there)."""
    limits = FrameLimits(max_bytes=1_000_000, max_depth=8)
    items = [{"id": i, "geometry": {"coordinates": [1.5, 2.5, [3]]}} for i in range(2_000)]
    page = json.dumps({"features": items})
    assert decode_frame("usgs", page, limits) == {"features": items}
    deep = {"features": [*items[:1_000], {"x": [[[[[[[1]]]]]]]}, *items[1_000:]]}
    with pytest.raises(MalformedFrameError, match="nested 10 deep, over the limit of 8"):
        decode_frame("usgs", json.dumps(deep), limits)
    with pytest.raises(MalformedFrameError, match="nested 12 deep"):
        decode_frame("usgs", "[" * 12 + "]" * 11, limits)
