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
    if isinstance(value, datetime):
        value = int(value.timestamp() * 1000)
    seconds, millis = divmod(value, 1000)
    minutes, seconds = divmod(seconds, 60)
    return f"{_minute_prefix(minutes)}{seconds:02d}.{millis:03d}Z"


@functools.lru_cache(maxsize=4096)
def _minute_prefix(minutes: int) -> str:
    """`YYYY-MM-DDTHH:MM:` of a minute since the epoch, kept for the minutes seen last: the
    timestamps of a page of sessions (300 in a page of 100) and of the live sessions cluster
    in a few minutes (docs/performance.md)."""
    days, minute_of_day = divmod(minutes, 1440)
    hours, minute = divmod(minute_of_day, 60)
    return f"{_date_prefix(days)}{hours:02d}:{minute:02d}:"


@functools.lru_cache(maxsize=4096)
def _date_prefix(days: int) -> str:
    """`YYYY-MM-DDT` of a day since the epoch: strftime once per day, not per timestamp."""
    return time.strftime("%Y-%m-%dT", time.gmtime(days * 86_400))


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
