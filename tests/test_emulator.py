"""The STS emulator, driven by real botocore clients over loopback HTTP.

If the emulator accepted something AWS rejects (or the other way round), every
test built on it would prove nothing, so these tests pin its strictness.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import botocore.loaders
import botocore.session
import pyotp
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.sts_emulator import Device, StsEmulator, User

PROJECT_ROOT = Path(__file__).resolve().parents[1]
XMLNS = "https://sts.amazonaws.com/doc/2011-06-15/"
MFA_BAD_CODE = "MultiFactorAuthentication failed with invalid MFA one time pass code. "
MFA_UNVALIDATED = (
    "MultiFactorAuthentication failed, unable to validate MFA code. "
    "Please verify your MFA serial number is valid and associated with this user."
)

# botocore builds operation methods at runtime; without mypy_boto3_sts they are untyped.
StsClient = Any
ClientFactory = Callable[..., StsClient]
# Parsing the STS model and endpoint rules is most of a client's cost: do it once.
SHARED_LOADER = botocore.loaders.create_loader()


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Never let botocore read the real ~/.aws or the caller's AWS_* settings."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)


@pytest.fixture
def emu() -> Iterator[StsEmulator]:
    with StsEmulator() as emulator:
        yield emulator


@pytest.fixture
def alice(emu: StsEmulator) -> User:
    return emu.add_user("alice", account="123456789012")


@pytest.fixture
def device(emu: StsEmulator, alice: User) -> Device:
    return emu.add_mfa_device(alice)


@pytest.fixture
def make_client(emu: StsEmulator) -> Iterator[ClientFactory]:
    """Build STS clients for the emulator; closed at teardown so no socket leaks."""
    session = botocore.session.Session()
    session.register_component("data_loader", SHARED_LOADER)
    clients: list[StsClient] = []

    def make(
        access_key_id: str,
        secret_access_key: str,
        session_token: str | None = None,
        *,
        url: str | None = None,
        validate: bool = True,
    ) -> StsClient:
        client = session.create_client(
            "sts",
            region_name="eu-west-1",
            endpoint_url=url or emu.url,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            aws_session_token=session_token,
            # One attempt: an injected Throttling must surface, and retries would sleep.
            config=Config(retries={"total_max_attempts": 1}, parameter_validation=validate),
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def alice_client(make_client: ClientFactory, alice: User) -> StsClient:
    return make_client(alice.access_key_id, alice.secret_access_key)


def current_code(device: Device) -> str:
    return str(pyotp.TOTP(device.seed).now())


def code_outside_window(device: Device) -> str:
    """Six digits that match no step the emulator could accept, even across a boundary."""
    totp = pyotp.TOTP(device.seed)
    near = {totp.at(time.time() + 30 * offset) for offset in range(-2, 3)}
    return next(code for code in ("000000", "111111", "222222", "333333") if code not in near)


def error_of(call: Callable[[], object]) -> tuple[str, str, int]:
    """Run a client call that must fail; return AWS's error code, message and HTTP status."""
    with pytest.raises(ClientError) as caught:
        call()
    response: Any = caught.value.response
    return (
        response["Error"]["Code"],
        response["Error"]["Message"],
        response["ResponseMetadata"]["HTTPStatusCode"],
    )


def raw_request(
    emu: StsEmulator,
    params: dict[str, str],
    *,
    user: User | None = None,
    method: str = "POST",
) -> tuple[int, dict[str, str], str]:
    """Send a query-protocol request by hand, signed by botocore's SigV4 when ``user`` is set."""
    encoded = urlencode(params)
    url = emu.url + "/" + (f"?{encoded}" if method == "GET" else "")
    body = encoded if method == "POST" else None
    request = AWSRequest(method=method, url=url, data=body)
    if method == "POST":
        request.headers["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
    if user is not None:
        credentials = Credentials(user.access_key_id, user.secret_access_key)
        SigV4Auth(credentials, "sts", "eu-west-1").add_auth(request)
    target = urlsplit(url)
    connection = http.client.HTTPConnection(target.netloc, timeout=10)
    try:
        path = target.path + (f"?{target.query}" if target.query else "")
        connection.request(method, path, body=body, headers=dict(request.headers.items()))
        response = connection.getresponse()
        text = response.read().decode()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, text
    finally:
        connection.close()


# --------------------------------------------------------------------------- happy path


def test_good_code_gives_credentials_that_identify_the_user(
    emu: StsEmulator, alice: User, device: Device, make_client: ClientFactory
) -> None:
    client = make_client(alice.access_key_id, alice.secret_access_key)
    before = datetime.now(timezone.utc)
    credentials = client.get_session_token(
        SerialNumber=device.serial, TokenCode=current_code(device), DurationSeconds=3600
    )["Credentials"]

    assert re.fullmatch(r"ASIA[A-Z0-9]{16}", credentials["AccessKeyId"])
    assert len(credentials["SecretAccessKey"]) == 40
    assert len(credentials["SessionToken"]) > 100
    expected = before + timedelta(seconds=3600)
    assert abs((credentials["Expiration"] - expected).total_seconds()) <= 2

    session_client = make_client(
        credentials["AccessKeyId"], credentials["SecretAccessKey"], credentials["SessionToken"]
    )
    identity = session_client.get_caller_identity()
    assert identity["Arn"] == "arn:aws:iam::123456789012:user/alice" == alice.arn
    assert identity["Account"] == "123456789012"
    assert identity["UserId"] == alice.user_id
    assert [s.mfa_authenticated for s in emu.sessions()] == [True]


def test_long_term_key_identifies_the_user_and_default_duration_is_12_hours(
    alice_client: StsClient, alice: User
) -> None:
    assert alice_client.get_caller_identity()["Arn"] == alice.arn
    expiration = alice_client.get_session_token()["Credentials"]["Expiration"]
    remaining = (expiration - datetime.now(timezone.utc)).total_seconds()
    assert 43200 - 5 <= remaining <= 43200


def test_records_and_device_are_shaped_like_aws(
    emu: StsEmulator, alice: User, device: Device
) -> None:
    assert re.fullmatch(r"AKIA[A-Z0-9]{16}", alice.access_key_id)
    assert len(alice.secret_access_key) == 40
    assert device.serial == "arn:aws:iam::123456789012:mfa/alice"
    assert re.fullmatch(r"[A-Z2-7]{32}", device.seed)
    second = emu.add_mfa_device(alice, name="alice2")
    assert second.serial == "arn:aws:iam::123456789012:mfa/alice2"
    assert emu.url.startswith("http://127.0.0.1:")
    assert alice.secret_access_key not in repr(alice)
    assert device.seed not in repr(device)


def test_response_carries_request_id_and_date_headers(emu: StsEmulator, alice: User) -> None:
    status, headers, body = raw_request(
        emu, {"Action": "GetCallerIdentity", "Version": "2011-06-15"}, user=alice
    )
    assert status == 200
    assert headers["content-type"] == "text/xml"
    assert "date" in headers
    assert body.startswith(f'<GetCallerIdentityResponse xmlns="{XMLNS}">')
    assert f"<RequestId>{headers['x-amzn-requestid']}</RequestId>" in body


def test_get_with_query_string_is_accepted(emu: StsEmulator, alice: User) -> None:
    status, _, body = raw_request(
        emu, {"Action": "GetCallerIdentity", "Version": "2011-06-15"}, user=alice, method="GET"
    )
    assert status == 200, body
    assert f"<Arn>{alice.arn}</Arn>" in body


# --------------------------------------------------------------------------- MFA codes


def test_same_code_twice_is_rejected(alice_client: StsClient, device: Device) -> None:
    code = current_code(device)
    alice_client.get_session_token(SerialNumber=device.serial, TokenCode=code)
    assert error_of(
        lambda: alice_client.get_session_token(SerialNumber=device.serial, TokenCode=code)
    ) == ("AccessDenied", MFA_BAD_CODE, 403)


def test_next_steps_code_is_accepted_after_the_current_one(
    alice_client: StsClient, device: Device
) -> None:
    alice_client.get_session_token(SerialNumber=device.serial, TokenCode=current_code(device))
    next_code = pyotp.TOTP(device.seed).at(time.time() + 30)
    alice_client.get_session_token(SerialNumber=device.serial, TokenCode=next_code)


def test_wrong_code_is_rejected(alice_client: StsClient, device: Device) -> None:
    wrong = code_outside_window(device)
    assert error_of(
        lambda: alice_client.get_session_token(SerialNumber=device.serial, TokenCode=wrong)
    ) == ("AccessDenied", MFA_BAD_CODE, 403)


def test_code_is_accepted_once_under_concurrency(
    emu: StsEmulator, alice: User, device: Device, make_client: ClientFactory
) -> None:
    clients = [make_client(alice.access_key_id, alice.secret_access_key) for _ in range(8)]
    code = current_code(device)
    start = threading.Barrier(len(clients))

    def attempt(client: StsClient) -> str:
        start.wait()
        try:
            client.get_session_token(SerialNumber=device.serial, TokenCode=code)
        except ClientError as error:
            return str(error.response["Error"]["Code"])
        return "ok"

    with ThreadPoolExecutor(len(clients)) as pool:
        outcomes = sorted(pool.map(attempt, clients))
    assert outcomes == ["AccessDenied"] * 7 + ["ok"]
    assert len(emu.calls("GetSessionToken")) == 8


@pytest.mark.parametrize("only", ["SerialNumber", "TokenCode"])
def test_serial_and_code_go_together(alice_client: StsClient, device: Device, only: str) -> None:
    given = {"SerialNumber": device.serial, "TokenCode": current_code(device)}
    assert error_of(lambda: alice_client.get_session_token(**{only: given[only]})) == (
        "AccessDenied",
        MFA_UNVALIDATED,
        403,
    )


def test_serial_of_another_users_device_is_refused(
    emu: StsEmulator, alice_client: StsClient
) -> None:
    bob = emu.add_user("bob")
    bobs_device = emu.add_mfa_device(bob)
    assert error_of(
        lambda: alice_client.get_session_token(
            SerialNumber=bobs_device.serial, TokenCode=current_code(bobs_device)
        )
    ) == ("AccessDenied", MFA_UNVALIDATED, 403)


@pytest.mark.parametrize(
    ("code", "constraint"),
    [
        ("12345a", r"Member must satisfy regular expression pattern: [\d]*"),
        ("1234567", "Member must have length less than or equal to 6"),
        ("12345", "Member must have length greater than or equal to 6"),
    ],
)
def test_malformed_code_is_a_validation_error_that_does_not_echo_it(
    make_client: ClientFactory, alice: User, device: Device, code: str, constraint: str
) -> None:
    # botocore itself rejects a too-short code before sending; skip that check to test ours.
    client = make_client(alice.access_key_id, alice.secret_access_key, validate=False)
    assert error_of(
        lambda: client.get_session_token(SerialNumber=device.serial, TokenCode=code)
    ) == (
        "ValidationError",
        "1 validation error detected: Value at 'tokenCode' failed to satisfy constraint: "
        + constraint,
        400,
    )


@pytest.mark.parametrize(
    ("duration", "constraint"),
    [
        (60, "greater than or equal to 900"),
        (899, "greater than or equal to 900"),
        (129601, "less than or equal to 129600"),
    ],
)
def test_duration_out_of_bounds_is_a_validation_error(
    make_client: ClientFactory, alice: User, duration: int, constraint: str
) -> None:
    client = make_client(alice.access_key_id, alice.secret_access_key, validate=False)
    assert error_of(lambda: client.get_session_token(DurationSeconds=duration)) == (
        "ValidationError",
        f"1 validation error detected: Value '{duration}' at 'durationSeconds' failed to "
        f"satisfy constraint: Member must have value {constraint}",
        400,
    )


@pytest.mark.parametrize("duration", [900, 129600])
def test_duration_bounds_are_inclusive(alice_client: StsClient, duration: int) -> None:
    alice_client.get_session_token(DurationSeconds=duration)


# --------------------------------------------------------------------------- authentication


def test_bad_secret_is_a_signature_mismatch(make_client: ClientFactory, alice: User) -> None:
    client = make_client(alice.access_key_id, "x" * 40)
    code, message, status = error_of(client.get_caller_identity)
    assert (code, status) == ("SignatureDoesNotMatch", 403)
    assert message.startswith("The request signature we calculated does not match")


def test_unknown_key_is_an_invalid_token(make_client: ClientFactory, alice: User) -> None:
    client = make_client("AKIAAAAAAAAAAAAAAAAA", alice.secret_access_key)
    assert error_of(client.get_caller_identity) == (
        "InvalidClientTokenId",
        "The security token included in the request is invalid.",
        403,
    )


def test_deactivated_key_is_an_invalid_token(
    emu: StsEmulator, alice: User, alice_client: StsClient
) -> None:
    alice_client.get_caller_identity()
    emu.deactivate_key(alice)
    assert error_of(alice_client.get_caller_identity)[0] == "InvalidClientTokenId"


def test_missing_authorization_is_refused(emu: StsEmulator) -> None:
    status, _, body = raw_request(emu, {"Action": "GetCallerIdentity", "Version": "2011-06-15"})
    assert status == 403
    assert "<Code>MissingAuthenticationToken</Code>" in body
    assert "<Message>Request is missing Authentication Token</Message>" in body
    assert body.startswith(f'<ErrorResponse xmlns="{XMLNS}"><Error><Type>Sender</Type>')


def test_skewed_clock_expires_the_signature(make_client: ClientFactory, alice: User) -> None:
    with StsEmulator(clock=lambda: time.time() + 3600) as ahead:
        user = ahead.add_user("alice")
        client = make_client(user.access_key_id, user.secret_access_key, url=ahead.url)
        code, message, status = error_of(client.get_caller_identity)
    assert (code, status) == ("SignatureDoesNotMatch", 403)
    assert re.fullmatch(
        r"Signature expired: \d{8}T\d{6}Z is now earlier than \d{8}T\d{6}Z "
        r"\(\d{8}T\d{6}Z - 15 min\.\)",
        message,
    )


def test_session_credentials_cannot_get_another_session(
    alice_client: StsClient, make_client: ClientFactory
) -> None:
    credentials = alice_client.get_session_token()["Credentials"]
    session_client = make_client(
        credentials["AccessKeyId"], credentials["SecretAccessKey"], credentials["SessionToken"]
    )
    assert error_of(session_client.get_session_token) == (
        "AccessDenied",
        "Cannot call GetSessionToken with session credentials",
        403,
    )


def test_wrong_or_expired_session_token_is_refused(
    emu: StsEmulator, alice_client: StsClient, make_client: ClientFactory
) -> None:
    credentials = alice_client.get_session_token()["Credentials"]
    key, secret, token = (
        credentials["AccessKeyId"],
        credentials["SecretAccessKey"],
        credentials["SessionToken"],
    )
    assert error_of(make_client(key, secret, token[:-4] + "AAAA").get_caller_identity)[0] == (
        "InvalidClientTokenId"
    )
    assert error_of(make_client(key, secret).get_caller_identity)[0] == "InvalidClientTokenId"
    assert emu.expire_sessions() == 1
    assert error_of(make_client(key, secret, token).get_caller_identity) == (
        "ExpiredToken",
        "The security token included in the request is expired",
        403,
    )


def test_unknown_action_is_invalid(emu: StsEmulator, alice: User) -> None:
    status, _, body = raw_request(
        emu, {"Action": "GetFederationThing", "Version": "2011-06-15"}, user=alice
    )
    assert status == 400
    assert "<Code>InvalidAction</Code>" in body
    assert "Could not find operation GetFederationThing for version 2011-06-15" in body


# --------------------------------------------------------------------------- faults and log


def test_fail_next_injects_the_error_then_recovers(
    emu: StsEmulator, alice_client: StsClient, device: Device
) -> None:
    emu.fail_next("GetSessionToken", "Throttling", "Rate exceeded", times=2)
    for _ in range(2):
        assert error_of(alice_client.get_session_token) == ("Throttling", "Rate exceeded", 400)
    alice_client.get_caller_identity()  # other actions are unaffected
    alice_client.get_session_token(SerialNumber=device.serial, TokenCode=current_code(device))
    assert [c.outcome for c in emu.calls("GetSessionToken")] == ["Throttling", "Throttling", "ok"]


def test_log_records_calls_without_secrets(
    emu: StsEmulator, alice: User, device: Device, make_client: ClientFactory
) -> None:
    client = make_client(alice.access_key_id, alice.secret_access_key)
    code = current_code(device)
    credentials = client.get_session_token(
        SerialNumber=device.serial, TokenCode=code, DurationSeconds=900
    )["Credentials"]
    error_of(lambda: client.get_session_token(SerialNumber=device.serial, TokenCode=code))
    make_client(
        credentials["AccessKeyId"], credentials["SecretAccessKey"], credentials["SessionToken"]
    ).get_caller_identity()

    calls = emu.calls()
    assert [(c.action, c.outcome) for c in calls] == [
        ("GetSessionToken", "ok"),
        ("GetSessionToken", "AccessDenied"),
        ("GetCallerIdentity", "ok"),
    ]
    assert (calls[0].access_key_id, calls[0].serial, calls[0].duration) == (
        alice.access_key_id,
        device.serial,
        900,
    )
    assert calls[2].access_key_id == credentials["AccessKeyId"]
    assert calls[0].time <= calls[1].time <= calls[2].time
    assert emu.calls("GetCallerIdentity") == calls[2:]
    dumped = json.dumps([asdict(c) for c in calls])
    for secret in (
        code,
        alice.secret_access_key,
        device.seed,
        credentials["SecretAccessKey"],
        credentials["SessionToken"],
    ):
        assert secret not in dumped


# --------------------------------------------------------------------------- command line


def test_cli_serves_alice_and_logs_calls(tmp_path: Path, make_client: ClientFactory) -> None:
    state_file = tmp_path / "state.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    command = [sys.executable, "-m", "tests.sts_emulator", "--state-file", str(state_file)]
    with subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, text=True
    ) as server:
        try:
            assert server.stdout is not None
            url = server.stdout.readline().strip()
            state = json.loads(state_file.read_text())
            assert state["url"] == url
            assert state["account"] == "123456789012"
            assert stat.S_IMODE(state_file.stat().st_mode) == 0o600

            client = make_client(state["access_key_id"], state["secret_access_key"], url=url)
            code = str(pyotp.TOTP(state["seed"]).now())
            client.get_session_token(SerialNumber=state["mfa_serial"], TokenCode=code)

            lines = Path(f"{state_file}.log").read_text().splitlines()
            logged = [json.loads(line) for line in lines]
            assert [(c["action"], c["outcome"]) for c in logged] == [("GetSessionToken", "ok")]
            assert code not in lines[0]
        finally:
            server.terminate()
            assert server.wait(timeout=10) == 0
