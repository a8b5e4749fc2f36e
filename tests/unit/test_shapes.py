"""`shapes.proxy_session_wire` (Get and List's one-pass session) against the model-driven
encoder of the ordinary shape, as the oracle: the same bytes for any stored row."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from chimeproxy import shapes
from chimeproxy.domain.lifecycle import SessionStatus
from chimeproxy.protocol.model import operation_model
from chimeproxy.protocol.serializer import Encoded, OutputSerializer

SERIALIZER = OutputSerializer()
GET = operation_model("GetProxySession")
LIST = operation_model("ListProxySessions")
INSTANTS = st.integers(min_value=0, max_value=4_102_444_800_000)
NUMBERS = st.from_regex(r"\+1[2-9][0-9]{9}", fullmatch=True)
CAPABILITIES = st.lists(st.sampled_from(["Voice", "SMS"]), min_size=1, max_size=2, unique=True)


@st.composite
def rows(draw: st.DrawFn) -> dict[str, Any]:
    created = draw(INSTANTS)
    return {
        "id": draw(st.uuids()).hex,
        "name": draw(st.none() | st.text(max_size=30)),
        "status": draw(st.sampled_from(list(SessionStatus))).value,
        "capabilities": ",".join(draw(CAPABILITIES)),
        "expiry_minutes": draw(st.none() | st.integers(min_value=1, max_value=10_000)),
        "number_selection_behavior": draw(
            st.none() | st.sampled_from(["PreferSticky", "AvoidSticky"])
        ),
        "geo_match_level": draw(st.none() | st.sampled_from(["Country", "AreaCode"])),
        "geo_country": draw(st.none() | st.just("US")),
        "geo_area_code": draw(st.none() | st.from_regex(r"[2-9][0-9]{2}", fullmatch=True)),
        "participant_1": draw(NUMBERS),
        "participant_2": draw(NUMBERS),
        "proxy_number": draw(NUMBERS),
        "created_at": created,
        "updated_at": created + draw(st.integers(min_value=0, max_value=10**9)),
        "expires_at": created + draw(st.integers(min_value=0, max_value=10**10)),
        "ended_at": draw(st.none() | INSTANTS),
    }


@settings(max_examples=500, deadline=None)
@given(row=rows(), now=INSTANTS, connector=st.from_regex(r"[a-z0-9]{22}", fullmatch=True))
def test_the_wire_session_is_the_encoded_shape(
    row: dict[str, Any], now: int, connector: str
) -> None:
    wire = shapes.proxy_session_wire(shapes.shown_session(row), connector, now)
    ordinary = shapes.proxy_session(row, connector, now)
    assert SERIALIZER.body(GET, Encoded(ProxySession=wire)) == SERIALIZER.body(
        GET, {"ProxySession": ordinary}
    )
    for token in (None, "next"):
        page = Encoded(NextToken=token, ProxySessions=[wire, wire])
        assert SERIALIZER.body(LIST, page) == SERIALIZER.body(
            LIST, {"ProxySessions": [ordinary, ordinary], "NextToken": token}
        )


def test_every_member_of_the_model_is_written() -> None:
    """Keys in the model's order, none missing: what the encoder would have written."""
    member = GET.output_shape.members["ProxySession"]
    row = {
        "id": "0f3b6a0c2d7e4b1a9c8d7e6f5a4b3c2d",
        "name": None,
        "status": "Open",
        "capabilities": "Voice,SMS",
        "expiry_minutes": None,
        "number_selection_behavior": None,
        "geo_match_level": None,
        "geo_country": None,
        "geo_area_code": None,
        "participant_1": "+12065550101",
        "participant_2": "+12065550100",
        "proxy_number": "+12065550199",
        "created_at": 1,
        "updated_at": 2,
        "expires_at": 3,
        "ended_at": None,
    }
    body = orjson.loads(
        SERIALIZER.body(
            GET, Encoded(ProxySession=shapes.proxy_session_wire(shapes.shown_session(row), "c", 0))
        )
    )
    assert list(body["ProxySession"]) == sorted(member.members)
