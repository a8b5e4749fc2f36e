"""Validation of input values against every constraint the model states: required, type, min, max,
pattern and enum. botocore's ParamValidator checks only some of these, so this is our own."""

from __future__ import annotations

import math
import re
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


def validate(shape: Shape, value: Any, path: str) -> None:
    """Raise BadRequestException naming the member and the rule for the first violation found."""
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            raise invalid(path, "must be an object")
        for name in shape.required_members:
            if value.get(name) is None:
                raise BadRequestException(f"Missing required member {_join(path, name)}.")
        members = shape.members
        for name, member_value in value.items():
            member = members.get(name)
            if member is not None and member_value is not None:
                validate(member, member_value, _join(path, name))
        return
    if kind == "list":
        if not isinstance(value, list):
            raise invalid(path, "must be a list")
        _check_size(shape, len(value), path, "items")
        for index, item in enumerate(value):
            if item is None:
                raise invalid(f"{path}[{index}]", "must not be null")
            validate(shape.member, item, f"{path}[{index}]")
        return
    if kind == "map":
        if not isinstance(value, dict):
            raise invalid(path, "must be an object")
        _check_size(shape, len(value), path, "entries")
        for key, item in value.items():
            validate(shape.key, key, f"{path}.<key>")
            if item is not None:
                validate(shape.value, item, f"{path}.{key}")
        return
    if kind == "string":
        if not isinstance(value, str):
            raise invalid(path, "must be a string")
        _check_size(shape, len(value), path, "characters")
        enum = shape.enum
        if enum and value not in enum:
            raise invalid(path, f"must be one of {', '.join(enum)}")
        pattern = shape.metadata.get("pattern")
        if pattern is not None and not compiled_pattern(pattern).fullmatch(value):
            raise invalid(path, f"must match the pattern {pattern}")
        return
    if kind in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            raise invalid(path, "must be an integer")
        _check_range(shape, value, path)
        return
    if kind in ("float", "double"):
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
        ):
            raise invalid(path, "must be a finite number")
        _check_range(shape, value, path)
        return
    if kind == "boolean":
        if not isinstance(value, bool):
            raise invalid(path, "must be a boolean")
        return
    if kind == "timestamp":
        if not isinstance(value, int | float | str) or isinstance(value, bool):
            raise invalid(path, "must be a timestamp")
        return
    if kind == "blob" and not isinstance(value, str):
        raise invalid(path, "must be a base64 string")


def _check_size(shape: Shape, size: int, path: str, unit: str) -> None:
    low = shape.metadata.get("min")
    high = shape.metadata.get("max")
    if low is not None and size < low:
        raise invalid(path, f"must have at least {low} {unit}")
    if high is not None and size > high:
        raise invalid(path, f"must have at most {high} {unit}")


def _check_range(shape: Shape, value: float, path: str) -> None:
    low = shape.metadata.get("min")
    high = shape.metadata.get("max")
    if low is not None and value < low:
        raise invalid(path, f"must be at least {low}")
    if high is not None and value > high:
        raise invalid(path, f"must be at most {high}")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
