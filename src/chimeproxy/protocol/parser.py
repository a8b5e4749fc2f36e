"""Turn a matched HTTP request into an operation's input members, from uri, querystring, header
and body, converting query and header strings to the member's modelled type."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson
from botocore.model import OperationModel, Shape

from chimeproxy.protocol.errors import BadRequestException
from chimeproxy.protocol.validate import invalid, validate

_INTEGER = re.compile(r"-?[0-9]{1,18}\Z")
MAX_JSON_DEPTH = 32


def parse_input(
    operation: OperationModel,
    labels: Mapping[str, str],
    query: list[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
) -> dict[str, Any]:
    """Collect and validate the input members; raise BadRequestException naming what is wrong."""
    shape = operation.input_shape
    if shape is None:
        return {}
    params: dict[str, Any] = {}
    body_members: dict[str, Shape] = {}
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        wire_name = member.serialization.get("name", name)
        if location == "uri":
            if wire_name in labels:
                params[name] = _convert(member, labels[wire_name], name)
        elif location == "querystring":
            values = [v for k, v in query if k == wire_name]
            if values:
                if member.type_name == "list":
                    params[name] = [_convert(member.member, v, name) for v in values]
                else:
                    params[name] = _convert(member, values[-1], name)
        elif location == "header":
            if wire_name.lower() in headers:
                params[name] = _convert(member, headers[wire_name.lower()], name)
        else:
            body_members[name] = member
    if body_members:
        document = parse_json_body(
            body, required=bool(set(shape.required_members) & body_members.keys())
        )
        for name in body_members:
            value = document.get(name)
            if value is not None:
                params[name] = value
    validate(shape, params, "")
    return params


def parse_json_body(body: bytes, *, required: bool) -> dict[str, Any]:
    """Decode a JSON object body; an empty body is an empty object unless members are required."""
    if not body.strip():
        if required:
            raise BadRequestException("The request body is empty, but this operation requires one.")
        return {}
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequestException(f"The request body is not valid JSON: {exc.msg}.") from exc
    if not isinstance(document, dict):
        raise BadRequestException("The request body must be a JSON object.")
    if _depth(document) > MAX_JSON_DEPTH:
        raise BadRequestException(
            f"The request body is nested deeper than {MAX_JSON_DEPTH} levels."
        )
    return document


def _depth(value: Any, level: int = 1) -> int:
    if level > MAX_JSON_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level)
    return level


def _convert(shape: Shape, raw: str, name: str) -> Any:
    kind = shape.type_name
    if kind in ("integer", "long"):
        if not _INTEGER.match(raw):
            raise invalid(name, "must be an integer")
        return int(raw)
    if kind == "boolean":
        if raw not in ("true", "false"):
            raise invalid(name, "must be true or false")
        return raw == "true"
    return raw
