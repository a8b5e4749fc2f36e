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
from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson
from botocore.model import OperationModel, Shape

from chimeproxy.protocol.errors import BadRequestException, UnsupportedMediaTypeException
from chimeproxy.protocol.validate import Check, invalid, nothing_to_check, validator

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


@dataclass(frozen=True, slots=True)
class _InputPlan:
    """Where each input member of an operation comes from, and its checks, read from the model
    once per operation instead of on every request."""

    uri: tuple[tuple[str, str, Shape], ...]  # (member, label, shape)
    query: tuple[tuple[str, str, Shape], ...]  # (member, parameter, shape)
    header: tuple[tuple[str, str, Shape], ...]  # (member, lower-case header name, shape)
    body: tuple[str, ...]  # members in the JSON body
    body_required: bool  # whether a body member is required
    validate: Check
    check_values: Check


@cache
def _plan(operation: OperationModel) -> _InputPlan | None:
    shape = operation.input_shape
    if shape is None:
        return None
    uri: list[tuple[str, str, Shape]] = []
    query: list[tuple[str, str, Shape]] = []
    header: list[tuple[str, str, Shape]] = []
    body: list[str] = []
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        wire_name = member.serialization.get("name", name)
        if location == "uri":
            uri.append((name, wire_name, member))
        elif location == "querystring":
            query.append((name, wire_name, member))
        elif location == "header":
            header.append((name, wire_name.lower(), member))
        else:
            body.append(name)
    return _InputPlan(
        tuple(uri),
        tuple(query),
        tuple(header),
        tuple(body),
        bool(set(shape.required_members) & set(body)),
        validator(shape),
        _value_checker(shape),
    )


def parse_input(
    operation: OperationModel,
    labels: Mapping[str, str],
    query: list[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
) -> dict[str, Any]:
    """Collect and validate the input members; raise BadRequestException naming what is wrong."""
    plan = _plan(operation)
    if plan is None:
        return {}
    params: dict[str, Any] = {}
    for name, label, member in plan.uri:
        if label in labels:
            params[name] = _convert(member, labels[label], name)
    for name, parameter, member in plan.query:
        values = [v for k, v in query if k == parameter]
        if values:
            if member.type_name == "list":
                params[name] = [_convert_query(member.member, v, name) for v in values]
            else:
                params[name] = _convert_query(member, values[-1], name)
    for name, header, member in plan.header:
        if header in headers:
            params[name] = _convert(member, headers[header], name)
    if plan.body:
        if body.strip():
            check_content_type(headers.get("content-type"))
        document = parse_json_body(body, required=plan.body_required)
        for name in plan.body:
            value = document.get(name)
            if value is not None:
                params[name] = value
    plan.validate(params, "")
    plan.check_values(params, "")
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


@cache
def _value_checker(shape: Shape) -> Check:
    """What `validate` leaves to the wire layer, compiled as `validator` is: integers within the
    member type's range (the database stores 64 bits) and strings free of NUL (PostgreSQL text
    cannot hold one)."""
    kind = shape.type_name
    if kind == "structure":
        members = tuple((name, _value_checker(member)) for name, member in shape.members.items())

        def check_structure(value: Any, path: str) -> None:
            if isinstance(value, dict):
                for name, check in members:
                    member_value = value.get(name)
                    if member_value is not None:
                        check(member_value, f"{path}.{name}" if path else name)

        return check_structure
    if kind == "list":
        check_item = _value_checker(shape.member)

        def check_list(value: Any, path: str) -> None:
            if isinstance(value, list):
                for index, item in enumerate(value):
                    check_item(item, f"{path}[{index}]")

        return check_list
    if kind == "map":
        check_key = _value_checker(shape.key)
        check_value = _value_checker(shape.value)

        def check_map(value: Any, path: str) -> None:
            if isinstance(value, dict):
                for key, item in value.items():
                    check_key(key, f"{path}.<key>")
                    check_value(item, f"{path}.<value>")

        return check_map
    if kind == "string":
        return _check_no_nul
    if kind in _INT_RANGES:
        low, high, bits = _INT_RANGES[kind]

        def check_integer(value: Any, path: str) -> None:
            if isinstance(value, int) and not low <= value <= high:
                raise invalid(path, f"must be from {low} to {high} (a {bits}-bit integer)")

        return check_integer
    return nothing_to_check


def _check_no_nul(value: Any, path: str) -> None:
    if isinstance(value, str) and "\x00" in value:
        raise invalid(path, "must not contain NUL characters")
