"""Property-based fuzzing of every implemented operation against a real strict-mode server.

Requests come from the botocore model: valid members, members that break a constraint or have
the wrong JSON type, required members left out and unknown members added, with ids drawn mostly
from real resources so that handlers run past their lookups. Each request is SigV4-signed as
botocore signs, so every answer must get past authentication; and each answer must be a 2xx
that matches the output shape, or a 4xx error that botocore parses. Never a 5xx.

CHIMEPROXY_FUZZ_EXAMPLES sets the number of requests (default 2,000, spread evenly over the
operations); generation is derandomized, so a run is repeatable.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.model import OperationModel, Shape
from botocore.parsers import RestJSONParser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chimeproxy.operations import load_operations
from chimeproxy.operations.registry import OPERATIONS
from chimeproxy.protocol.errors import BadRequestException
from chimeproxy.protocol.model import service_model, success_status
from chimeproxy.protocol.validate import compiled_pattern, validate
from chimeproxy.testing import ChimeProxyServer
from tests.conftest import start_strict_server
from tests.integration.helpers import client_for, order_numbers

EXAMPLES = int(os.environ.get("CHIMEPROXY_FUZZ_EXAMPLES", "2000"))
KEY, SECRET, ACCOUNT = "AKIDFUZZ000000000001", "fuzz-secret", "777777777777"
REGION = "us-east-1"

load_operations()
MODEL = service_model()
NAMES = sorted(OPERATIONS)
PER_OPERATION = max(1, math.ceil(EXAMPLES / len(NAMES)))
SERVICE_ERRORS = {
    e.name for n in MODEL.operation_names for e in MODEL.operation_model(n).error_shapes
}
# Answered by the front door rather than an operation: a generated path that no longer routes.
FRONT_DOOR_ERRORS = {"UnknownOperationException"}
ERROR_CODES = set(MODEL.shape_for("ErrorCode").enum) | {"UnknownOperation"}
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
SENT: Counter[str] = Counter()
ANSWERS: Counter[tuple[str, int]] = Counter()  # (operation, status): how deep the fuzzing got

FUZZ_SETTINGS = settings(
    max_examples=PER_OPERATION,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


# The world the ids come from.


@dataclass
class World:
    """Real resources of the fuzzing account; most generated ids are drawn from these."""

    connectors: list[str] = field(default_factory=list)
    numbers: list[str] = field(default_factory=list)
    participants: list[str] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)
    orders: list[str] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)  # a NextToken of each listing
    operation: str = ""  # the operation being fuzzed, whose NextToken is real
    area_codes: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChimeProxyServer]:
    directory = tmp_path_factory.mktemp("fuzz")
    server = start_strict_server(directory, KEY, SECRET, ACCOUNT, "--log-level", "warning")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http(fuzz_server: ChimeProxyServer) -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


# Each operation's world orders its numbers in one of these, a few worlds per area code.
_area_codes = itertools.cycle(["206", "425", "253", "360", "509", "503", "541", "971", "208"])


def build_world(server: ChimeProxyServer) -> World:
    """Two voice connectors with proxy configurations (one with numbers and sessions), numbers
    in every state, an order, and a NextToken of each listing."""
    client = client_for(server, (KEY, SECRET, ACCOUNT))
    area = next(_area_codes)
    numbers = order_numbers(client, 5, AreaCode=area)
    connectors = [
        client.create_voice_connector(Name=f"fuzz {i}", RequireEncryption=False)["VoiceConnector"][
            "VoiceConnectorId"
        ]
        for i in range(2)
    ]
    client.associate_phone_numbers_with_voice_connector(
        VoiceConnectorId=connectors[0], E164PhoneNumbers=numbers[:3]
    )
    for connector in connectors:  # the second one's has no sessions: it can be deleted
        client.put_voice_connector_proxy(
            VoiceConnectorId=connector,
            DefaultSessionExpiryMinutes=60,
            PhoneNumberPoolCountries=["US"],
        )
    client.delete_phone_number(PhoneNumberId=numbers[4])  # one in the deletion queue
    participants = [f"+1{area}555{n:04d}" for n in range(150, 162)]
    sessions = [
        client.create_proxy_session(
            VoiceConnectorId=connectors[0],
            ParticipantPhoneNumbers=participants[i : i + 2],
            Capabilities=["Voice", "SMS"],
        )["ProxySession"]["ProxySessionId"]
        for i in (0, 2)
    ]
    orders = [
        o["PhoneNumberOrderId"] for o in client.list_phone_number_orders()["PhoneNumberOrders"]
    ]
    tokens = {
        "ListProxySessions": client.list_proxy_sessions(
            VoiceConnectorId=connectors[0], MaxResults=1
        ).get("NextToken"),
        "ListVoiceConnectors": client.list_voice_connectors(MaxResults=1).get("NextToken"),
        "ListPhoneNumbers": client.list_phone_numbers(MaxResults=1).get("NextToken"),
        "ListPhoneNumberOrders": client.list_phone_number_orders(MaxResults=1).get("NextToken"),
        "SearchAvailablePhoneNumbers": client.search_available_phone_numbers(
            Country="US", MaxResults=1
        ).get("NextToken"),
    }
    tokens = {listing: token for listing, token in tokens.items() if token}
    return World(
        connectors=connectors,
        numbers=numbers,
        participants=participants,
        sessions=sessions,
        orders=orders,
        tokens=tokens,
        area_codes=[area],
    )


# Values from the model.

ODD_STRINGS = ["", " ", "\x00", "a\x00b", "\u202e", "💥", "é" * 3, "../..", "%2F", "%", "+",
               "' OR 1=1 --", "<x>", "null", "true", "0", "-1", "1e400", "9" * 25, "\t\n",
               "+1 206 555 0100", "+12065550100\n", "\uff35\uff4e\uff49"]  # fmt: skip
WRONG_TYPES = [None, True, False, 0, -1, 7, 1.5, -0.0, 2**31, 2**63, 2**64 + 1, 10**30,
               float("nan"), float("inf"), "x", "", [], [1, "a"], {}, {"a": 1}, [[[[]]]]]  # fmt: skip


def string_strategy(shape: Shape) -> st.SearchStrategy[str]:
    """Strings the model allows: an enum value, a match of the pattern, or any text in range."""
    if shape.enum:
        return st.sampled_from(shape.enum)
    low = shape.metadata.get("min", 0)
    high = shape.metadata.get("max")
    pattern = shape.metadata.get("pattern")
    if pattern is not None:
        generated = st.from_regex(compiled_pattern(pattern), fullmatch=True)
        return generated.filter(lambda s: low <= len(s) <= (high if high is not None else 10**9))
    return st.text(min_size=low, max_size=min(high if high is not None else 40, max(low, 40)))


def valid(shape: Shape, hint: str, world: World) -> st.SearchStrategy[Any]:
    """Values that meet every constraint the model states, mostly real ids for id members."""
    real = real_values(shape, hint, world)
    generic = generic_valid(shape, hint, world)
    if real is None:
        return generic
    # one_of() would pick each branch about equally; real ids should win four times in five.
    return st.sampled_from([real] * 4 + [generic]).flatmap(lambda strategy: strategy)


def real_values(shape: Shape, hint: str, world: World) -> st.SearchStrategy[Any] | None:
    """Values the handlers accept past their own checks: existing ids, sensible numbers."""
    kind = shape.type_name
    if kind == "list":
        if hint == "ParticipantPhoneNumbers":
            return st.lists(
                st.sampled_from(world.participants), min_size=2, max_size=2, unique=True
            )
        item = real_values(shape.member, hint, world)
        if hint == "Capabilities":
            item = st.sampled_from(shape.member.enum)
        if item is None:
            return None
        return st.lists(item, min_size=1, max_size=min(shape.metadata.get("max", 4), 4))
    if hint == "GeoMatchParams":
        return st.just({"Country": "US", "AreaCode": world.area_codes[0]})
    choices: dict[str, list[Any]] = {
        "VoiceConnectorId": world.connectors,
        "FilterValue": world.connectors,
        "ProxySessionId": world.sessions,
        "PhoneNumberOrderId": world.orders,
        "PhoneNumberId": world.numbers + [n.lstrip("+") for n in world.numbers],
        "E164PhoneNumbers": world.numbers + [n.lstrip("+") for n in world.numbers],
        "FallBackPhoneNumber": world.participants,
        "NextToken": [world.tokens[world.operation]] if world.operation in world.tokens else [],
        "AreaCode": world.area_codes,
        "Country": ["US"],
        "PhoneNumberPoolCountries": ["US", "CA", "GB"],
        "ExpiryMinutes": [1, 5, 60, 720],
        "DefaultSessionExpiryMinutes": [1, 5, 60, 720],
        "State": ["WA", "OR"],
    }
    values = choices.get(hint)
    return st.sampled_from(values) if values else None


def generic_valid(shape: Shape, hint: str, world: World) -> st.SearchStrategy[Any]:
    """Any value of the shape's type within its constraints, from the model alone."""
    kind = shape.type_name
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if kind == "string":
        return string_strategy(shape)
    if kind in ("integer", "long"):
        lowest = low if low is not None else -5
        return st.integers(lowest, high if high is not None else lowest + 2000)
    if kind == "boolean":
        return st.booleans()
    if kind == "list":
        return st.lists(
            valid(shape.member, hint, world),
            min_size=low or 0,
            max_size=min(high if high is not None else 5, max(low or 0, 5)),
        )
    if kind == "structure":
        required = set(shape.required_members)
        return st.fixed_dictionaries(
            {n: valid(m, n, world) for n, m in shape.members.items() if n in required},
            optional={n: valid(m, n, world) for n, m in shape.members.items() if n not in required},
        )
    if kind == "map":
        return st.dictionaries(
            valid(shape.key, hint, world), valid(shape.value, hint, world), max_size=3
        )
    return st.sampled_from(WRONG_TYPES)


def invalid(shape: Shape, hint: str, world: World) -> st.SearchStrategy[Any]:
    """Values that break a constraint, or are not of the member's type at all."""
    kind = shape.type_name
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    options: list[st.SearchStrategy[Any]] = [st.sampled_from(WRONG_TYPES)]
    if kind == "string":
        options.append(st.sampled_from(ODD_STRINGS))
        options.append(st.text(max_size=60))
        if high is not None and high < 2000:
            options.append(st.just("a" * (high + 1)))
        if low:
            options.append(st.just("a" * (low - 1)))
    elif kind in ("integer", "long"):
        edges = [v for v in (low - 1 if low is not None else None, high + 1 if high else None) if v]
        options.append(st.sampled_from([*edges, 0, -(2**31) - 1, 2**31, 2**62, -(2**63) - 1]))
    elif kind == "list":
        item = st.one_of(valid(shape.member, hint, world), invalid(shape.member, hint, world))
        size = high + 1 if high is not None and high < 200 else 0
        options.append(st.lists(item, min_size=size, max_size=size + 3))
        if low:
            options.append(st.lists(item, max_size=low - 1))
    elif kind == "structure":
        members = {n: member_value(m, n, world) for n, m in shape.members.items()}
        options.append(st.fixed_dictionaries({}, optional=members))
    return st.one_of(options)


def member_value(shape: Shape, hint: str, world: World) -> st.SearchStrategy[Any]:
    """Three times in four a valid value, else an invalid one."""
    return st.one_of([valid(shape, hint, world)] * 3 + [invalid(shape, hint, world)])


@dataclass(frozen=True)
class Wire:
    method: str
    url: str
    body: bytes
    headers: dict[str, str]


def as_text(value: Any) -> str:
    """How a value appears in a path or query string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def encode(text: str) -> str:
    return quote(text.encode("utf-8", "surrogatepass"), safe="-_.~")


LEAVE_OUT = object()


def member_choices(
    shape: Shape, name: str, required: bool, world: World
) -> dict[str, st.SearchStrategy[Any]]:
    """The value of one member in each kind of request (LEAVE_OUT: not sent); built once per
    operation, since building strategies (regexes above all) costs more than drawing from them."""
    good = valid(shape, name, world)
    bad = invalid(shape, name, world)
    absent = st.just(LEAVE_OUT)
    return {
        "chaos": st.one_of(good, bad, absent),
        "broken": st.one_of(bad, bad, absent),
        "normal": good if required else st.one_of(good, absent),
    }


# How a request is made: every member valid (reaches the handlers' own logic), exactly one
# member broken or left out (each rule alone), or every member independently anything.
MODES = ["valid"] * 5 + ["one broken"] * 4 + ["chaos"]


def requests(operation: OperationModel, world: World, url: str) -> st.SearchStrategy[Wire]:
    """HTTP requests for `operation` as a client (or a hostile caller) could send them."""
    shape = operation.input_shape
    members = list(shape.members.items()) if shape else []
    choices = {
        name: member_choices(member, name, name in shape.required_members, world)
        for name, member in members
    }
    has_body = any(m.serialization.get("location") is None for _, m in members)
    extras = st.dictionaries(
        st.text(min_size=1, max_size=12), st.sampled_from(WRONG_TYPES), max_size=3
    )

    @st.composite
    def build(draw: st.DrawFn) -> Wire:
        path, _, fixed_query = operation.http["requestUri"].partition("?")
        query = [(k, v) for k, _, v in (p.partition("=") for p in fixed_query.split("&") if p)]
        mode = draw(st.sampled_from(MODES))
        broken = draw(st.sampled_from([name for name, _ in members])) if members else None
        body: dict[str, Any] = {}
        for name, member in members:
            location = member.serialization.get("location")
            wire_name = member.serialization.get("name", name)
            kind = "normal"
            if mode == "chaos" or (mode == "one broken" and name == broken):
                kind = "chaos" if mode == "chaos" else "broken"
            value = draw(choices[name][kind])
            if value is LEAVE_OUT and location != "uri":
                continue
            if location == "uri":
                # A path label is never empty: an empty one makes another operation's path.
                text = "" if value is LEAVE_OUT else encode(as_text(value)).replace("/", "%2F")
                path = re.sub(
                    r"\{" + re.escape(wire_name) + r"\+?\}", lambda _, t=text or "%20": t, path
                )
            elif location == "querystring":
                values = value if isinstance(value, list) else [value]
                query += [(wire_name, as_text(v)) for v in values]
            elif location is None:
                body[name] = value
        if mode != "valid" and draw(st.integers(0, 3)) == 0:
            extra = draw(extras)
            if has_body:
                body.update(extra)
            else:
                query += [(k, as_text(v)) for k, v in extra.items()]
        text = "&".join(f"{encode(k)}={encode(v)}" for k, v in query)
        data = b""
        headers: dict[str, str] = {}
        if has_body:
            ascii_only = draw(st.booleans())
            data = json.dumps(body, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
            headers["Content-Type"] = "application/json"
        return Wire(
            operation.http["method"], f"{url}{path}{'?' + text if text else ''}", data, headers
        )

    return build()


def signed(wire: Wire) -> dict[str, str]:
    request = AWSRequest(method=wire.method, url=wire.url, data=wire.body, headers=wire.headers)
    SigV4Auth(Credentials(KEY, SECRET), "chime", REGION).add_auth(request)
    return dict(request.prepare().headers)


# What every answer must be.


def check_answer(operation: OperationModel, wire: Wire, answer: httpx.Response) -> None:
    status = answer.status_code
    where = f"{wire.method} {wire.url} body={wire.body[:300]!r} -> {status} {answer.text[:300]}"
    assert status < 500, where
    assert status != 403, f"a correctly signed request was refused: {where}"
    assert uuid.UUID(answer.headers["x-amzn-requestid"]), where
    response = {"status_code": status, "headers": dict(answer.headers), "body": answer.content}
    parsed = RestJSONParser().parse(response, operation.output_shape)
    if status >= 300:
        error_type = answer.headers["x-amzn-errortype"]
        assert error_type in SERVICE_ERRORS | FRONT_DOOR_ERRORS, where
        assert parsed["Error"]["Code"] == error_type, where
        document = answer.json()
        assert set(document) == {"Code", "Message"}, where
        assert document["Code"] in ERROR_CODES, where
        assert isinstance(document["Message"], str) and document["Message"], where
        return
    assert status == success_status(operation), where
    if status == 204 or operation.output_shape is None:
        assert answer.content == b"", where
        return
    assert answer.headers["content-type"] == "application/json", where
    document = json.loads(answer.content, object_pairs_hook=_sorted_object)
    try:
        validate(operation.output_shape, document, "")
    except BadRequestException as exc:
        pytest.fail(f"output does not match {operation.output_shape.name}: {exc.message}\n{where}")
    check_complete(operation.output_shape, document, where)


def _sorted_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    assert keys == sorted(keys), f"object keys not in alphabetical order: {keys}"
    return dict(pairs)


def check_complete(shape: Shape, value: Any, where: str) -> None:
    """Every member of every output structure is present (null when unset); timestamps ISO."""
    if value is None:
        return
    kind = shape.type_name
    if kind == "structure":
        members = {n for n, m in shape.members.items() if m.serialization.get("location") is None}
        assert set(value) == members, f"{shape.name}: {sorted(set(value) ^ members)} {where}"
        for name in members:
            check_complete(shape.members[name], value[name], where)
    elif kind == "list":
        for item in value:
            check_complete(shape.member, item, where)
    elif kind == "timestamp":
        assert TIMESTAMP.match(value), f"timestamp {value!r}: {where}"


@pytest.mark.parametrize("name", NAMES)
def test_fuzz_operation(fuzz_server: ChimeProxyServer, http: httpx.Client, name: str) -> None:
    operation = MODEL.operation_model(name)
    world = build_world(fuzz_server)
    world.operation = name

    @FUZZ_SETTINGS
    @given(wire=requests(operation, world, fuzz_server.url))
    def one_request(wire: Wire) -> None:
        answer = http.request(wire.method, wire.url, content=wire.body, headers=signed(wire))
        SENT[name] += 1
        ANSWERS[name, answer.status_code] += 1
        check_answer(operation, wire, answer)

    one_request()
    assert SENT[name] >= PER_OPERATION


def test_fuzzing_sent_enough_requests(fuzz_server: ChimeProxyServer) -> None:
    """Runs after the per-operation tests (same module, same process)."""
    if set(SENT) != set(NAMES):
        pytest.skip("the per-operation fuzz tests ran elsewhere (xdist) or were deselected")
    assert sum(SENT.values()) >= EXAMPLES
    log = fuzz_server.log()
    assert "unhandled error" not in log
    report = os.environ.get("CHIMEPROXY_FUZZ_REPORT")
    if report:
        summary = {
            "requests": sum(SENT.values()),
            "by_operation": {
                name: {str(status): n for (op, status), n in sorted(ANSWERS.items()) if op == name}
                for name in NAMES
            },
        }
        Path(report).write_text(json.dumps(summary, indent=1))
