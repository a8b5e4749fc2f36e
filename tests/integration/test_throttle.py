"""`--rate-limit` on a real server: 429 ThrottledClientException per account, one noisy account
never throttles another, and boto3 with retries gets through a burst.

boto3's *standard* retry mode does not retry ThrottledClientException out of the box: the
chime-sdk-voice model declares that error without the `retryable` trait, and botocore retries a
modelled 429 only when the model says so. The *legacy* mode retries every 429. The tests show
both ways through that docs/security.md gives users: legacy mode, or standard mode with a
botocore model extra marking the error as a throttling error.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import httpx
import pytest
from botocore.config import Config

from chimeproxy.testing import ChimeProxyServer
from tests.conftest import database_url, make_client
from tests.integration.helpers import assert_refused, refused

RATE = 4
_accounts = (f"5555{n:08d}" for n in itertools.count(1))

# What a user drops into ~/.aws/models (or AWS_DATA_PATH) so that standard mode retries.
RETRYABLE_THROTTLING_EXTRA = {
    "version": 1.0,
    "merge": {"shapes": {"ThrottledClientException": {"retryable": {"throttling": True}}}},
}


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChimeProxyServer]:
    directory = tmp_path_factory.mktemp("limited")
    server = ChimeProxyServer(
        database=database_url(directory),
        extra_args=["--rate-limit", str(RATE)],
        log_path=directory / "server.log",
    ).start()
    yield server
    server.stop()


def signed_get(server: ChimeProxyServer, account: str) -> httpx.Response:
    """An open-mode request for `account`: the access key names the account."""
    credential = f"{account}/20240101/us-east-1/chime/aws4_request"
    return httpx.get(
        f"{server.url}/voice-connectors",
        headers={
            "Authorization": f"AWS4-HMAC-SHA256 Credential={credential}, "
            "SignedHeaders=host;x-amz-date, Signature=0",
            "X-Amz-Date": "20240101T000000Z",
        },
        timeout=10,
    )


def drain(server: ChimeProxyServer, account: str, limit: int = 500) -> httpx.Response:
    """Send requests for `account` until one is throttled; that answer."""
    for _ in range(limit):
        answer = signed_get(server, account)
        if answer.status_code == 429:
            return answer
        assert answer.status_code == 200, answer.text
    pytest.fail(f"{limit} requests at a limit of {RATE}/s and none was throttled")


def test_an_account_over_its_rate_gets_429_throttled(limited: ChimeProxyServer) -> None:
    answer = drain(limited, next(_accounts))
    assert_refused(answer, 429, "ThrottledClientException", f"{RATE} requests per second")
    assert int(answer.headers["retry-after"]) >= 1
    assert int(answer.headers["x-amz-retry-after"]) >= 0


def test_a_noisy_account_never_throttles_another(limited: ChimeProxyServer) -> None:
    noisy, quiet = next(_accounts), next(_accounts)
    drain(limited, noisy)
    # The quiet account's bucket is full whatever time it is: its whole burst goes through.
    for _ in range(RATE):
        assert signed_get(limited, quiet).status_code == 200


def test_boto3_raises_the_typed_exception_when_it_does_not_retry(
    limited: ChimeProxyServer,
) -> None:
    account = next(_accounts)
    drain(limited, account)
    client = make_client(limited.url, aws_access_key_id=account)
    with refused(429, "ThrottledClientException", f"{RATE} requests per second"):
        for _ in range(50):
            client.list_voice_connectors()


def burst(client: Any, calls: int) -> int:
    """Make `calls` calls; all must succeed. The number of retries it took."""
    retries = 0
    for _ in range(calls):
        answer = client.list_voice_connectors()
        retries += answer["ResponseMetadata"]["RetryAttempts"]
    return retries


def test_boto3_legacy_retries_get_through_a_burst(limited: ChimeProxyServer) -> None:
    account = next(_accounts)
    client = make_client(
        limited.url,
        aws_access_key_id=account,
        config=Config(retries={"mode": "legacy", "max_attempts": 10}),
    )
    drain(limited, account)  # the burst starts on an empty bucket: it must wait and retry
    assert burst(client, 2 * RATE) > 0


def test_boto3_standard_retries_get_through_a_burst_with_the_model_extra(
    limited: ChimeProxyServer, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    version = botocore.session.Session().get_service_model("chime-sdk-voice").api_version
    extra = models / "chime-sdk-voice" / version / "service-2.sdk-extras.json"
    extra.parent.mkdir(parents=True)
    extra.write_text(json.dumps(RETRYABLE_THROTTLING_EXTRA))
    session = botocore.session.Session()
    session.set_config_variable("data_path", str(models))
    account = next(_accounts)
    client = make_client(
        limited.url,
        session=boto3.session.Session(botocore_session=session),
        aws_access_key_id=account,
        config=Config(retries={"mode": "standard", "max_attempts": 10}),
    )
    drain(limited, account)
    assert burst(client, 2 * RATE) > 0


def test_rate_limit_is_off_by_default(server: ChimeProxyServer) -> None:
    account = next(_accounts)
    assert all(signed_get(server, account).status_code == 200 for _ in range(3 * RATE))
