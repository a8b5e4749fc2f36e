"""Serialize output members to the wire: every member present, `null` when unset, keys in
alphabetical order, timestamps as ISO 8601 with milliseconds and `Z`."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from botocore.model import OperationModel, Shape

Encoder = Callable[[Any], Any]


def format_timestamp(value: int | datetime) -> str:
    """Milliseconds since the epoch (or an aware datetime) as `2020-04-15T16:10:10.288Z`."""
    if value.__class__ is not int:
        if isinstance(value, datetime):
            value = int(value.timestamp() * 1000)
        value = int(value)
    return format_millis(value)  # type: ignore[arg-type]


def format_millis(value: int) -> str:
    """`format_timestamp` of milliseconds already an int: what a row holds, on the hot paths."""
    seconds = value // 1000
    prefix = _second_prefixes.get(seconds) or _second_prefix(seconds)
    return prefix + _MILLIS[value - seconds * 1000]


# `.mmmZ` for each millisecond, and `YYYY-MM-DDTHH:MM:SS` for the seconds seen last: a page
# of 100 sessions has 300 timestamps, which this turns into two lookups and a concatenation
# each (docs/performance.md). A second not seen yet (a Get of any session) is put together from
# its day's date and two more tables, without formatting.
_MILLIS = tuple(f".{millis:03d}Z" for millis in range(1000))
_CLOCK = tuple(f"{hour:02d}:{minute:02d}:" for hour in range(24) for minute in range(60))
_SECONDS = tuple(f"{second:02d}" for second in range(60))
_second_prefixes: dict[int, str] = {}
_SECONDS_KEPT = 65_536


def _second_prefix(seconds: int) -> str:
    if len(_second_prefixes) >= _SECONDS_KEPT:
        _second_prefixes.clear()
    days, second_of_day = divmod(seconds, 86_400)
    minute_of_day, second = divmod(second_of_day, 60)
    prefix = _date_prefix(days) + _CLOCK[minute_of_day] + _SECONDS[second]
    _second_prefixes[seconds] = prefix
    return prefix


@functools.lru_cache(maxsize=4096)
def _date_prefix(days: int) -> str:
    """`YYYY-MM-DDT` of a day since the epoch: strftime once per day, not per timestamp."""
    return time.strftime("%Y-%m-%dT", time.gmtime(days * 86_400))


class Encoded(dict[str, Any]):
    """An output already in its wire form, all the way down (every member present, in order,
    timestamps formatted): built straight from rows on the hottest paths (Get and List, from
    shapes.proxy_session_wire), it is passed through as it is, so that what it holds can be
    plain dicts. Tests hold it to what the model-driven encoder makes of the ordinary shape."""

    __slots__ = ()


def _identity(value: Any) -> Any:
    return value


def _encoder(shape: Shape) -> Encoder:
    kind = shape.type_name
    if kind == "structure":
        members = sorted(
            (name, _encoder(member))
            for name, member in shape.members.items()
            if member.serialization.get("location") is None
        )
        names = tuple(name for name, _ in members)
        # Every member is copied in order by one comprehension; only those that need it
        # (timestamps, lists, structures) are converted after, in place.
        converted = tuple((name, encode) for name, encode in members if encode is not _identity)

        def encode_structure(value: dict[str, Any]) -> dict[str, Any]:
            if value.__class__ is Encoded:
                return value
            get = value.get
            out = {name: get(name) for name in names}
            for name, encode in converted:
                item = out[name]
                if item is not None:
                    out[name] = encode(item)
            return out

        return encode_structure
    if kind == "list":
        encode_item = _encoder(shape.member)
        if encode_item is _identity:
            return list
        return lambda value: [encode_item(item) for item in value]
    if kind == "map":
        encode_value = _encoder(shape.value)
        return lambda value: {k: encode_value(v) for k, v in sorted(value.items())}
    if kind == "timestamp":
        return format_timestamp
    return _identity


class OutputSerializer:
    """Compiled encoders, one per operation output shape."""

    def __init__(self) -> None:
        self._encoders: dict[str, Encoder] = {}

    def body(self, operation: OperationModel, output: dict[str, Any] | None) -> bytes:
        shape = operation.output_shape
        if shape is None or not shape.members:
            return b""
        encode = self._encoders.get(operation.name)
        if encode is None:
            encode = self._encoders[operation.name] = _encoder(shape)
        return orjson.dumps(encode(output or {}))
