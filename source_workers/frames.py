"""Untrusted input: provider frames into JSON values, within limits.

Every websocket frame and HTTP body passes :func:`decode_frame` before a
resource sees it. It refuses, with :class:`MalformedFrameError` naming the
source and the reason:

* frames over ``max_bytes`` (the websocket transport also refuses them at the
  protocol level, before they are buffered whole);
* bytes that are not UTF-8, or text that is not JSON;
* ``NaN``, ``Infinity`` and ``-Infinity`` (not JSON, and poison for ClickHouse),
  and numbers such as ``1e999`` that overflow to infinity;
* nesting deeper than ``max_depth`` (counted only when the frame has more
  brackets than that, so an ordinary frame pays two ``str.count`` calls; then
  on the decoded value, whose containers are far fewer than the text's
  characters, and the text is scanned only to word a refusal).

Parsing is msgspec's (this function runs at 1.8 times a bare ``json.loads``'s
rate on Coinbase frames: ``bench/source.py``),
with the standard library's decoder as the authority: a frame msgspec refuses
is parsed again by the standard decoder, which accepts what it accepted before
(a lone surrogate in a string, say) and words the refusal. msgspec keeps every
digit of an integer beyond 64 bits and rounds floats correctly, so the value
is the one the standard decoder gives, only sooner (``tests/unit/test_frames.py``
holds the cases).

Pure code.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, NoReturn

import msgspec

from foundation.errors import MalformedFrameError


@dataclass(frozen=True, slots=True)
class FrameLimits:
    max_bytes: int = 1_048_576
    max_depth: int = 32


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not allowed")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} overflows to infinity")
    return value


_decoder = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)
_fast_decode = msgspec.json.Decoder().decode
_FastError = msgspec.DecodeError


def frame_bytes(frame: str | bytes) -> bytes:
    """The frame as bytes, for a dead letter."""
    return frame.encode("utf-8", "replace") if isinstance(frame, str) else bytes(frame)


def malformed(
    source: str, frame: str | bytes, reason: str, resource: str | None = None
) -> MalformedFrameError:
    """The error for a frame that cannot be used (kept whole, for its dead letter)."""
    where = f"source {source}" + (f", resource {resource}" if resource else "")
    return MalformedFrameError(
        f"{where}: frame refused: {reason}",
        source=source,
        resource=resource,
        reason=reason,
        frame=frame_bytes(frame),
    )


def decode_frame(source: str, frame: str | bytes, limits: FrameLimits) -> Any:
    """The JSON value of one frame; raises :class:`MalformedFrameError`."""
    if isinstance(frame, bytes | bytearray):
        size = len(frame)
    else:  # UTF-8 takes at most 4 bytes a character: encode only when it could matter
        size = len(frame) if len(frame) * 4 <= limits.max_bytes else len(frame.encode("utf-8"))
    if size > limits.max_bytes:
        raise malformed(source, frame[:4096], f"{size} bytes, over the limit of {limits.max_bytes}")
    if isinstance(frame, bytes | bytearray):
        try:
            text = frame.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise malformed(source, frame, f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    else:
        text = frame
    bracketed = text.count("[") + text.count("{") > limits.max_depth
    try:
        value = _fast_decode(text)
    except (_FastError, RecursionError):
        pass  # the standard decoder decides, and says why
    else:
        # The depth of the value, walked over its containers: a page of thousands of
        # brackets costs a fraction of a scan of its text (which gives the figure).
        if bracketed and _deeper_than(value, limits.max_depth):
            raise _too_deep(source, frame, json_depth(text), limits)
        return value
    if bracketed:
        depth = json_depth(text)
        if depth > limits.max_depth:
            raise _too_deep(source, frame, depth, limits)
    try:
        return _decoder.decode(text)
    except (ValueError, RecursionError) as exc:
        raise malformed(source, frame, f"not JSON: {exc}") from None


def _too_deep(
    source: str, frame: str | bytes, depth: int, limits: FrameLimits
) -> MalformedFrameError:
    return malformed(
        source, frame, f"JSON nested {depth} deep, over the limit of {limits.max_depth}"
    )


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether a decoded JSON value nests containers more than ``limit`` deep."""
    if type(value) is not dict and type(value) is not list:
        return False
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        for child in node.values() if type(node) is dict else node:
            if type(child) is dict or type(child) is list:
                stack.append((child, depth + 1))
    return False


def json_depth(text: str) -> int:
    """Deepest bracket nesting of a JSON text, skipping brackets inside strings."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest
