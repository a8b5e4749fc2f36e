"""Turn a matched HTTP request into an operation's input members, from uri, querystring, header
and body, converting query and header strings to the member's modelled type.

Hostile input ends here as a 4xx: malformed or non-UTF-8 JSON, duplicate object keys, nesting
deeper than MAX_JSON_DEPTH, numbers outside the member's 32/64-bit range, NUL characters, query
values that were not valid percent-encoded UTF-8 and bodies of a media type other than JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import orjson
from botocore.model import OperationModel, Shape

from chimeproxy.protocol.errors import BadRequestException, UnsupportedMediaTypeException
from chimeproxy.protocol.validate import invalid, validate

_INTEGER = re.compile(r"-?[0-9]{1,18}\Z")
MAX_JSON_DEPTH = 32

# Media types a JSON body may be sent as: what the AWS SDKs and the CLI send for rest-json
# (application/json, or nothing), the awsJson types some hand-written clients copy, and any
# `+json` structured suffix. Parameters such as `charset=utf-8` are ignored: JSON is UTF-8.
JSON_MEDIA_TYPES = frozenset(
    ("application/json", "application/x-amz-json-1.0", "application/x-amz-json-1.1")
)

# The range of the model's `integer` (Java int) and `long` (Java long) types, and their bits.
_INT_RANGES = {"integer": (-(2**31), 2**31 - 1, 32), "long": (-(2**63), 2**63 - 1, 64)}

# A JSON string token, escapes included; what remains outside them holds one ':' per key.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)

# urllib's query parsing turns bytes that are not UTF-8 into U+FFFD; no member of the model
# legitimately contains it, so its presence means the client sent undecodable bytes.
_REPLACEMENT = "\ufffd"


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
                    params[name] = [_convert_query(member.member, v, name) for v in values]
                else:
                    params[name] = _convert_query(member, values[-1], name)
        elif location == "header":
            if wire_name.lower() in headers:
                params[name] = _convert(member, headers[wire_name.lower()], name)
        else:
            body_members[name] = member
    if body_members:
        if body.strip():
            check_content_type(headers.get("content-type"))
        document = parse_json_body(
            body, required=bool(set(shape.required_members) & body_members.keys())
        )
        for name in body_members:
            value = document.get(name)
            if value is not None:
                params[name] = value
    validate(shape, params, "")
    _check_values(shape, params, "")
    return params


def check_content_type(content_type: str | None) -> None:
    """Accept a JSON body sent as JSON or with no Content-Type; 415 for any other media type."""
    if content_type is None:
        return
    media_type = content_type.partition(";")[0].strip().lower()
    if not media_type or media_type in JSON_MEDIA_TYPES or media_type.endswith("+json"):
        return
    raise UnsupportedMediaTypeException(
        f"Unsupported Content-Type {media_type[:64]!r}: send the request body as application/json."
    )


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
    depth, keys = _measure(document)
    if depth > MAX_JSON_DEPTH:
        raise BadRequestException(
            f"The request body is nested deeper than {MAX_JSON_DEPTH} levels."
        )
    # orjson keeps the last of duplicate keys silently; a count of the key separators in the
    # text tells cheaply whether any object lost one, and only then is the body parsed again
    # to name the key.
    if keys != _JSON_STRING.sub(b'""', body).count(b":"):
        _raise_duplicate_key(body)
    return document


def _measure(document: Any) -> tuple[int, int]:
    """(nesting depth, up to MAX_JSON_DEPTH + 1; number of keys in all objects)."""
    depth = keys = 0
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict):
            keys += len(value)
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            depth = max(depth, level)
            continue
        depth = max(depth, level)
        if level > MAX_JSON_DEPTH:
            # Deep enough to refuse; keys need no exact count then.
            return level, keys
        stack.extend((child, level + 1) for child in children)
    return depth, keys


def _raise_duplicate_key(body: bytes) -> None:
    def refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise BadRequestException(
                    f"The request body has the key {key[:64]!r} more than once in one object; "
                    "send each member once."
                )
            seen.add(key)
        return dict(pairs)

    try:
        json.loads(body, object_pairs_hook=refuse_duplicates)
    except ValueError as exc:  # also json's limit on the digits of an integer
        raise BadRequestException("The request body is not valid JSON.") from exc
    # orjson and json disagree about this body; refuse it rather than guess.
    raise BadRequestException("The request body is not valid JSON.")


def _convert_query(shape: Shape, raw: str, name: str) -> Any:
    if _REPLACEMENT in raw:
        raise BadRequestException(f"Query parameter {name} is not valid percent-encoded UTF-8.")
    return _convert(shape, raw, name)


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


def _check_values(shape: Shape, value: Any, path: str) -> None:
    """What `validate` leaves to the wire layer: integers within the member type's range (the
    database stores 64 bits) and strings free of NUL (PostgreSQL text cannot hold one)."""
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        for name, member in shape.members.items():
            member_value = value.get(name)
            if member_value is not None:
                _check_values(member, member_value, f"{path}.{name}" if path else name)
    elif kind == "list" and isinstance(value, list):
        for index, item in enumerate(value):
            _check_values(shape.member, item, f"{path}[{index}]")
    elif kind == "map" and isinstance(value, dict):
        for key, item in value.items():
            _check_values(shape.key, key, f"{path}.<key>")
            _check_values(shape.value, item, f"{path}.<value>")
    elif kind == "string" and isinstance(value, str):
        if "\x00" in value:
            raise invalid(path, "must not contain NUL characters")
    elif kind in _INT_RANGES and isinstance(value, int):
        low, high, bits = _INT_RANGES[kind]
        if not low <= value <= high:
            raise invalid(path, f"must be from {low} to {high} (a {bits}-bit integer)")
