"""Protocol layer: routing, validation and serialization, with botocore's own parser and
serializer as the oracle."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest
from botocore.parsers import RestJSONParser
from botocore.serialize import RestJSONSerializer
from hypothesis import given, settings
from hypothesis import strategies as st

from chimeproxy.protocol.errors import BadRequestException, NotFoundException, ServiceError
from chimeproxy.protocol.http import Response
from chimeproxy.protocol.model import operation_model, service_model, success_status
from chimeproxy.protocol.parser import parse_input
from chimeproxy.protocol.router import Router
from chimeproxy.protocol.serializer import OutputSerializer, format_timestamp
from chimeproxy.protocol.validate import compiled_pattern, validate
from tests.reference import SAMPLE_BODY, SAMPLE_CREATED_MS

MODEL = service_model()
ROUTER = Router(MODEL)
CONNECTOR = "abcdef1ghij2klmno3pqr4"


def botocore_request(operation: str, params: dict[str, Any]) -> dict[str, Any]:
    """The request botocore would send for these parameters."""
    return RestJSONSerializer().serialize_to_request(params, operation_model(operation))


def parse_with_botocore(operation: str, status: int, headers: dict[str, str], body: bytes) -> Any:
    response = {"status_code": status, "headers": headers, "body": body}
    return RestJSONParser().parse(response, operation_model(operation).output_shape)


class TestReferenceSample:
    def test_get_proxy_session_body_is_the_samples_byte_for_byte(self) -> None:
        session = {
            "Capabilities": ["SMS", "Voice"],
            "CreatedTimestamp": SAMPLE_CREATED_MS,
            "ExpiryMinutes": 60,
            "Participants": [
                {"PhoneNumber": "+12065550100", "ProxyPhoneNumber": "+19135550199"},
                {"PhoneNumber": "+14015550101", "ProxyPhoneNumber": "+19135550199"},
            ],
            "ProxySessionId": "123a4bc5-67d8-901e-2f3g-h4ghjk56789l",
            "Status": "Open",
            "UpdatedTimestamp": SAMPLE_CREATED_MS,
            "VoiceConnectorId": "abcdef1ghij2klmno3pqr4",
        }
        body = OutputSerializer().body(
            operation_model("GetProxySession"), {"ProxySession": session}
        )
        assert body.decode() == SAMPLE_BODY
        assert len(body) == 531  # the sample's Content-Length

    def test_botocore_reads_the_sample_as_we_write_it(self) -> None:
        parsed = parse_with_botocore(
            "GetProxySession", 200, {"content-type": "application/json"}, SAMPLE_BODY.encode()
        )
        session = parsed["ProxySession"]
        assert session["CreatedTimestamp"].timestamp() == SAMPLE_CREATED_MS / 1000
        assert session["Participants"][1]["PhoneNumber"] == "+14015550101"
        assert "Name" not in session  # null members are unset for the SDK


class TestTimestamps:
    def test_milliseconds_and_zulu(self) -> None:
        assert format_timestamp(SAMPLE_CREATED_MS) == "2020-04-15T16:10:10.288Z"
        assert format_timestamp(0) == "1970-01-01T00:00:00.000Z"
        assert format_timestamp(1_000) == "1970-01-01T00:00:01.000Z"

    @given(st.integers(min_value=0, max_value=253_402_300_799_999))
    @settings(derandomize=True, max_examples=300)
    def test_botocore_parses_back_the_same_instant(self, millis: int) -> None:
        text = format_timestamp(millis)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", text)
        body = orjson.dumps({"VoiceConnector": {"CreatedTimestamp": text}})
        parsed = parse_with_botocore("GetVoiceConnector", 200, {}, body)
        assert round(parsed["VoiceConnector"]["CreatedTimestamp"].timestamp() * 1000) == millis


class TestSerializer:
    def test_every_member_present_sorted_and_null_when_unset(self) -> None:
        body = OutputSerializer().body(operation_model("GetVoiceConnector"), {"VoiceConnector": {}})
        document = orjson.loads(body)["VoiceConnector"]
        members = (
            operation_model("GetVoiceConnector").output_shape.members["VoiceConnector"].members
        )
        assert list(document) == sorted(members)
        assert set(document.values()) == {None}

    def test_output_without_members_has_no_body(self) -> None:
        assert OutputSerializer().body(operation_model("DeleteProxySession"), None) == b""

    def test_nested_lists_of_structures_sorted(self) -> None:
        body = OutputSerializer().body(
            operation_model("ListProxySessions"),
            {"ProxySessions": [{"GeoMatchParams": {"Country": "US", "AreaCode": "206"}}]},
        )
        session = orjson.loads(body)["ProxySessions"][0]
        assert list(session["GeoMatchParams"]) == ["AreaCode", "Country"]
        assert body.index(b'"NextToken"') < body.index(b'"ProxySessions"')

    def test_success_status_comes_from_the_model(self) -> None:
        assert success_status(operation_model("CreateProxySession")) == 201
        assert success_status(operation_model("DeleteProxySession")) == 204
        assert success_status(operation_model("GetProxySession")) == 200
        assert success_status(operation_model("PutVoiceConnectorProxy")) == 200


class TestErrors:
    @pytest.mark.parametrize(
        "error", [BadRequestException("bad member"), NotFoundException("no such session")]
    )
    def test_botocore_reads_code_and_message(self, error: ServiceError) -> None:
        response = Response.error(error)
        headers = {k.decode(): v.decode() for k, v in response.headers}
        parsed = parse_with_botocore("GetProxySession", response.status, headers, response.body)
        assert parsed["Error"]["Code"] == error.type_name
        assert parsed["Error"]["Message"] == error.message
        assert orjson.loads(response.body) == {"Code": error.code, "Message": error.message}

    def test_modelled_error_codes_are_in_the_error_code_enum(self) -> None:
        enum = set(MODEL.shape_for("ErrorCode").enum)
        assert BadRequestException.code in enum and NotFoundException.code in enum


class TestRouter:
    @pytest.mark.parametrize("name", sorted(MODEL.operation_names))
    def test_every_operation_routes_from_what_botocore_sends(self, name: str) -> None:
        operation = operation_model(name)
        params = _minimal_input(operation.input_shape)
        request = botocore_request(name, params)
        path, _, query = request["url_path"].partition("?")
        query = "&".join(filter(None, [query, _query_string(request["query_string"])]))
        match = ROUTER.match(request["method"], path, query)
        assert match is not None and match.operation.name == name

    def test_labels_are_percent_decoded_after_matching(self) -> None:
        match = ROUTER.match("GET", "/phone-numbers/%2B12065550100", "")
        assert match is not None
        assert match.operation.name == "GetPhoneNumber"
        assert match.labels == {"phoneNumberId": "+12065550100"}

    def test_encoded_slash_stays_inside_one_label(self) -> None:
        match = ROUTER.match("GET", "/voice-connectors/a%2Fb/proxy-sessions/c", "")
        assert match is not None and match.labels["voiceConnectorId"] == "a/b"

    def test_query_discriminator_selects_the_operation(self) -> None:
        restore = ROUTER.match("POST", "/phone-numbers/%2B1206", "operation=restore")
        update = ROUTER.match("POST", "/phone-numbers/%2B1206", "")
        assert restore is not None and restore.operation.name == "RestorePhoneNumber"
        assert update is not None and update.operation.name == "UpdatePhoneNumber"

    def test_unknown_paths_do_not_match(self) -> None:
        assert ROUTER.match("GET", "/nothing-here", "") is None
        assert ROUTER.match("PATCH", "/voice-connectors", "") is None


class TestParseAndValidate:
    def test_round_trip_of_botocore_serialized_input(self) -> None:
        params = {
            "VoiceConnectorId": "abcdef1ghij2klmno3pqr4",
            "ParticipantPhoneNumbers": ["+12065550100", "+14015550101"],
            "Capabilities": ["Voice"],
            "ExpiryMinutes": 5,
            "GeoMatchLevel": "AreaCode",
            "GeoMatchParams": {"Country": "US", "AreaCode": "206"},
        }
        request = botocore_request("CreateProxySession", params)
        match = ROUTER.match(request["method"], request["url_path"], "")
        assert match is not None
        parsed = parse_input(match.operation, match.labels, [], {}, request["body"])
        assert parsed == params

    def test_querystring_members_are_typed(self) -> None:
        operation = operation_model("ListProxySessions")
        parsed = parse_input(
            operation,
            {"voiceConnectorId": CONNECTOR},
            [("max-results", "3"), ("status", "Open")],
            {},
            b"",
        )
        assert parsed == {
            "VoiceConnectorId": "abcdef1ghij2klmno3pqr4",
            "MaxResults": 3,
            "Status": "Open",
        }

    @pytest.mark.parametrize(
        ("query", "message"),
        [
            ([("max-results", "0")], "MaxResults: must be at least 1"),
            ([("max-results", "101")], "MaxResults: must be at most 100"),
            ([("max-results", "ten")], "MaxResults: must be an integer"),
            ([("status", "Sleeping")], "Status: must be one of Open, InProgress, Closed"),
        ],
    )
    def test_querystring_violations_name_member_and_rule(
        self, query: list[tuple[str, str]], message: str
    ) -> None:
        with pytest.raises(BadRequestException, match=re.escape(message)):
            parse_input(
                operation_model("ListProxySessions"),
                {"voiceConnectorId": CONNECTOR},
                query,
                {},
                b"",
            )

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            (b"", "body is empty"),
            (b"{", "not valid JSON"),
            (b"[]", "must be a JSON object"),
            (b'"text"', "must be a JSON object"),
            (b'{"Capabilities": ["Voice"]}', "Missing required member ParticipantPhoneNumbers"),
            (
                b'{"Capabilities": ["Fax"], "ParticipantPhoneNumbers": ["+12065550100", "+12"]}',
                "Capabilities[0]: must be one of Voice, SMS",
            ),
            (
                b'{"Capabilities": "Voice", "ParticipantPhoneNumbers": ["+12065550100", "+12"]}',
                "Capabilities: must be a list",
            ),
            (
                b'{"Capabilities": ["Voice"], "ParticipantPhoneNumbers": ["+12065550100"]}',
                "ParticipantPhoneNumbers: must have at least 2 items",
            ),
            (
                b'{"Capabilities": ["Voice"], "ParticipantPhoneNumbers": ["+1206555010a", "+12"]}',
                "ParticipantPhoneNumbers[0]: must match the pattern",
            ),
            (
                b'{"Capabilities": ["Voice"], "ParticipantPhoneNumbers": ["+12065550100", "+12"],'
                b' "ExpiryMinutes": 0}',
                "ExpiryMinutes: must be at least 1",
            ),
            (
                b'{"Capabilities": ["Voice"], "ParticipantPhoneNumbers": ["+12065550100", "+12"],'
                b' "ExpiryMinutes": true}',
                "ExpiryMinutes: must be an integer",
            ),
            (
                b'{"Capabilities": ["Voice"], "ParticipantPhoneNumbers": ["+12065550100", "+12"],'
                b' "Name": "' + b"x" * 31 + b'"}',
                "Name: must match the pattern",
            ),
            (
                b'{"Capabilities": ["Voice"], "ParticipantPhoneNumbers": ["+12065550100", "+12"],'
                b' "GeoMatchParams": {"Country": "US"}}',
                "Missing required member GeoMatchParams.AreaCode",
            ),
        ],
    )
    def test_body_violations_name_member_and_rule(self, body: bytes, message: str) -> None:
        with pytest.raises(BadRequestException, match=re.escape(message)):
            parse_input(
                operation_model("CreateProxySession"), {"voiceConnectorId": CONNECTOR}, [], {}, body
            )

    def test_patterns_are_anchored_like_ecma_not_python(self) -> None:
        e164 = MODEL.shape_for("E164PhoneNumber")
        with pytest.raises(BadRequestException):
            validate(e164, "+12065550100\n", "PhoneNumber")
        with pytest.raises(BadRequestException):
            validate(e164, "+1206555\u0661\u0662\u0663", "PhoneNumber")  # Arabic-Indic digits
        validate(e164, "12065550100", "PhoneNumber")
        assert compiled_pattern(".*\\S.*").fullmatch("  x ")
        with pytest.raises(BadRequestException, match="pattern"):
            validate(MODEL.shape_for("VoiceConnectorName"), "bad/name", "Name")

    def test_string_length_counts_characters(self) -> None:
        shape = MODEL.shape_for("String128")
        validate(shape, "é" * 128, "Name")
        with pytest.raises(BadRequestException, match="at most 128 characters"):
            validate(shape, "é" * 129, "Name")


def _minimal_input(shape: Any) -> dict[str, Any]:
    if shape is None:
        return {}
    return {name: _sample(shape.members[name]) for name in shape.required_members}


def _sample(shape: Any) -> Any:
    kind = shape.type_name
    if kind == "structure":
        return _minimal_input(shape)
    if kind == "list":
        return [_sample(shape.member)]
    if kind == "map":
        return {}
    if kind in ("integer", "long"):
        return 1
    if kind == "boolean":
        return True
    if kind == "timestamp":
        return 0
    if shape.enum:
        return shape.enum[0]
    return "abc-123"


def _query_string(params: dict[str, Any]) -> str:
    from urllib.parse import urlencode

    return urlencode(params, doseq=True)
