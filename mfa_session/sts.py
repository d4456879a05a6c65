"""The STS calls, through botocore so that endpoints, proxies, CA bundles and retries
behave exactly as in every other AWS tool. botocore is imported here only: never on
the cache-hit path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mfa_session.config import MfaProfile
from mfa_session.credentials import Credentials
from mfa_session.debug import debug
from mfa_session.errors import StsError, WrongCodeError

if TYPE_CHECKING:
    BaseClient = Any  # botocore builds client methods at run time; stubs cannot see them

_THROTTLING = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests"}


def get_session_token(mfa: MfaProfile, code: str, duration: int) -> Credentials:
    """GetSessionToken with the long-term keys and one MFA code."""
    client = _client(mfa)
    debug("GetSessionToken for profile %s, device %s, %d s", mfa.name, mfa.mfa_serial, duration)
    try:
        response = client.get_session_token(
            DurationSeconds=duration, SerialNumber=mfa.mfa_serial, TokenCode=code
        )
    except Exception as exc:
        translated = _translate(exc, mfa, client)
        if translated is None:
            raise
        raise translated from exc
    return _credentials(response["Credentials"])


def _client(mfa: MfaProfile) -> BaseClient:
    import botocore.session
    from botocore.config import Config

    session = botocore.session.Session(profile=mfa.name)
    region = session.get_config_variable("region") or "us-east-1"
    options: dict[str, Any] = {"connect_timeout": 10}
    if not session.get_config_variable("retry_mode"):
        options["retries"] = {"mode": "standard"}
    return session.create_client(
        "sts",
        region_name=region,
        aws_access_key_id=mfa.keys.access_key_id,
        aws_secret_access_key=mfa.keys.secret_access_key,
        config=Config(**options),
    )


def _credentials(raw: dict[str, Any]) -> Credentials:
    return Credentials(
        access_key_id=raw["AccessKeyId"],
        secret_access_key=raw["SecretAccessKey"],
        session_token=raw["SessionToken"],
        expiration=raw["Expiration"],
    )


def _translate(exc: Exception, mfa: MfaProfile, client: BaseClient) -> StsError | None:
    """One clear error for each way STS can say no; anything unknown passes through."""
    from botocore import exceptions as botocore_errors

    endpoint = client.meta.endpoint_url
    if isinstance(exc, botocore_errors.ClientError):
        error = exc.response.get("Error", {})
        return _client_error(str(error.get("Code", "")), str(error.get("Message", "")), mfa)
    if isinstance(exc, botocore_errors.SSLError):
        return StsError(
            f"TLS to STS at {endpoint} failed",
            hint="check AWS_CA_BUNDLE / ca_bundle and any TLS-inspecting proxy",
        )
    if isinstance(exc, botocore_errors.ProxyConnectionError):
        return StsError(
            f"cannot reach STS at {endpoint} through the proxy",
            hint="check HTTPS_PROXY / NO_PROXY",
        )
    if isinstance(
        exc,
        botocore_errors.EndpointConnectionError
        | botocore_errors.ConnectionClosedError
        | botocore_errors.ConnectTimeoutError
        | botocore_errors.ReadTimeoutError,
    ):
        return StsError(
            f"cannot reach STS at {endpoint}",
            hint="check the network, HTTPS_PROXY, and endpoint_url / AWS_ENDPOINT_URL_STS",
        )
    if isinstance(exc, botocore_errors.BotoCoreError):
        return StsError(f"STS call failed: {exc}")
    return None


def _client_error(code: str, message: str, mfa: MfaProfile) -> StsError:
    profile, serial = mfa.name, mfa.mfa_serial
    if code == "AccessDenied" and "MultiFactorAuthentication" in message:
        if "unable to validate" in message:
            return StsError(
                f"AWS does not know MFA device {serial} for the user of profile {profile!r}",
                hint="check mfa_serial against the device ARN shown in IAM",
            )
        return WrongCodeError(
            f"STS rejected the MFA code for {serial}",
            hint="a code works once and for about a minute; check the device and this clock",
        )
    if code == "InvalidClientTokenId":
        return StsError(
            f"AWS does not accept access key {mfa.keys.access_key_id} of profile {profile!r}: "
            "it is deleted, inactive or mistyped",
            hint="create a new access key in IAM and put it in the credentials file",
        )
    if code == "SignatureDoesNotMatch":
        if "expired" in message.lower():
            return StsError(
                "STS refused the request because this computer's clock is off",
                hint="sync the clock (e.g. 'timedatectl set-ntp true'); TOTP codes need it too",
            )
        return StsError(
            f"the secret access key of profile {profile!r} does not match its access key id",
            hint="copy the secret again from when the key was created, or create a new key",
        )
    if code == "ExpiredToken":
        return StsError(f"the credentials of profile {profile!r} have expired")
    if code in _THROTTLING:
        return StsError(
            "STS is throttling requests (still after retries)",
            hint="wait a minute and try again",
        )
    if code == "ValidationError":
        return StsError(f"STS refused the request: {message}")
    if code == "AccessDenied":
        return StsError(f"STS denied the request for profile {profile!r}: {message}")
    return StsError(f"STS error {code}: {message}")
