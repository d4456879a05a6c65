"""signin.py's own rules: partitions, destinations, the endpoint override, and an
exchange with the federation endpoint that is bounded and never shows what it got."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from mfa_session import signin
from mfa_session.credentials import Credentials, utc_now
from mfa_session.errors import ConfigError, UsageError
from tests.sts_emulator import StsEmulator

AWS, CN, GOV = (signin.PARTITIONS[name] for name in ("aws", "aws-cn", "aws-us-gov"))


def fake_credentials(seconds: int = 3600) -> Credentials:
    return Credentials(
        "ASIAEXAMPLEEXAMPLE00",
        "secret/key",
        "session-token",
        utc_now() + timedelta(seconds=seconds),
    )


@pytest.mark.parametrize(
    ("region", "partition", "endpoint", "home"),
    [
        (None, AWS, "https://signin.aws.amazon.com/federation", "https://console.aws.amazon.com/console/home"),
        ("eu-west-1", AWS, "https://signin.aws.amazon.com/federation", "https://console.aws.amazon.com/console/home?region=eu-west-1"),
        ("cn-northwest-1", CN, "https://signin.amazonaws.cn/federation", "https://console.amazonaws.cn/console/home?region=cn-northwest-1"),
        ("us-gov-east-1", GOV, "https://signin.amazonaws-us-gov.com/federation", "https://console.amazonaws-us-gov.com/console/home?region=us-gov-east-1"),
    ],
)  # fmt: skip
def test_the_region_picks_partition_endpoint_and_console(
    region: str | None, partition: signin.Partition, endpoint: str, home: str
) -> None:
    assert signin.partition_for(region) == partition
    assert signin.federation_endpoint(partition, {}) == endpoint
    assert signin.destination_url(partition, region, None) == home


def test_regions_outside_the_three_partitions_are_refused() -> None:
    with pytest.raises(ConfigError, match="not available in partition aws-iso"):
        signin.partition_for("us-iso-east-1")
    with pytest.raises(ConfigError, match="belongs to no AWS partition"):
        signin.partition_for("moon-base-1")


def test_destination_is_a_service_or_a_console_url_of_the_partition() -> None:
    assert signin.destination_url(CN, "cn-north-1", "s3") == (
        "https://console.amazonaws.cn/s3/home?region=cn-north-1"
    )
    given = "https://eu-west-1.console.aws.amazon.com/iam/home#/roles"
    assert signin.destination_url(AWS, "eu-west-1", given) == given
    for wrong in (
        "https://console.amazonaws.cn/s3/",  # another partition
        "https://console.aws.amazon.com.evil.example/",
        "https://evilconsole.aws.amazon.com/",
        "https://user@console.aws.amazon.com/",
        "https://console.aws.amazon.com:8443/",
    ):
        with pytest.raises(UsageError, match="console URL of partition aws"):
            signin.destination_url(AWS, "eu-west-1", wrong)
    for wrong in ("http://console.aws.amazon.com/", "S3", "s3 buckets", "https://"):
        with pytest.raises(UsageError, match="a service name such as s3 or an https://"):
            signin.destination_url(AWS, "eu-west-1", wrong)


def test_endpoint_override_must_be_https_or_loopback() -> None:
    for good in ("https://signin.example.com/federation", "http://127.0.0.1:8080/federation"):
        assert signin.federation_endpoint(AWS, {"MFA_SESSION_SIGNIN_URL": good}) == good
    for bad in (
        "http://signin.example.com/federation",
        "https://user:pw@signin.example.com/federation",
        "https://signin.example.com/federation?x=1",
        "ftp://signin.example.com/",
        "https://signin.example.com:port/",
        "https://signin.example.com/fed eration",
        "https://signin.example.com/fed\x01",
    ):
        with pytest.raises(ConfigError) as caught:
            signin.federation_endpoint(AWS, {"MFA_SESSION_SIGNIN_URL": bad})
        assert "pw" not in caught.value.message


def test_login_url_carries_issuer_destination_and_token() -> None:
    url = signin.login_url(
        "https://signin.aws.amazon.com/federation", "t0k+en/=", "https://x/?a=1&b"
    )
    parts = urlsplit(url)
    assert (parts.netloc, parts.path) == ("signin.aws.amazon.com", "/federation")
    assert parse_qs(parts.query) == {
        "Action": ["login"],
        "Issuer": ["mfa-session"],
        "Destination": ["https://x/?a=1&b"],
        "SigninToken": ["t0k+en/="],
    }


def test_session_duration_only_for_a_session_longer_than_chaining_allows() -> None:
    duration = signin._console_duration
    assert duration(fake_credentials(3600), None) is None  # may be chained: AWS refuses it
    assert duration(fake_credentials(3600), 3600) is None
    assert 7190 < (duration(fake_credentials(7200), None) or 0) <= 7200
    assert duration(fake_credentials(7200), 3600) == 3600
    assert duration(fake_credentials(50_000), None) == 43_200


# --------------------------------------------------------------------------- the exchange


@pytest.fixture
def emu() -> Iterator[StsEmulator]:
    with StsEmulator() as emulator:
        yield emulator


def exchange(endpoint: str, **options: object) -> signin.SigninError:
    with pytest.raises(signin.SigninError) as caught:
        signin.request_signin_token(endpoint, fake_credentials(), None, **options)
    error = caught.value
    assert "secret/key" not in f"{error.message} {error.hint}"
    return error


def test_a_silent_endpoint_is_bounded_by_the_timeout() -> None:
    with socket.socket() as silent:  # listens, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}/federation"
        started = time.monotonic()
        error = exchange(endpoint, timeout=0.3)
    assert time.monotonic() - started < 3
    assert error.message == f"the AWS sign-in endpoint at {endpoint} did not answer within 0.3 s"
    assert signin.TIMEOUT <= 30


def test_redirects_are_not_followed_and_long_answers_not_read(emu: StsEmulator) -> None:
    endpoint = emu.url + "/federation"
    emu.fail_next("getSigninToken", "Moved", "elsewhere", 302)
    assert "answered with a redirect (HTTP 302)" in exchange(endpoint).message
    emu.fail_next("getSigninToken", "Huge", "x" * (signin.MAX_ANSWER + 1), 200)
    assert "sent an answer that cannot be read" in exchange(endpoint).message
    emu.fail_next("getSigninToken", "Throttling", "slow down", 429)
    assert "throttling requests (HTTP 429)" in exchange(endpoint).message
    assert len(emu.calls("getSigninToken")) == 3


def test_unreachable_tls_and_ca_bundle_failures(emu: StsEmulator) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    refused = exchange(f"http://127.0.0.1:{port}/federation")
    assert (
        refused.message
        == f"cannot reach the AWS sign-in endpoint at http://127.0.0.1:{port}/federation"
    )
    not_tls = emu.url.replace("http://", "https://") + "/federation"  # plain HTTP behind it
    assert exchange(not_tls).message == f"TLS to the AWS sign-in endpoint at {not_tls} failed"
    missing = exchange(not_tls, ca_bundle="/nonexistent/ca.pem")
    assert missing.message == "cannot use the CA bundle /nonexistent/ca.pem"
