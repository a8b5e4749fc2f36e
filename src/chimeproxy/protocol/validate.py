"""Validation of input values against every constraint the model states: required, type, min, max,
pattern and enum. botocore's ParamValidator checks only some of these, so this is our own."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import cache
from typing import Any

from botocore.model import Shape

from chimeproxy.protocol.errors import BadRequestException

# AWS services match a pattern against the whole value (as Java's `matches()` does), so
# `[a-zA-Z0-9 _.-]+` refuses "bad/name". Python's `$` would also accept a trailing newline, so
# every unescaped `$` becomes `\Z`; `\d` must not match digits of other scripts.
_DOLLAR = re.compile(r"(?<!\\)\$")


@cache
def compiled_pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(_DOLLAR.sub(r"\\Z", pattern), re.ASCII)


def invalid(path: str, rule: str) -> BadRequestException:
    return BadRequestException(f"Invalid value for {path}: {rule}.")


Check = Callable[[Any, str], None]


def validate(shape: Shape, value: Any, path: str) -> None:
    """Raise BadRequestException naming the member and the rule for the first violation found."""
    validator(shape)(value, path)


@cache
def validator(shape: Shape) -> Check:
    """`shape`'s checks compiled once into closures: each request then runs them without
    reading the model again (a Get's parsing and validation took 2.8 µs interpreting it, 1.7
    compiled: docs/performance.md, tenth pass). The model has no recursive shapes, so members
    are compiled eagerly."""
    kind = shape.type_name
    if kind == "structure":
        return _structure_validator(shape)
    if kind == "list":
        return _list_validator(shape)
    if kind == "map":
        return _map_validator(shape)
    if kind == "string":
        return _string_validator(shape)
    if kind in ("integer", "long"):
        return _integer_validator(shape)
    if kind in ("float", "double"):
        return _number_validator(shape)
    if kind == "boolean":
        return _boolean_validator
    if kind == "timestamp":
        return _timestamp_validator
    if kind == "blob":
        return _blob_validator
    return nothing_to_check


def _structure_validator(shape: Shape) -> Check:
    required = tuple(shape.required_members)
    members = {name: validator(member) for name, member in shape.members.items()}

    def check(value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise invalid(path, "must be an object")
        for name in required:
            if value.get(name) is None:
                raise BadRequestException(f"Missing required member {_join(path, name)}.")
        for name, member_value in value.items():
            member = members.get(name)
            if member is not None and member_value is not None:
                member(member_value, f"{path}.{name}" if path else name)

    return check


def _list_validator(shape: Shape) -> Check:
    size = _size_check(shape, "items")
    item_check = validator(shape.member)

    def check(value: Any, path: str) -> None:
        if not isinstance(value, list):
            raise invalid(path, "must be a list")
        size(len(value), path)
        for index, item in enumerate(value):
            if item is None:
                raise invalid(f"{path}[{index}]", "must not be null")
            item_check(item, f"{path}[{index}]")

    return check


def _map_validator(shape: Shape) -> Check:
    size = _size_check(shape, "entries")
    key_check = validator(shape.key)
    value_check = validator(shape.value)

    def check(value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise invalid(path, "must be an object")
        size(len(value), path)
        for key, item in value.items():
            key_check(key, f"{path}.<key>")
            if item is not None:
                value_check(item, f"{path}.{key}")

    return check


def _string_validator(shape: Shape) -> Check:
    size = _size_check(shape, "characters")
    enum = frozenset(shape.enum or ())
    enum_rule = f"must be one of {', '.join(shape.enum)}" if enum else ""
    pattern = shape.metadata.get("pattern")
    matches = compiled_pattern(pattern).fullmatch if pattern is not None else None

    def check(value: Any, path: str) -> None:
        if not isinstance(value, str):
            raise invalid(path, "must be a string")
        size(len(value), path)
        if enum and value not in enum:
            raise invalid(path, enum_rule)
        if matches is not None and not matches(value):
            raise invalid(path, f"must match the pattern {pattern}")

    return check


def _integer_validator(shape: Shape) -> Check:
    in_range = _range_check(shape)

    def check(value: Any, path: str) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise invalid(path, "must be an integer")
        in_range(value, path)

    return check


def _number_validator(shape: Shape) -> Check:
    in_range = _range_check(shape)

    def check(value: Any, path: str) -> None:
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
        ):
            raise invalid(path, "must be a finite number")
        in_range(value, path)

    return check


def _boolean_validator(value: Any, path: str) -> None:
    if not isinstance(value, bool):
        raise invalid(path, "must be a boolean")


def _timestamp_validator(value: Any, path: str) -> None:
    if not isinstance(value, int | float | str) or isinstance(value, bool):
        raise invalid(path, "must be a timestamp")


def _blob_validator(value: Any, path: str) -> None:
    if not isinstance(value, str):
        raise invalid(path, "must be a base64 string")


def nothing_to_check(value: Any, path: str) -> None:
    return None


def _size_check(shape: Shape, unit: str) -> Callable[[float, str], None]:
    return _bounds_check(shape, f"must have at least {{}} {unit}", f"must have at most {{}} {unit}")


def _range_check(shape: Shape) -> Callable[[float, str], None]:
    return _bounds_check(shape, "must be at least {}", "must be at most {}")


def _bounds_check(shape: Shape, too_low: str, too_high: str) -> Callable[[float, str], None]:
    """The model's `min` and `max` of `shape`, on a size or a value; the rules name the bound."""
    low = shape.metadata.get("min")
    high = shape.metadata.get("max")

    def check(value: float, path: str) -> None:
        if low is not None and value < low:
            raise invalid(path, too_low.format(low))
        if high is not None and value > high:
            raise invalid(path, too_high.format(high))

    return check


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
