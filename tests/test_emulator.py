"""The STS (and IAM MFA) emulator, driven by real botocore clients over loopback HTTP.

If the emulator accepted something AWS rejects (or the other way round), every
test built on it would prove nothing, so these tests pin its strictness.
"""

from __future__ import annotations

import functools
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

from tests.sts_emulator import Device, Role, StsEmulator, User, VirtualDevice

PROJECT_ROOT = Path(__file__).resolve().parents[1]
XMLNS = "https://sts.amazonaws.com/doc/2011-06-15/"
IAM_XMLNS = "https://iam.amazonaws.com/doc/2010-05-08/"
IAM_VERSION = "2010-05-08"
ADMIN_ACCOUNT = "210987654321"
MFA_BAD_CODE = "MultiFactorAuthentication failed with invalid MFA one time pass code. "
MFA_UNVALIDATED = (
    "MultiFactorAuthentication failed, unable to validate MFA code. "
    "Please verify your MFA serial number is valid and associated with this user."
)
BAD_AUTHENTICATION_CODE = (
    "InvalidAuthenticationCode",
    "Authentication code for device is not valid.",
    403,
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
        service: str = "sts",
    ) -> StsClient:
        client = session.create_client(
            service,
            region_name="us-east-1" if service == "iam" else "eu-west-1",
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


def client_for(
    make_client: ClientFactory, credentials: dict[str, Any], service: str = "sts"
) -> StsClient:
    """A client signing with temporary credentials (GetSessionToken's or AssumeRole's)."""
    return make_client(
        credentials["AccessKeyId"],
        credentials["SecretAccessKey"],
        credentials["SessionToken"],
        service=service,
    )


def iam_client(make_client: ClientFactory, user: User) -> StsClient:
    return make_client(user.access_key_id, user.secret_access_key, service="iam")


def mfa_credentials(client: StsClient, device: Device) -> dict[str, Any]:
    """GetSessionToken with the device's current code: MFA-authenticated credentials."""
    response = client.get_session_token(SerialNumber=device.serial, TokenCode=current_code(device))
    return dict(response["Credentials"])


def codes_at(seed: str, *offsets: int) -> list[str]:
    """The seed's codes for these steps, counted from the current one."""
    step = int(time.time() // 30)
    totp = pyotp.TOTP(seed)
    return [str(totp.generate_otp(step + offset)) for offset in offsets]


def seconds_left(expiration: datetime) -> float:
    return (expiration - datetime.now(timezone.utc)).total_seconds()


def not_authorized(principal: str, action: str, resource: str, why: str = "") -> str:
    return f"User: {principal} is not authorized to perform: {action} on resource: {resource}{why}"


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
    service: str = "sts",
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
        SigV4Auth(credentials, service, "eu-west-1").add_auth(request)
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
        status_, headers, _ = raw_request(
            ahead, {"Action": "GetCallerIdentity", "Version": "2011-06-15"}
        )
    # The Date header tells the emulator's time, as AWS's does.
    sent = datetime.strptime(headers["date"], "%a, %d %b %Y %H:%M:%S GMT")
    skew = sent.replace(tzinfo=timezone.utc) - datetime.now(timezone.utc)
    assert (status_, abs(skew.total_seconds() - 3600) < 5) == (403, True)
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


# --------------------------------------------------------------------------- AssumeRole


@pytest.fixture
def admin(emu: StsEmulator) -> Role:
    return emu.add_role(account=ADMIN_ACCOUNT, name="Admin", max_session_duration=7200)


@pytest.fixture
def reader(emu: StsEmulator) -> Role:
    return emu.add_role(account=ADMIN_ACCOUNT, name="Reader", require_mfa=True)


def assume_role_refusal(principal: str, role_arn: str) -> tuple[str, str, int]:
    return ("AccessDenied", not_authorized(principal, "sts:AssumeRole", role_arn), 403)


def test_mfa_role_with_mfa_session_credentials_and_its_identity(
    emu: StsEmulator,
    alice: User,
    device: Device,
    alice_client: StsClient,
    make_client: ClientFactory,
    admin: Role,
) -> None:
    session_credentials = mfa_credentials(alice_client, device)
    response = client_for(make_client, session_credentials).assume_role(
        RoleArn=admin.arn, RoleSessionName="alice", DurationSeconds=900
    )

    assert admin.arn == "arn:aws:iam::210987654321:role/Admin"
    assumed = response["AssumedRoleUser"]
    assert assumed["Arn"] == "arn:aws:sts::210987654321:assumed-role/Admin/alice"
    assert re.fullmatch(r"AROA[A-Z0-9]{17}:alice", assumed["AssumedRoleId"])
    assert assumed["AssumedRoleId"] == f"{admin.role_id}:alice"
    credentials = response["Credentials"]
    assert re.fullmatch(r"ASIA[A-Z0-9]{16}", credentials["AccessKeyId"])
    assert 900 - 5 <= seconds_left(credentials["Expiration"]) <= 900

    identity = client_for(make_client, credentials).get_caller_identity()
    assert (identity["Arn"], identity["Account"], identity["UserId"]) == (
        assumed["Arn"],
        ADMIN_ACCOUNT,
        assumed["AssumedRoleId"],
    )
    role_session = emu.sessions()[-1]
    assert (role_session.role, role_session.user, role_session.mfa_authenticated) == (
        admin,
        alice,
        True,
    )
    (call,) = emu.calls("AssumeRole")
    assert (call.access_key_id, call.serial, call.duration, call.outcome) == (
        session_credentials["AccessKeyId"],
        None,
        900,
        "ok",
    )


def test_mfa_role_with_a_code_in_the_request_and_long_term_keys(
    emu: StsEmulator, alice: User, device: Device, alice_client: StsClient, admin: Role
) -> None:
    code = current_code(device)
    credentials = alice_client.assume_role(
        RoleArn=admin.arn,
        RoleSessionName="alice",
        SerialNumber=device.serial,
        TokenCode=code,
        DurationSeconds=7200,  # no chaining: the role's own maximum applies
    )["Credentials"]
    assert 7200 - 5 <= seconds_left(credentials["Expiration"]) <= 7200
    assert emu.sessions()[-1].mfa_authenticated
    assert error_of(
        lambda: alice_client.assume_role(
            RoleArn=admin.arn, RoleSessionName="again", SerialNumber=device.serial, TokenCode=code
        )
    ) == ("AccessDenied", MFA_BAD_CODE, 403)
    assert error_of(
        lambda: alice_client.assume_role(
            RoleArn=admin.arn, RoleSessionName="again", SerialNumber=device.serial
        )
    ) == ("AccessDenied", MFA_UNVALIDATED, 403)
    calls = emu.calls("AssumeRole")
    assert [(c.access_key_id, c.serial, c.duration, c.outcome) for c in calls] == [
        (alice.access_key_id, device.serial, 7200, "ok"),
        (alice.access_key_id, device.serial, None, "AccessDenied"),
        (alice.access_key_id, device.serial, None, "AccessDenied"),
    ]
    assert code not in json.dumps([asdict(c) for c in calls])


def test_mfa_role_is_refused_without_mfa(
    emu: StsEmulator,
    alice: User,
    alice_client: StsClient,
    make_client: ClientFactory,
    admin: Role,
) -> None:
    refusal = assume_role_refusal(alice.arn, admin.arn)
    assert error_of(lambda: alice_client.assume_role(RoleArn=admin.arn, RoleSessionName="a1")) == (
        refusal
    )
    plain_session = client_for(make_client, alice_client.get_session_token()["Credentials"])
    assert error_of(lambda: plain_session.assume_role(RoleArn=admin.arn, RoleSessionName="a1")) == (
        refusal
    )
    # A role without the MFA condition is fine with long-term keys: 1 hour by default.
    open_role = emu.add_role(account=ADMIN_ACCOUNT, name="Open", require_mfa=False)
    credentials = alice_client.assume_role(RoleArn=open_role.arn, RoleSessionName="a1")[
        "Credentials"
    ]
    assert 3600 - 5 <= seconds_left(credentials["Expiration"]) <= 3600
    assert not emu.sessions()[-1].mfa_authenticated


def test_role_chaining_caps_at_an_hour_and_inherits_mfa(
    emu: StsEmulator,
    alice: User,
    device: Device,
    alice_client: StsClient,
    make_client: ClientFactory,
    admin: Role,
    reader: Role,
) -> None:
    chain_limit = (
        "ValidationError",
        "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by "
        "role chaining.",
        400,
    )
    mfa_session = client_for(make_client, mfa_credentials(alice_client, device))
    assert (
        error_of(
            lambda: mfa_session.assume_role(
                RoleArn=admin.arn, RoleSessionName="hop1", DurationSeconds=3601
            )
        )
        == chain_limit
    )
    hop1 = mfa_session.assume_role(RoleArn=admin.arn, RoleSessionName="hop1", DurationSeconds=3600)
    admin_client = client_for(make_client, hop1["Credentials"])
    assert (
        error_of(
            lambda: admin_client.assume_role(
                RoleArn=reader.arn, RoleSessionName="hop2", DurationSeconds=7200
            )
        )
        == chain_limit
    )
    hop2 = admin_client.assume_role(RoleArn=reader.arn, RoleSessionName="hop2")
    assert client_for(make_client, hop2["Credentials"]).get_caller_identity()["Arn"] == (
        "arn:aws:sts::210987654321:assumed-role/Reader/hop2"
    )

    # Without MFA at the start of the chain, an MFA role further down refuses the role session.
    open_role = emu.add_role(account=ADMIN_ACCOUNT, name="Open", require_mfa=False)
    plain_session = client_for(make_client, alice_client.get_session_token()["Credentials"])
    open_client = client_for(
        make_client,
        plain_session.assume_role(RoleArn=open_role.arn, RoleSessionName="x1")["Credentials"],
    )
    assert error_of(lambda: open_client.assume_role(RoleArn=reader.arn, RoleSessionName="x2")) == (
        assume_role_refusal("arn:aws:sts::210987654321:assumed-role/Open/x1", reader.arn)
    )


def test_duration_over_the_roles_maximum_is_refused_before_the_code_is_spent(
    make_client: ClientFactory, alice: User, device: Device, reader: Role
) -> None:
    client = make_client(alice.access_key_id, alice.secret_access_key, validate=False)
    code = current_code(device)

    def assume(duration: int) -> object:
        return client.assume_role(
            RoleArn=reader.arn,
            RoleSessionName="alice",
            SerialNumber=device.serial,
            TokenCode=code,
            DurationSeconds=duration,
        )

    assert error_of(lambda: assume(3601)) == (
        "ValidationError",
        "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
        400,
    )
    assert error_of(lambda: assume(43201)) == (
        "ValidationError",
        "1 validation error detected: Value '43201' at 'durationSeconds' failed to satisfy "
        "constraint: Member must have value less than or equal to 43200",
        400,
    )
    assert error_of(lambda: assume(899))[0] == "ValidationError"
    assume(3600)


def test_external_id_must_match(emu: StsEmulator, alice: User, alice_client: StsClient) -> None:
    vendor = emu.add_role(
        account=ADMIN_ACCOUNT, name="Vendor", require_mfa=False, external_id="s3cret-ext"
    )
    refusal = assume_role_refusal(alice.arn, vendor.arn)
    assert error_of(lambda: alice_client.assume_role(RoleArn=vendor.arn, RoleSessionName="v1")) == (
        refusal
    )
    assert (
        error_of(
            lambda: alice_client.assume_role(
                RoleArn=vendor.arn, RoleSessionName="v1", ExternalId="wrong-ext"
            )
        )
        == refusal
    )
    alice_client.assume_role(RoleArn=vendor.arn, RoleSessionName="v1", ExternalId="s3cret-ext")
    assert "s3cret-ext" not in repr(vendor)


def test_unknown_role_and_untrusted_user_are_refused(
    emu: StsEmulator, alice: User, alice_client: StsClient, make_client: ClientFactory
) -> None:
    nope = "arn:aws:iam::210987654321:role/Nope"
    assert error_of(lambda: alice_client.assume_role(RoleArn=nope, RoleSessionName="n1")) == (
        assume_role_refusal(alice.arn, nope)
    )
    bob = emu.add_user("bob")
    bobs_role = emu.add_role(
        account=ADMIN_ACCOUNT, name="BobOnly", require_mfa=False, trusted_users=[bob]
    )
    assert error_of(
        lambda: alice_client.assume_role(RoleArn=bobs_role.arn, RoleSessionName="n1")
    ) == assume_role_refusal(alice.arn, bobs_role.arn)
    bob_client = make_client(bob.access_key_id, bob.secret_access_key)
    bob_client.assume_role(RoleArn=bobs_role.arn, RoleSessionName="n1")


@pytest.mark.parametrize(
    ("name", "constraint"),
    [
        ("a", "Member must have length greater than or equal to 2"),
        ("x" * 65, "Member must have length less than or equal to 64"),
        ("bad name!", r"Member must satisfy regular expression pattern: [\w+=,.@-]*"),
    ],
)
def test_role_session_name_is_validated(
    make_client: ClientFactory, alice: User, admin: Role, name: str, constraint: str
) -> None:
    client = make_client(alice.access_key_id, alice.secret_access_key, validate=False)
    assert error_of(lambda: client.assume_role(RoleArn=admin.arn, RoleSessionName=name)) == (
        "ValidationError",
        f"1 validation error detected: Value '{name}' at 'roleSessionName' failed to satisfy "
        f"constraint: {constraint}",
        400,
    )


def test_assume_role_answer_is_shaped_like_aws(emu: StsEmulator, alice: User) -> None:
    open_role = emu.add_role(account=ADMIN_ACCOUNT, name="Open", require_mfa=False)
    status, _, body = raw_request(
        emu,
        {
            "Action": "AssumeRole",
            "Version": "2011-06-15",
            "RoleArn": open_role.arn,
            "RoleSessionName": "raw",
        },
        user=alice,
    )
    assert status == 200, body
    assert body.startswith(
        f'<AssumeRoleResponse xmlns="{XMLNS}"><AssumeRoleResult><Credentials><AccessKeyId>ASIA'
    )
    assert (
        f"</Credentials><AssumedRoleUser><AssumedRoleId>{open_role.role_id}:raw</AssumedRoleId>"
        "<Arn>arn:aws:sts::210987654321:assumed-role/Open/raw</Arn></AssumedRoleUser>"
        "</AssumeRoleResult><ResponseMetadata><RequestId>"
    ) in body
    status, _, body = raw_request(
        emu, {"Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": open_role.arn}, user=alice
    )
    assert status == 400
    assert (
        "1 validation error detected: Value null at 'roleSessionName' failed to satisfy "
        "constraint: Member must not be null"
    ) in body


# --------------------------------------------------------------------------- IAM: MFA devices


def test_enroll_a_virtual_device_from_creation_to_deletion(
    emu: StsEmulator, make_client: ClientFactory
) -> None:
    bob = emu.add_user("bob")
    iam = iam_client(make_client, bob)
    sts = make_client(bob.access_key_id, bob.secret_access_key)

    user = iam.get_user()["User"]
    assert (user["UserName"], user["Arn"], user["UserId"], user["Path"]) == (
        "bob",
        bob.arn,
        bob.user_id,
        "/",
    )
    assert abs(seconds_left(user["CreateDate"])) < 60

    created = iam.create_virtual_mfa_device(VirtualMFADeviceName="bob-phone")["VirtualMFADevice"]
    serial = created["SerialNumber"]
    seed = created["Base32StringSeed"].decode("ascii")  # botocore decoded the base64 blob
    assert serial == "arn:aws:iam::123456789012:mfa/bob-phone"
    assert re.fullmatch(r"[A-Z2-7]{64}", seed)
    assert created["QRCodePNG"].startswith(b"\x89PNG\r\n\x1a\n")
    assert emu.virtual_devices() == [VirtualDevice(serial, seed, None)]
    assert seed not in repr(emu.virtual_devices())
    assert iam.list_mfa_devices()["MFADevices"] == []

    code1, code2 = codes_at(seed, -1, 0)
    iam.enable_mfa_device(
        UserName="bob", SerialNumber=serial, AuthenticationCode1=code1, AuthenticationCode2=code2
    )
    (listed,) = iam.list_mfa_devices(UserName="bob")["MFADevices"]
    assert (listed["UserName"], listed["SerialNumber"]) == ("bob", serial)
    assert abs(seconds_left(listed["EnableDate"])) < 60
    assert emu.virtual_devices() == [VirtualDevice(serial, seed, "bob")]

    # The device now works for GetSessionToken, but not with a code enabling already used.
    assert error_of(lambda: sts.get_session_token(SerialNumber=serial, TokenCode=code2)) == (
        "AccessDenied",
        MFA_BAD_CODE,
        403,
    )
    (next_code,) = codes_at(seed, 1)
    mfa_iam = client_for(
        make_client,
        sts.get_session_token(SerialNumber=serial, TokenCode=next_code)["Credentials"],
        service="iam",
    )
    assert error_of(
        lambda: mfa_iam.enable_mfa_device(
            UserName="bob",
            SerialNumber=serial,
            AuthenticationCode1=code1,
            AuthenticationCode2=code2,
        )
    ) == ("EntityAlreadyExists", "MFA Device is already in use.", 409)
    assert error_of(lambda: mfa_iam.delete_virtual_mfa_device(SerialNumber=serial)) == (
        "DeleteConflict",
        "MFA Device is already in use.",
        409,
    )
    mfa_iam.deactivate_mfa_device(UserName="bob", SerialNumber=serial)
    assert mfa_iam.list_mfa_devices()["MFADevices"] == []
    assert emu.virtual_devices() == [VirtualDevice(serial, seed, None)]
    mfa_iam.delete_virtual_mfa_device(SerialNumber=serial)
    assert emu.virtual_devices() == []
    assert error_of(lambda: mfa_iam.delete_virtual_mfa_device(SerialNumber=serial)) == (
        "NoSuchEntity",
        f"MFA device with serial number {serial} does not exist.",
        404,
    )
    assert [c.action for c in emu.calls()] == [
        "GetUser",
        "CreateVirtualMFADevice",
        "ListMFADevices",
        "EnableMFADevice",
        "ListMFADevices",
        "GetSessionToken",
        "GetSessionToken",
        "EnableMFADevice",
        "DeleteVirtualMFADevice",
        "DeactivateMFADevice",
        "ListMFADevices",
        "DeleteVirtualMFADevice",
        "DeleteVirtualMFADevice",
    ]
    dumped = json.dumps([asdict(c) for c in emu.calls()])
    for secret in (seed, code1, code2, next_code):
        assert secret not in dumped


def test_enabling_takes_two_consecutive_valid_codes(
    emu: StsEmulator, make_client: ClientFactory
) -> None:
    bob = emu.add_user("bob")
    iam = iam_client(make_client, bob)
    created = iam.create_virtual_mfa_device(VirtualMFADeviceName="bob")["VirtualMFADevice"]
    seed = created["Base32StringSeed"].decode("ascii")

    def enable(code1: str, code2: str) -> object:
        return iam.enable_mfa_device(
            UserName="bob",
            SerialNumber=created["SerialNumber"],
            AuthenticationCode1=code1,
            AuthenticationCode2=code2,
        )

    now, previous, following = codes_at(seed, 0, -1, 1)
    wrong = code_outside_window(Device("x", seed))
    for code1, code2 in [
        (now, now),  # the same step twice
        (now, previous),  # consecutive, but in the wrong order
        (previous, following),  # valid codes two steps apart
        tuple(codes_at(seed, -6, -5)),  # consecutive, but too old
        (wrong, now),
        (previous, wrong),
    ]:
        assert error_of(functools.partial(enable, code1, code2)) == BAD_AUTHENTICATION_CODE
    assert emu.virtual_devices()[0].user_name is None
    enable(previous, now)
    assert emu.virtual_devices()[0].user_name == "bob"


def test_authentication_codes_are_validated_without_being_echoed(
    emu: StsEmulator, make_client: ClientFactory
) -> None:
    bob = emu.add_user("bob")
    iam = make_client(bob.access_key_id, bob.secret_access_key, service="iam", validate=False)
    assert error_of(
        lambda: iam.enable_mfa_device(
            UserName="bob",
            SerialNumber="arn:aws:iam::123456789012:mfa/bob",
            AuthenticationCode1="12345a",
            AuthenticationCode2="1234567",
        )
    ) == (
        "ValidationError",
        "2 validation errors detected: Value at 'authenticationCode1' failed to satisfy "
        r"constraint: Member must satisfy regular expression pattern: [\d]+; "
        "Value at 'authenticationCode2' failed to satisfy constraint: "
        "Member must have length less than or equal to 6",
        400,
    )


def test_device_name_is_unique_in_the_account_and_path_goes_in_the_serial(
    emu: StsEmulator, make_client: ClientFactory
) -> None:
    bob = emu.add_user("bob")
    carol = emu.add_user("carol", account=ADMIN_ACCOUNT)
    iam = iam_client(make_client, bob)
    iam.create_virtual_mfa_device(VirtualMFADeviceName="shared")
    taken = (
        "EntityAlreadyExists",
        "MFADevice entity at the same path and name already exists.",
        409,
    )
    assert error_of(lambda: iam.create_virtual_mfa_device(VirtualMFADeviceName="shared")) == taken
    assert (
        error_of(
            lambda: iam.create_virtual_mfa_device(VirtualMFADeviceName="shared", Path="/team/")
        )
        == taken
    )
    team = iam.create_virtual_mfa_device(VirtualMFADeviceName="team-dev", Path="/team/")
    assert team["VirtualMFADevice"]["SerialNumber"] == "arn:aws:iam::123456789012:mfa/team/team-dev"
    other = iam_client(make_client, carol).create_virtual_mfa_device(VirtualMFADeviceName="shared")
    assert other["VirtualMFADevice"]["SerialNumber"] == "arn:aws:iam::210987654321:mfa/shared"


def test_changing_devices_once_enrolled_takes_an_mfa_session(
    alice: User, device: Device, alice_client: StsClient, make_client: ClientFactory
) -> None:
    explicit_deny = " with an explicit deny in an identity-based policy"
    new_serial = "arn:aws:iam::123456789012:mfa/alice-new"
    long_term = iam_client(make_client, alice)
    plain = client_for(make_client, alice_client.get_session_token()["Credentials"], "iam")
    for client in (long_term, plain):
        create = functools.partial(
            client.create_virtual_mfa_device, VirtualMFADeviceName="alice-new"
        )
        assert error_of(create) == (
            "AccessDenied",
            not_authorized(alice.arn, "iam:CreateVirtualMFADevice", new_serial, explicit_deny),
            403,
        )
        deactivate = functools.partial(
            client.deactivate_mfa_device, UserName="alice", SerialNumber=device.serial
        )
        assert error_of(deactivate) == (
            "AccessDenied",
            not_authorized(alice.arn, "iam:DeactivateMFADevice", alice.arn, explicit_deny),
            403,
        )
        delete = functools.partial(client.delete_virtual_mfa_device, SerialNumber=device.serial)
        assert error_of(delete)[0] == "AccessDenied"
        client.list_mfa_devices()  # reading is always allowed
    mfa = client_for(make_client, mfa_credentials(alice_client, device), "iam")
    mfa.create_virtual_mfa_device(VirtualMFADeviceName="alice-new")
    mfa.delete_virtual_mfa_device(SerialNumber=new_serial)
    mfa.deactivate_mfa_device(SerialNumber=device.serial)  # UserName defaults to the caller
    # Without a device, long-term keys may enroll again.
    long_term.create_virtual_mfa_device(VirtualMFADeviceName="alice-new")


def test_users_manage_only_their_own_devices(
    emu: StsEmulator, alice: User, make_client: ClientFactory
) -> None:
    bob = emu.add_user("bob")
    iam = iam_client(make_client, bob)
    serial = iam.create_virtual_mfa_device(VirtualMFADeviceName="bob")["VirtualMFADevice"][
        "SerialNumber"
    ]
    code1, code2 = codes_at(emu.virtual_devices()[0].seed, -1, 0)
    because = " because no identity-based policy allows the iam:EnableMFADevice action"
    assert error_of(
        lambda: iam.enable_mfa_device(
            UserName="alice",
            SerialNumber=serial,
            AuthenticationCode1=code1,
            AuthenticationCode2=code2,
        )
    ) == ("AccessDenied", not_authorized(bob.arn, "iam:EnableMFADevice", alice.arn, because), 403)
    assert error_of(lambda: iam.list_mfa_devices(UserName="alice"))[0] == "AccessDenied"
    assert error_of(lambda: iam.get_user(UserName="alice"))[0] == "AccessDenied"


def test_a_ninth_device_exceeds_the_quota(emu: StsEmulator, make_client: ClientFactory) -> None:
    bob = emu.add_user("bob")
    devices = [emu.add_mfa_device(bob, name=f"bob{n}") for n in range(8)]
    sts = make_client(bob.access_key_id, bob.secret_access_key)
    mfa = client_for(make_client, mfa_credentials(sts, devices[0]), "iam")
    assert len(mfa.list_mfa_devices()["MFADevices"]) == 8
    serial = mfa.create_virtual_mfa_device(VirtualMFADeviceName="bob8")["VirtualMFADevice"][
        "SerialNumber"
    ]
    code1, code2 = codes_at(emu.virtual_devices()[-1].seed, -1, 0)
    assert error_of(
        lambda: mfa.enable_mfa_device(
            UserName="bob",
            SerialNumber=serial,
            AuthenticationCode1=code1,
            AuthenticationCode2=code2,
        )
    ) == ("LimitExceeded", "Cannot exceed quota for MFADevicesPerUser: 8", 409)


def test_root_user_reads_but_cannot_enroll_or_assume_roles(
    emu: StsEmulator, make_client: ClientFactory, admin: Role
) -> None:
    root = emu.add_user("root", account="123456789012", root=True)
    assert root.arn == "arn:aws:iam::123456789012:root"
    sts = make_client(root.access_key_id, root.secret_access_key)
    identity = sts.get_caller_identity()
    assert (identity["Arn"], identity["UserId"]) == (root.arn, "123456789012")
    iam = iam_client(make_client, root)
    user = iam.get_user()["User"]
    assert (user["Arn"], user["UserId"], "UserName" in user) == (root.arn, "123456789012", False)
    serial = "arn:aws:iam::123456789012:mfa/root-account-mfa-device"
    assert error_of(
        lambda: iam.create_virtual_mfa_device(VirtualMFADeviceName="root-account-mfa-device")
    ) == ("AccessDenied", not_authorized(root.arn, "iam:CreateVirtualMFADevice", serial), 403)
    code, _, status = error_of(
        lambda: iam.enable_mfa_device(
            UserName="root",
            SerialNumber=serial,
            AuthenticationCode1="123456",
            AuthenticationCode2="234567",
        )
    )
    assert (code, status) == ("AccessDenied", 403)
    assert error_of(lambda: sts.assume_role(RoleArn=admin.arn, RoleSessionName="root")) == (
        "AccessDenied",
        "Roles may not be assumed by root accounts.",
        403,
    )
    # Root sessions last at most an hour: AWS cuts longer requests short.
    expiration = sts.get_session_token(DurationSeconds=7200)["Credentials"]["Expiration"]
    assert 3600 - 5 <= seconds_left(expiration) <= 3600


def test_role_sessions_have_no_iam_user(
    emu: StsEmulator, alice_client: StsClient, make_client: ClientFactory
) -> None:
    open_role = emu.add_role(account=ADMIN_ACCOUNT, name="Open", require_mfa=False)
    credentials = alice_client.assume_role(RoleArn=open_role.arn, RoleSessionName="r1")[
        "Credentials"
    ]
    iam = client_for(make_client, credentials, "iam")
    assert error_of(iam.get_user) == (
        "ValidationError",
        "Must specify userName when calling with non-User credentials",
        400,
    )
    assert error_of(lambda: iam.create_virtual_mfa_device(VirtualMFADeviceName="r"))[0] == (
        "AccessDenied"
    )


def test_iam_is_signed_for_iam_and_answers_in_its_namespace(emu: StsEmulator, alice: User) -> None:
    get_user = {"Action": "GetUser", "Version": IAM_VERSION}
    status, _, body = raw_request(emu, get_user, user=alice, service="iam")
    assert status == 200, body
    assert body.startswith(f'<GetUserResponse xmlns="{IAM_XMLNS}"><GetUserResult><User>')
    status, _, body = raw_request(emu, get_user, user=alice, service="sts")
    assert status == 403
    assert body.startswith(f'<ErrorResponse xmlns="{IAM_XMLNS}"><Error><Type>Sender</Type>')
    assert "<Message>Credential should be scoped to correct service: 'iam'. </Message>" in body
    status, _, body = raw_request(
        emu, {"Action": "GetCallerIdentity", "Version": "2011-06-15"}, user=alice, service="iam"
    )
    assert (status, "Credential should be scoped to correct service: 'sts'. " in body) == (
        403,
        True,
    )

    create = {"Action": "CreateVirtualMFADevice", "Version": IAM_VERSION}
    raw_request(emu, {**create, "VirtualMFADeviceName": "raw"}, user=alice, service="iam")
    delete = {
        "Action": "DeleteVirtualMFADevice",
        "Version": IAM_VERSION,
        "SerialNumber": "arn:aws:iam::123456789012:mfa/raw",
    }
    status, headers, body = raw_request(emu, delete, user=alice, service="iam")
    assert (status, body) == (
        200,
        f'<DeleteVirtualMFADeviceResponse xmlns="{IAM_XMLNS}"><ResponseMetadata>'
        f"<RequestId>{headers['x-amzn-requestid']}</RequestId></ResponseMetadata>"
        "</DeleteVirtualMFADeviceResponse>",
    )


def test_iam_endpoint_from_the_environment_and_fail_next(
    emu: StsEmulator, alice: User, device: Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_IAM", emu.url)
    session = botocore.session.Session()
    session.register_component("data_loader", SHARED_LOADER)
    client: StsClient = session.create_client(
        "iam",
        region_name="us-east-1",
        aws_access_key_id=alice.access_key_id,
        aws_secret_access_key=alice.secret_access_key,
        config=Config(retries={"total_max_attempts": 1}),
    )
    try:
        emu.fail_next("ListMFADevices", "ServiceFailure", "Request processing failed", 500)
        assert error_of(client.list_mfa_devices) == (
            "ServiceFailure",
            "Request processing failed",
            500,
        )
        assert len(client.list_mfa_devices()["MFADevices"]) == 1
    finally:
        client.close()
    assert [c.outcome for c in emu.calls("ListMFADevices")] == ["ServiceFailure", "ok"]


# --------------------------------------------------------------------------- IAM: access keys

EXPLICIT_DENY = " with an explicit deny in an identity-based policy"
INVALID_TOKEN = (
    "InvalidClientTokenId",
    "The security token included in the request is invalid.",
    403,
)


def key_ids(listing: dict[str, Any]) -> list[str]:
    return [key["AccessKeyId"] for key in listing["AccessKeyMetadata"]]


def test_access_keys_from_creation_to_deletion(
    emu: StsEmulator, make_client: ClientFactory
) -> None:
    bob = emu.add_user("bob")
    iam = iam_client(make_client, bob)
    (first,) = iam.list_access_keys()["AccessKeyMetadata"]
    assert (first["UserName"], first["AccessKeyId"], first["Status"]) == (
        "bob",
        bob.access_key_id,
        "Active",
    )
    assert abs(seconds_left(first["CreateDate"])) < 60

    created = iam.create_access_key()["AccessKey"]
    new_id, new_secret = created["AccessKeyId"], created["SecretAccessKey"]
    assert (created["UserName"], created["Status"]) == ("bob", "Active")
    assert re.fullmatch(r"AKIA[A-Z0-9]{16}", new_id)
    assert len(new_secret) == 40
    assert abs(seconds_left(created["CreateDate"])) < 60
    listed = iam.list_access_keys(UserName="bob")["AccessKeyMetadata"]
    assert [(key["AccessKeyId"], key["Status"]) for key in listed] == [
        (bob.access_key_id, "Active"),
        (new_id, "Active"),
    ]
    assert [(key.access_key_id, key.status) for key in emu.access_keys(bob)] == [
        (bob.access_key_id, "Active"),
        (new_id, "Active"),
    ]
    assert new_secret not in repr(emu.access_keys(bob))
    assert make_client(new_id, new_secret).get_caller_identity()["Arn"] == bob.arn  # at once

    # Inactive, the first key is an invalid token; active again, it works again.
    old_sts = make_client(bob.access_key_id, bob.secret_access_key)
    new_iam = make_client(new_id, new_secret, service="iam")
    new_iam.update_access_key(AccessKeyId=bob.access_key_id, Status="Inactive")
    assert error_of(old_sts.get_caller_identity) == INVALID_TOKEN
    assert [key.status for key in emu.access_keys(bob)] == ["Inactive", "Active"]
    new_iam.update_access_key(UserName="bob", AccessKeyId=bob.access_key_id, Status="Active")
    old_sts.get_caller_identity()

    # Deleted, it is an invalid token for good.
    new_iam.delete_access_key(AccessKeyId=bob.access_key_id)
    assert error_of(old_sts.get_caller_identity) == INVALID_TOKEN
    assert key_ids(new_iam.list_access_keys()) == [new_id]
    gone = ("NoSuchEntity", f"The Access Key with id {bob.access_key_id} cannot be found.", 404)
    assert error_of(lambda: new_iam.delete_access_key(AccessKeyId=bob.access_key_id)) == gone
    assert (
        error_of(lambda: new_iam.update_access_key(AccessKeyId=bob.access_key_id, Status="Active"))
        == gone
    )

    assert [(c.action, c.access_key_id, c.outcome) for c in emu.calls() if "Key" in c.action] == [
        ("ListAccessKeys", bob.access_key_id, "ok"),
        ("CreateAccessKey", bob.access_key_id, "ok"),
        ("ListAccessKeys", bob.access_key_id, "ok"),
        ("UpdateAccessKey", new_id, "ok"),
        ("UpdateAccessKey", new_id, "ok"),
        ("DeleteAccessKey", new_id, "ok"),
        ("ListAccessKeys", new_id, "ok"),
        ("DeleteAccessKey", new_id, "NoSuchEntity"),
        ("UpdateAccessKey", new_id, "NoSuchEntity"),
    ]
    assert len(emu.calls("CreateAccessKey")) == 1
    dumped = json.dumps([asdict(c) for c in emu.calls()])
    assert new_secret not in dumped
    assert bob.secret_access_key not in dumped


def test_a_third_access_key_exceeds_the_quota_active_or_not(
    emu: StsEmulator, make_client: ClientFactory
) -> None:
    bob = emu.add_user("bob")
    iam = iam_client(make_client, bob)
    second = iam.create_access_key()["AccessKey"]["AccessKeyId"]
    iam.update_access_key(AccessKeyId=second, Status="Inactive")
    assert error_of(iam.create_access_key) == (
        "LimitExceeded",
        "Cannot exceed quota for AccessKeysPerUser: 2",
        409,
    )
    with pytest.raises(ValueError, match="has 2 keys already"):
        emu.add_access_key(bob)
    iam.delete_access_key(AccessKeyId=second)
    iam.create_access_key()
    assert len(emu.access_keys(bob)) == 2


def test_access_key_changes_once_enrolled_take_an_mfa_session_that_outlives_its_key(
    alice: User, device: Device, alice_client: StsClient, make_client: ClientFactory
) -> None:
    long_term = iam_client(make_client, alice)
    plain_credentials = alice_client.get_session_token()["Credentials"]
    plain = client_for(make_client, plain_credentials, "iam")
    for client in (long_term, plain):
        # AWS names the user "nullNAME" when UserName is left out (its quirk, verbatim).
        assert error_of(client.create_access_key) == (
            "AccessDenied",
            not_authorized(alice.arn, "iam:CreateAccessKey", "user nullalice", EXPLICIT_DENY),
            403,
        )
        assert error_of(lambda c=client: c.list_access_keys(UserName="alice")) == (
            "AccessDenied",
            not_authorized(alice.arn, "iam:ListAccessKeys", "user alice", EXPLICIT_DENY),
            403,
        )
        update = functools.partial(
            client.update_access_key, AccessKeyId=alice.access_key_id, Status="Inactive"
        )
        delete = functools.partial(client.delete_access_key, AccessKeyId=alice.access_key_id)
        assert (error_of(update)[0], error_of(delete)[0]) == ("AccessDenied", "AccessDenied")

    mfa_session = mfa_credentials(alice_client, device)
    mfa = client_for(make_client, mfa_session, "iam")
    new_id = mfa.create_access_key()["AccessKey"]["AccessKeyId"]
    mfa.update_access_key(AccessKeyId=alice.access_key_id, Status="Inactive")
    mfa.delete_access_key(AccessKeyId=alice.access_key_id)
    assert key_ids(mfa.list_access_keys()) == [new_id]
    # The key is gone, but the sessions issued with it work until they expire, as AWS's do.
    assert error_of(alice_client.get_caller_identity) == INVALID_TOKEN
    for credentials in (mfa_session, plain_credentials):
        assert client_for(make_client, credentials).get_caller_identity()["Arn"] == alice.arn


def test_a_new_key_works_only_after_the_activation_delay(make_client: ClientFactory) -> None:
    ahead = [0.0]  # the emulator's clock runs this much ahead: no sleeping
    with StsEmulator(clock=lambda: time.time() + ahead[0]) as emu:
        bob = emu.add_user("bob")
        iam = make_client(bob.access_key_id, bob.secret_access_key, url=emu.url, service="iam")
        emu.key_activation_delay(10)
        created = iam.create_access_key()["AccessKey"]
        new_id, new_secret = created["AccessKeyId"], created["SecretAccessKey"]
        new_sts = make_client(new_id, new_secret, url=emu.url)
        new_iam = make_client(new_id, new_secret, url=emu.url, service="iam")
        assert error_of(new_sts.get_caller_identity) == INVALID_TOKEN
        assert error_of(new_iam.list_access_keys) == INVALID_TOKEN
        # Listed as active meanwhile, and the old key keeps working.
        assert [k["Status"] for k in iam.list_access_keys()["AccessKeyMetadata"]] == [
            "Active",
            "Active",
        ]
        old, new = emu.access_keys(bob)
        assert old.usable_from == old.created_at
        assert new.usable_from == pytest.approx(new.created_at + 10)
        ahead[0] = 9.0
        assert error_of(new_sts.get_caller_identity) == INVALID_TOKEN
        ahead[0] = 10.5
        assert new_sts.get_caller_identity()["Arn"] == bob.arn
        assert key_ids(new_iam.list_access_keys()) == [bob.access_key_id, new_id]
        # Keys the test adds directly work at once.
        added = emu.add_access_key(emu.add_user("carol"))
        carol = make_client(added.access_key_id, added.secret_access_key, url=emu.url)
        assert carol.get_caller_identity()["Arn"] == added.arn
        assert [c.outcome for c in emu.calls("GetCallerIdentity")] == [
            "InvalidClientTokenId",
            "InvalidClientTokenId",
            "ok",
            "ok",
        ]
        with pytest.raises(ValueError, match="negative"):
            emu.key_activation_delay(-1)


def test_users_manage_only_their_own_access_keys(
    emu: StsEmulator, alice: User, alice_client: StsClient, make_client: ClientFactory
) -> None:
    bob = emu.add_user("bob")
    iam = iam_client(make_client, bob)
    because = " because no identity-based policy allows the iam:CreateAccessKey action"
    assert error_of(lambda: iam.create_access_key(UserName="alice")) == (
        "AccessDenied",
        not_authorized(bob.arn, "iam:CreateAccessKey", "user alice", because),
        403,
    )
    assert error_of(lambda: iam.list_access_keys(UserName="alice"))[0] == "AccessDenied"
    # Another user's key is, to bob, a key that does not exist.
    assert error_of(lambda: iam.delete_access_key(AccessKeyId=alice.access_key_id)) == (
        "NoSuchEntity",
        f"The Access Key with id {alice.access_key_id} cannot be found.",
        404,
    )
    alice_client.get_caller_identity()
    assert len(emu.access_keys(alice)) == 1

    # Role sessions have no user of their own; the root user manages its own keys.
    open_role = emu.add_role(account=ADMIN_ACCOUNT, name="Open", require_mfa=False)
    role_credentials = alice_client.assume_role(RoleArn=open_role.arn, RoleSessionName="r1")
    role_iam = client_for(make_client, role_credentials["Credentials"], "iam")
    assert error_of(role_iam.create_access_key) == (
        "ValidationError",
        "Must specify userName when calling with non-User credentials",
        400,
    )
    code, message, _ = error_of(
        lambda: role_iam.delete_access_key(UserName="alice", AccessKeyId=alice.access_key_id)
    )
    assert (code, "iam:DeleteAccessKey on resource: user alice because" in message) == (
        "AccessDenied",
        True,
    )
    root = emu.add_user("root", root=True)
    assert iam_client(make_client, root).create_access_key()["AccessKey"]["Status"] == "Active"
    assert len(emu.access_keys(root)) == 2


def test_access_key_requests_are_validated(emu: StsEmulator, make_client: ClientFactory) -> None:
    bob = emu.add_user("bob")
    iam = make_client(bob.access_key_id, bob.secret_access_key, service="iam", validate=False)
    assert error_of(lambda: iam.update_access_key(AccessKeyId="AKIA_SHORT", Status="Enabled")) == (
        "ValidationError",
        "2 validation errors detected: Value 'AKIA_SHORT' at 'accessKeyId' failed to satisfy "
        "constraint: Member must have length greater than or equal to 16; Value 'Enabled' at "
        "'status' failed to satisfy constraint: Member must satisfy enum value set: "
        "[Active, Inactive, Expired]",
        400,
    )
    assert error_of(iam.delete_access_key) == (
        "ValidationError",
        "1 validation error detected: Value null at 'accessKeyId' failed to satisfy "
        "constraint: Member must not be null",
        400,
    )
    code, _, status = error_of(
        lambda: iam.update_access_key(AccessKeyId=bob.access_key_id, Status="Expired")
    )
    assert (code, status, emu.access_keys(bob)[0].status) == ("InvalidInput", 400, "Active")


def test_list_access_keys_pages_and_keys_can_be_added_and_backdated(
    emu: StsEmulator, make_client: ClientFactory
) -> None:
    bob = emu.add_user("bob")
    second = emu.add_access_key(bob)
    assert (second.arn, second.access_key_id != bob.access_key_id) == (bob.arn, True)
    iam = iam_client(make_client, second)  # works at once
    page = iam.list_access_keys(MaxItems=1)
    assert (key_ids(page), page["IsTruncated"]) == ([bob.access_key_id], True)
    page = iam.list_access_keys(MaxItems=1, Marker=page["Marker"])
    assert (key_ids(page), page["IsTruncated"], "Marker" in page) == (
        [second.access_key_id],
        False,
        False,
    )
    pages = iam.get_paginator("list_access_keys").paginate(PaginationConfig={"PageSize": 1})
    assert [key_ids(page) for page in pages] == [[bob.access_key_id], [second.access_key_id]]

    emu.set_key_create_date(bob.access_key_id, emu.now() - 100 * 86400)
    first = iam.list_access_keys()["AccessKeyMetadata"][0]
    assert 99 * 86400 < -seconds_left(first["CreateDate"]) < 101 * 86400
    emu.deactivate_key(second)
    assert error_of(iam.list_access_keys) == INVALID_TOKEN
    with pytest.raises(ValueError, match="no access key"):
        emu.set_key_create_date("AKIA0000000000000000", 0.0)


# --------------------------------------------------------------------------- console sign-in

ALLOW_ALL = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}'
CONSOLE = "https://console.aws.amazon.com/console/home?region=eu-west-1"


def federation(emu: StsEmulator, **params: str) -> tuple[int, dict[str, str], str]:
    """A GET to the federation endpoint, as a broker (or a browser) would send it."""
    connection = http.client.HTTPConnection(urlsplit(emu.url).netloc, timeout=10)
    try:
        connection.request("GET", "/federation?" + urlencode(params))
        response = connection.getresponse()
        text = response.read().decode()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, text
    finally:
        connection.close()


def session_json(credentials: dict[str, Any]) -> str:
    return json.dumps(
        {
            "sessionId": credentials["AccessKeyId"],
            "sessionKey": credentials["SecretAccessKey"],
            "sessionToken": credentials["SessionToken"],
        }
    )


def signin_token(emu: StsEmulator, credentials: dict[str, Any], **extra: str) -> str:
    status, headers, body = federation(
        emu, Action="getSigninToken", Session=session_json(credentials), **extra
    )
    assert (status, headers["content-type"]) == (200, "application/json"), body
    token = json.loads(body)["SigninToken"]
    assert isinstance(token, str)
    return token


def test_federation_token_is_for_long_term_keys_and_names_a_federated_user(
    emu: StsEmulator, alice: User, alice_client: StsClient, make_client: ClientFactory
) -> None:
    response = alice_client.get_federation_token(
        Name="alice", DurationSeconds=900, Policy=ALLOW_ALL
    )
    federated = response["FederatedUser"]
    assert federated == {
        "FederatedUserId": "123456789012:alice",
        "Arn": "arn:aws:sts::123456789012:federated-user/alice",
    }
    assert 1 <= response["PackedPolicySize"] <= 100
    credentials = response["Credentials"]
    assert 900 - 5 <= seconds_left(credentials["Expiration"]) <= 900
    identity = client_for(make_client, credentials).get_caller_identity()
    assert (identity["Arn"], identity["UserId"]) == (federated["Arn"], "123456789012:alice")
    assert emu.federation_policy(credentials["AccessKeyId"]) == ALLOW_ALL
    assert emu.sessions()[-1].mfa_authenticated is False  # no MFA context, ever
    (call,) = emu.calls("GetFederationToken")
    assert (call.access_key_id, call.duration, call.outcome) == (alice.access_key_id, 900, "ok")
    # Without a policy the session has no permissions; the default is 12 hours.
    bare = alice_client.get_federation_token(Name="alice")
    assert "PackedPolicySize" not in bare
    assert emu.federation_policy(bare["Credentials"]["AccessKeyId"]) is None
    assert 43200 - 5 <= seconds_left(bare["Credentials"]["Expiration"]) <= 43200


def test_federation_token_refuses_session_credentials_and_federated_callers(
    alice_client: StsClient, make_client: ClientFactory, device: Device, admin: Role
) -> None:
    mfa_client = client_for(make_client, mfa_credentials(alice_client, device))
    assert error_of(lambda: mfa_client.get_federation_token(Name="alice")) == (
        "AccessDenied",
        "Cannot call GetFederationToken with session credentials",
        403,
    )
    federated = alice_client.get_federation_token(Name="bob", Policy=ALLOW_ALL)
    federated_client = client_for(make_client, federated["Credentials"])
    principal = "arn:aws:sts::123456789012:federated-user/bob"
    assert error_of(
        lambda: federated_client.assume_role(RoleArn=admin.arn, RoleSessionName="bob")
    ) == ("AccessDenied", not_authorized(principal, "sts:AssumeRole", "*"), 403)
    assert error_of(federated_client.get_session_token)[0] == "AccessDenied"


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"Name": "a"}, "Value 'a' at 'name' failed to satisfy constraint"),
        ({"Name": "x" * 33}, "Member must have length less than or equal to 32"),
        ({"Name": "alice smith"}, "Member must satisfy regular expression pattern"),
        ({"Name": "alice", "DurationSeconds": "899"}, "greater than or equal to 900"),
        ({"Name": "alice", "DurationSeconds": "129601"}, "less than or equal to 129600"),
    ],
)
def test_federation_token_validates_name_and_duration(
    emu: StsEmulator, alice: User, params: dict[str, str], problem: str
) -> None:
    status, _, body = raw_request(
        emu, {"Action": "GetFederationToken", "Version": "2011-06-15", **params}, user=alice
    )
    assert (status, "<Code>ValidationError</Code>" in body, problem in body) == (400, True, True)


def test_federation_token_of_root_is_cut_to_an_hour_and_policy_must_be_json(
    emu: StsEmulator, make_client: ClientFactory
) -> None:
    root = emu.add_user("root", account="444455556666", root=True)
    client = make_client(root.access_key_id, root.secret_access_key)
    response = client.get_federation_token(Name="ops", DurationSeconds=7200)
    assert 3600 - 5 <= seconds_left(response["Credentials"]["Expiration"]) <= 3600
    code, _, status = error_of(lambda: client.get_federation_token(Name="ops", Policy="{"))
    assert (code, status) == ("MalformedPolicyDocument", 400)


def test_signin_token_for_a_chained_role_session_without_session_duration(
    emu: StsEmulator,
    alice_client: StsClient,
    make_client: ClientFactory,
    device: Device,
    admin: Role,
) -> None:
    mfa_client = client_for(make_client, mfa_credentials(alice_client, device))
    role = mfa_client.assume_role(RoleArn=admin.arn, RoleSessionName="alice")["Credentials"]
    token = signin_token(emu, role)
    (issued,) = emu.signin_tokens()
    assert (issued.token, issued.kind, issued.access_key_id) == (
        token,
        "role",
        role["AccessKeyId"],
    )
    assert 3600 - 5 <= issued.console_seconds <= 3600  # the credentials' lifetime
    # AWS gives longer console sessions only to roles assumed with long-term keys.
    status, _, body = federation(
        emu, Action="getSigninToken", Session=session_json(role), SessionDuration="3600"
    )
    assert (status, body) == (
        400,
        "SessionDuration cannot be used with credentials from role chaining",
    )
    calls = emu.calls("getSigninToken")
    assert [(c.access_key_id, c.duration, c.outcome) for c in calls] == [
        (role["AccessKeyId"], None, "ok"),
        (role["AccessKeyId"], 3600, "InvalidSessionDuration"),
    ]
    assert token not in repr(calls) + repr(emu.signin_tokens())


def test_signin_token_for_a_direct_role_session_takes_a_session_duration(
    emu: StsEmulator, alice_client: StsClient, device: Device, admin: Role
) -> None:
    role = alice_client.assume_role(
        RoleArn=admin.arn,
        RoleSessionName="alice",
        DurationSeconds=7200,
        SerialNumber=device.serial,
        TokenCode=current_code(device),
    )["Credentials"]
    signin_token(emu, role, SessionDuration="7000")
    assert emu.signin_tokens()[-1].console_seconds == 7000
    for wrong in ("899", "43201", "soon"):
        status, _, body = federation(
            emu, Action="getSigninToken", Session=session_json(role), SessionDuration=wrong
        )
        assert (status, body) == (400, "SessionDuration must be between 900 and 43200 seconds")


def test_signin_token_for_a_federation_session_but_never_a_session_token_one(
    emu: StsEmulator, alice_client: StsClient, device: Device
) -> None:
    federated = alice_client.get_federation_token(Name="alice", Policy=ALLOW_ALL)["Credentials"]
    signin_token(emu, federated)
    assert emu.signin_tokens()[-1].kind == "federation"
    status, _, body = federation(
        emu, Action="getSigninToken", Session=session_json(federated), SessionDuration="900"
    )
    assert (status, body) == (
        400,
        "SessionDuration cannot be used with GetFederationToken credentials",
    )
    for credentials in (
        mfa_credentials(alice_client, device),
        alice_client.get_session_token()["Credentials"],
    ):
        status, _, body = federation(
            emu, Action="getSigninToken", Session=session_json(credentials)
        )
        assert (status, body) == (
            400,
            "Only federation tokens or assume role tokens may be used for federated login.",
        )
    assert [c.outcome for c in emu.calls("getSigninToken")][-2:] == ["NotFederationSession"] * 2


def test_signin_token_refuses_unknown_mismatched_malformed_and_expired_sessions(
    emu: StsEmulator, alice: User, alice_client: StsClient
) -> None:
    federated = dict(alice_client.get_federation_token(Name="alice")["Credentials"])
    sessions = [
        session_json({**federated, "AccessKeyId": "ASIAUNKNOWNUNKNOWN00"}),
        session_json({**federated, "SecretAccessKey": "x" + federated["SecretAccessKey"][1:]}),
        session_json({**federated, "SessionToken": federated["SessionToken"][:-4] + "AAAA"}),
        json.dumps({"sessionId": federated["AccessKeyId"]}),
        "not json",
    ]
    for session in sessions:
        assert federation(emu, Action="getSigninToken", Session=session)[::2] == (
            400,
            "Invalid credentials parameter",
        )
    assert federation(emu, Action="getSigninToken")[::2] == (400, "Invalid credentials parameter")
    emu.expire_sessions(alice)
    status, _, body = federation(emu, Action="getSigninToken", Session=session_json(federated))
    assert (status, body) == (400, "The session credentials have expired")
    assert federation(emu, Action="logout")[0] == 400


def test_login_redirects_to_the_console_while_the_token_is_fresh(
    make_client: ClientFactory,
) -> None:
    offset = [0.0]
    with StsEmulator(clock=lambda: time.time() + offset[0]) as emu:
        user = emu.add_user("alice")
        client = make_client(user.access_key_id, user.secret_access_key, url=emu.url)
        token = signin_token(emu, client.get_federation_token(Name="alice")["Credentials"])
        status, headers, _ = federation(
            emu, Action="login", Issuer="mfa-session", Destination=CONSOLE, SigninToken=token
        )
        assert (status, headers["location"]) == (302, CONSOLE)
        for destination in ("https://evil.example/console", "http://console.aws.amazon.com/"):
            status, _, body = federation(
                emu, Action="login", Destination=destination, SigninToken=token
            )
            assert (status, body) == (400, "Destination must be an https URL of the AWS console")
        assert federation(emu, Action="login", Destination=CONSOLE, SigninToken="x")[0] == 400
        offset[0] = 15 * 60  # the URL works for 15 minutes
        status, _, body = federation(emu, Action="login", Destination=CONSOLE, SigninToken=token)
        assert (status, body) == (400, "The sign-in token is invalid or has expired")
        assert [c.outcome for c in emu.calls("login")] == ["ok"] + ["InvalidDestination"] * 2 + [
            "InvalidSigninToken"
        ] * 2


def test_fail_next_answers_the_federation_endpoint_with_a_status_and_body(
    emu: StsEmulator, alice_client: StsClient
) -> None:
    federated = alice_client.get_federation_token(Name="alice")["Credentials"]
    emu.fail_next("getSigninToken", "ServiceFailure", "Internal failure", 500)
    emu.fail_next("getSigninToken", "BrokenAnswer", '{"SigninTok', 200)
    emu.fail_next("getSigninToken", "LostAnswer", "Bad Gateway", 502, after=True)
    session = session_json(federated)
    assert federation(emu, Action="getSigninToken", Session=session)[::2] == (
        500,
        "Internal failure",
    )
    status, headers, body = federation(emu, Action="getSigninToken", Session=session)
    assert (status, headers["content-type"], body) == (200, "application/json", '{"SigninTok')
    assert federation(emu, Action="getSigninToken", Session=session)[0] == 502
    assert len(emu.signin_tokens()) == 1  # the lost answer's token was issued
    signin_token(emu, federated)
    assert [c.outcome for c in emu.calls("getSigninToken")] == [
        "ServiceFailure",
        "BrokenAnswer",
        "LostAnswer",
        "ok",
    ]


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


# --------------------------------------------------------------------------- answer faults


def gst(client: StsClient, device: Device) -> dict[str, Any]:
    return dict(
        client.get_session_token(
            SerialNumber=device.serial, TokenCode=pyotp.TOTP(device.seed).now()
        )
    )


@pytest.mark.parametrize("kind", ["truncate", "malformed"])
def test_a_broken_answer_cannot_be_parsed_and_still_holds_the_secrets(
    emu: StsEmulator, alice_client: StsClient, device: Device, kind: str
) -> None:
    from botocore.parsers import ResponseParserError

    emu.sabotage_next("GetSessionToken", kind)
    with pytest.raises(ResponseParserError) as raised:
        gst(alice_client, device)
    (session,) = emu.sessions()  # carried out, then broken on the way back
    assert session.secret_access_key in str(raised.value)  # what mfa-session must never show
    assert [call.outcome for call in emu.calls("GetSessionToken")] == [kind]


def test_a_field_missing_and_an_expiration_in_the_past(
    emu: StsEmulator, alice_client: StsClient, device: Device
) -> None:
    emu.sabotage_next("GetSessionToken", "missing-field")
    emu.sabotage_next("GetSessionToken", "expired")
    first = gst(alice_client, device)["Credentials"]
    assert "SecretAccessKey" not in first and first["SessionToken"]
    # The emulator refuses the same code twice: the second call uses the next step's.
    second = alice_client.get_session_token(
        SerialNumber=device.serial, TokenCode=pyotp.TOTP(device.seed).at(time.time() + 30)
    )["Credentials"]
    assert second["Expiration"].year == 2001
    assert [call.outcome for call in emu.calls("GetSessionToken")] == ["missing-field", "expired"]


def test_a_dropped_answer_was_carried_out(
    emu: StsEmulator, alice_client: StsClient, device: Device
) -> None:
    from botocore.exceptions import ConnectionClosedError

    emu.sabotage_next("GetSessionToken", "drop")
    with pytest.raises(ConnectionClosedError):
        gst(alice_client, device)
    assert len(emu.sessions()) == 1  # the code is spent: a retry with it is refused
    assert [call.outcome for call in emu.calls("GetSessionToken")] == ["drop"]


def test_a_hanging_answer_until_released_and_stop_does_not_wait_for_it() -> None:
    from botocore.exceptions import ReadTimeoutError

    with StsEmulator() as emulator:
        user = emulator.add_user("alice")
        own = emulator.add_mfa_device(user)
        emulator.sabotage_next("GetSessionToken", "hang", times=2)
        client = botocore.session.Session().create_client(
            "sts",
            region_name="eu-west-1",
            endpoint_url=emulator.url,
            aws_access_key_id=user.access_key_id,
            aws_secret_access_key=user.secret_access_key,
            config=Config(retries={"total_max_attempts": 1}, read_timeout=1, connect_timeout=1),
        )
        started = time.monotonic()
        with pytest.raises(ReadTimeoutError):
            gst(client, own)
        assert 1 <= time.monotonic() - started < 3
        assert emulator.sessions() == []  # a hang is not carried out
        emulator.release_hangs()
        client.close()
        started = time.monotonic()
    assert time.monotonic() - started < 3  # stop() ended the second hang too


def test_an_unknown_sabotage_is_refused(emu: StsEmulator) -> None:
    with pytest.raises(ValueError, match="unknown sabotage"):
        emu.sabotage_next("GetSessionToken", "explode")
