"""What many integration tests share: clients, the one way to check an error answer, set-up
steps done through the public API as a user would, the data-plane calls, and checks on the
stored state. Fixtures (server, client, http, database, recorder) are in tests/conftest.py;
stand-ins for the outside world in stubs.py."""

from __future__ import annotations

import itertools
import json
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from sqlalchemy import select

from chimeproxy.domain.lifecycle import ACTIVE, SessionStatus
from chimeproxy.store.database import Database
from chimeproxy.store.schema import active_routes, proxy_sessions
from chimeproxy.testing import (
    ChimeProxyServer,
    create_postgres_database,
    drop_test_database,
    postgres_unavailable,
)
from tests.conftest import ERROR_BODY, IN_CI, make_client

# Clients.

_accounts = itertools.count(300_000_000_000)


def fresh_client(server: ChimeProxyServer, region: str = "us-east-1") -> Any:
    """A client for an account no other test uses, so listings hold only this test's items."""
    return make_client(server.url, aws_access_key_id=str(next(_accounts)), region_name=region)


def client_for(server: ChimeProxyServer, key: tuple[str, str, str], **overrides: Any) -> Any:
    """A client signing with `key` (access key id, secret access key, account id)."""
    return make_client(
        server.url, aws_access_key_id=key[0], aws_secret_access_key=key[1], **overrides
    )


_RACE_SESSION = boto3.session.Session()


def racing_client(url: str) -> Any:
    """A client with a connection pool of its own, for one thread of a race. Make every one on
    one thread before the race starts: clients are thread-safe, making them from one session
    is not."""
    config = Config(retries={"max_attempts": 1}, max_pool_connections=2)
    return make_client(url, session=_RACE_SESSION, config=config)


# Errors: every check of a refusal goes through `error_answer`.

# The body's `Code` for each `x-amzn-ErrorType`: the model's ErrorCode for its errors, and the
# front door's own for the refusals that come before any operation runs (authentication errors
# carry their type, which is what the JavaScript v2 SDK reports).
ERROR_CODES = {
    "AccessDeniedException": "AccessDenied",
    "BadRequestException": "BadRequest",
    "ConflictException": "Conflict",
    "ForbiddenException": "Forbidden",
    "GoneException": "Gone",
    "NotFoundException": "NotFound",
    "ResourceLimitExceededException": "ResourceLimitExceeded",
    "ServiceFailureException": "ServiceFailure",
    "ServiceUnavailableException": "ServiceUnavailable",
    "ThrottledClientException": "Throttled",
    "UnauthorizedClientException": "Unauthorized",
    "UnprocessableEntityException": "Unprocessable",
    "IncompleteSignatureException": "IncompleteSignatureException",
    "InvalidSignatureException": "InvalidSignatureException",
    "MissingAuthenticationTokenException": "MissingAuthenticationTokenException",
    "NotImplementedException": "NotImplemented",
    "RequestEntityTooLargeException": "RequestEntityTooLarge",
    "RequestHeaderFieldsTooLargeException": "HeadersTooLarge",
    "UnknownOperationException": "UnknownOperation",
    "UnrecognizedClientException": "UnrecognizedClientException",
    "UnsupportedMediaTypeException": "UnsupportedMediaType",
}
# What a SigV4 signature or a SHA-256 looks like: an error says what to fix, never what the
# server computed.
_DIGEST = re.compile(r"[0-9a-f]{64}")


@dataclass
class Refusal:
    """An error answer: HTTP status, `x-amzn-ErrorType` and the message."""

    status: int = 0
    error_type: str = ""
    message: str = ""


def error_answer(status: int, headers: Mapping[str, str], body: bytes) -> Refusal:
    """An error answer as every one must be: a JSON body of exactly `{"Code", "Message"}` whose
    `Code` goes with its `x-amzn-ErrorType`, a request id, and no digest in the message."""
    lower = {name.lower(): value for name, value in headers.items()}
    assert status >= 400, status
    assert lower.get("content-type") == "application/json", lower
    uuid.UUID(lower["x-amzn-requestid"])
    error_type = lower["x-amzn-errortype"]
    document = json.loads(body)
    assert isinstance(document, dict) and set(document) == {"Code", "Message"}, document
    assert document["Code"] == ERROR_CODES[error_type], (error_type, document)
    assert not _DIGEST.search(document["Message"]), document["Message"]
    return Refusal(status, error_type, document["Message"])


def _expect(found: Refusal, status: int, error_type: str, fragments: tuple[str, ...]) -> Refusal:
    assert (found.status, found.error_type) == (status, error_type), found
    for fragment in fragments:
        assert fragment in found.message, found.message
    return found


def assert_refused(
    answer: httpx.Response, status: int, error_type: str, *fragments: str
) -> Refusal:
    """A raw answer is this error, its message holding every fragment."""
    assert answer.status_code == status, answer.text
    found = error_answer(answer.status_code, answer.headers, answer.content)
    return _expect(found, status, error_type, fragments)


def assert_client_error(
    error: ClientError, status: int, error_type: str, *fragments: str
) -> Refusal:
    """A boto3 ClientError is this error, its message holding every fragment; botocore read
    the answer as the wire says (a modelled error as its own exception class)."""
    response = error.response
    metadata = response["ResponseMetadata"]
    assert metadata["HTTPStatusCode"] == status, response
    assert ERROR_BODY in response, "a client made by tests.conftest.make_client keeps the body"
    found = error_answer(status, metadata["HTTPHeaders"], response[ERROR_BODY])
    assert response["Error"]["Code"] == found.error_type, response
    assert response["Error"]["Message"] == found.message, response
    if type(error) is not ClientError:
        assert type(error).__name__ == found.error_type, type(error)
    return _expect(found, status, error_type, fragments)


@contextmanager
def refused(status: int, error_type: str, *fragments: str) -> Iterator[Refusal]:
    """The boto3 call in the block must fail with this error (see `assert_client_error`):
    `with refused(404, "NotFoundException", connector_id) as refusal:`; after the block,
    `refusal` holds the answer."""
    refusal = Refusal()
    with pytest.raises(ClientError) as caught:
        yield refusal
    found = assert_client_error(caught.value, status, error_type, *fragments)
    vars(refusal).update(vars(found))


# Set-up through the API.

_names = itertools.count()
_participants = itertools.count()


def person(area_code: str = "206") -> str:
    """A fresh participant number, unique in this test process; never a catalog number (the
    catalog sells only 555 numbers) nor one of a connector's."""
    return f"+1{area_code}{2_000_000 + next(_participants):07d}"


def order_numbers(client: Any, count: int, **search: Any) -> list[str]:
    """Search the catalog and order `count` numbers (all or nothing)."""
    search.setdefault("Country", "US")
    found: list[str] = []
    token = None
    while len(found) < count:
        page = client.search_available_phone_numbers(
            MaxResults=min(100, count - len(found)),
            **search,
            **({"NextToken": token} if token else {}),
        )
        found += page["E164PhoneNumbers"]
        token = page.get("NextToken")
        if not token:
            break
    assert len(found) >= count, f"catalog has only {len(found)} numbers for {search}"
    found = found[:count]
    for start in range(0, count, 100):
        order = client.create_phone_number_order(
            ProductType="VoiceConnector", E164PhoneNumbers=found[start : start + 100]
        )["PhoneNumberOrder"]
        assert order["Status"] == "Successful"
    return found


def make_connector(client: Any, name: str | None = None) -> str:
    connector = client.create_voice_connector(
        Name=name or f"connector {next(_names)}", RequireEncryption=False
    )["VoiceConnector"]
    return connector["VoiceConnectorId"]


def proxy_connector(
    client: Any,
    pool: int = 5,
    *,
    countries: tuple[str, ...] = ("US",),
    expiry: int = 60,
    numbers: list[str] | None = None,
    **search: Any,
) -> tuple[str, list[str]]:
    """A voice connector with `pool` numbers associated and a proxy configuration."""
    connector_id = make_connector(client)
    numbers = numbers if numbers is not None else order_numbers(client, pool, **search)
    errors = client.associate_phone_numbers_with_voice_connector(
        VoiceConnectorId=connector_id, E164PhoneNumbers=numbers
    )["PhoneNumberErrors"]
    assert errors == []
    client.put_voice_connector_proxy(
        VoiceConnectorId=connector_id,
        DefaultSessionExpiryMinutes=expiry,
        PhoneNumberPoolCountries=list(countries),
    )
    return connector_id, numbers


def create_session(client: Any, connector_id: str, a: str, b: str, **extra: Any) -> dict[str, Any]:
    """CreateProxySession for (a, b) with Voice unless told otherwise; the session."""
    extra.setdefault("Capabilities", ["Voice"])
    answer = client.create_proxy_session(
        VoiceConnectorId=connector_id, ParticipantPhoneNumbers=[a, b], **extra
    )
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 201
    return answer["ProxySession"]


def proxy_number(session: dict[str, Any]) -> str:
    """The session's single proxy number (both participants must share it)."""
    numbers = {p["ProxyPhoneNumber"] for p in session["Participants"]}
    assert len(numbers) == 1, session["Participants"]
    return numbers.pop()


def session_between(
    client: Any, connector_id: str, a: str, b: str, capabilities: tuple[str, ...] = ("Voice", "SMS")
) -> tuple[str, str]:
    """(session id, proxy number) of a new session."""
    session = create_session(client, connector_id, a, b, Capabilities=list(capabilities))
    return session["ProxySessionId"], proxy_number(session)


def new_session(
    client: Any, capabilities: tuple[str, ...], **extra: Any
) -> tuple[str, str, str, str, str]:
    """A session of two new participants on a voice connector of its own with one number:
    (connector id, session id, a, b, proxy number)."""
    connector_id, _ = proxy_connector(client, 1)
    a, b = person(), person()
    session = create_session(client, connector_id, a, b, Capabilities=list(capabilities), **extra)
    return connector_id, session["ProxySessionId"], a, b, proxy_number(session)


# Reading back.


def every_item(listing: Callable[..., dict[str, Any]], key: str, **params: Any) -> list[Any]:
    """All items of a paginated listing, following NextToken."""
    items: list[Any] = []
    token = None
    while True:
        page = listing(**params, **({"NextToken": token} if token else {}))
        items += page[key]
        token = page.get("NextToken")
        if not token:
            return items


def all_sessions(client: Any, connector_id: str, **filters: Any) -> list[dict[str, Any]]:
    """Every session ListProxySessions gives for `filters`, all pages."""
    return every_item(
        client.list_proxy_sessions, "ProxySessions", VoiceConnectorId=connector_id, **filters
    )


def status_of(client: Any, connector_id: str, session_id: str) -> str:
    return client.get_proxy_session(VoiceConnectorId=connector_id, ProxySessionId=session_id)[
        "ProxySession"
    ]["Status"]


# The data plane, called as the SIP edge and the SMS webhooks call it: unsigned (outside SigV4
# even in strict mode).


def route(url: str, caller: str, called: str, kind: str = "voice", **extra: Any) -> httpx.Response:
    return httpx.post(
        f"{url}/_chimeproxy/route",
        json={"caller": caller, "called": called, "kind": kind, **extra},
        timeout=10,
    )


def decide(url: str, caller: str, called: str, kind: str = "voice", **extra: Any) -> dict:
    """The routing decision (`connect`, `fallback` or `reject`) for a contact."""
    answer = route(url, caller, called, kind, **extra)
    assert answer.status_code == 200, answer.text
    return answer.json()


def end(url: str, interaction_id: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{url}/_chimeproxy/interactions/{interaction_id}/end", json=body, timeout=10)


def interactions(url: str, connector_id: str, session_id: str | None = None) -> list[dict]:
    """What the data plane recorded for a session, or for a voice connector (unsigned: an
    open-mode server)."""
    path = f"/_chimeproxy/voice-connectors/{connector_id}"
    if session_id is not None:
        path += f"/proxy-sessions/{session_id}"
    answer = httpx.get(f"{url}{path}/interactions", timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["Interactions"]


# Waiting, and databases.


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll until `condition()` holds (a sweeper runs on its own schedule); fail after
    `timeout`, which only bounds a broken run and is far above what a passing one needs."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting until {what}")
        time.sleep(0.05)


@contextmanager
def postgres_database() -> Iterator[str]:
    """A PostgreSQL database of our own, whatever backend the pass runs on; skips locally when
    none is reachable, fails in CI."""
    if reason := postgres_unavailable():
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI: {reason}")
        pytest.skip(reason)
    url = create_postgres_database()
    try:
        yield url
    finally:
        drop_test_database(url)


def store_problems(url: str, now_ms: int) -> list[str]:
    """Where the stored sessions and the routing table disagree (none when all is well):
    - every route belongs to a stored-active session and repeats its participant, proxy number,
      voice connector and expiry;
    - a session active at `now_ms` has exactly its two routes;
    - a Closed session has an end time and no route;
    - no participant has two sessions active at `now_ms` on one proxy number of a connector."""
    database = Database(url)
    try:
        with database.read() as connection:
            rows = connection.execute(select(proxy_sessions)).mappings()
            sessions = {row["pk"]: row for row in rows}
            routes = list(connection.execute(select(active_routes)).mappings())
    finally:
        database.dispose()
    problems: list[str] = []
    by_session: dict[int, list[Any]] = {}
    for route_row in routes:
        by_session.setdefault(route_row["session_pk"], []).append(route_row)
        session = sessions.get(route_row["session_pk"])
        if session is None:
            problems.append(f"route {dict(route_row)} has no session")
            continue
        if session["status"] not in ACTIVE:
            problems.append(f"route {dict(route_row)} of a {session['status']} session")
        if (
            route_row["participant"] not in (session["participant_1"], session["participant_2"])
            or route_row["proxy_number"] != session["proxy_number"]
            or route_row["voice_connector_pk"] != session["voice_connector_pk"]
            or route_row["expires_at"] != session["expires_at"]
        ):
            problems.append(f"route {dict(route_row)} disagrees with session {session['id']}")
    active_keys: dict[tuple[int, str, str], str] = {}
    for pk, session in sessions.items():
        mine = by_session.get(pk, [])
        if session["status"] == SessionStatus.CLOSED:
            if session["ended_at"] is None:
                problems.append(f"Closed session {session['id']} has no end time")
            if mine:
                problems.append(f"Closed session {session['id']} still has routes")
        elif session["expires_at"] > now_ms:
            participants = sorted(route_row["participant"] for route_row in mine)
            expected = sorted((session["participant_1"], session["participant_2"]))
            if participants != expected:
                problems.append(f"active session {session['id']} has routes for {participants}")
            for participant in expected:
                key = (session["voice_connector_pk"], participant, session["proxy_number"])
                if key in active_keys:
                    problems.append(
                        f"{participant} has sessions {active_keys[key]} and {session['id']} "
                        f"active on {session['proxy_number']}"
                    )
                active_keys[key] = session["id"]
    return problems


# Outside clients.


def aws_cli() -> str:
    """The AWS CLI installed with the test dependencies, beside this interpreter."""
    path = Path(sys.executable).with_name("aws")
    if not path.exists():
        if IN_CI:
            pytest.fail("the AWS CLI is a test dependency and must be installed in CI")
        pytest.skip("the AWS CLI is not installed (pip install -e '.[test]')")
    return str(path)
