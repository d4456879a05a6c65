"""The STS calls, through botocore so that endpoints, proxies, CA bundles and retries
behave exactly as in every other AWS tool. botocore is imported here only: never on
the cache-hit path.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from mfa_session.config import MfaProfile, RoleHop
from mfa_session.credentials import Credentials
from mfa_session.debug import debug
from mfa_session.errors import StsError, WrongCodeError

if TYPE_CHECKING:
    BaseClient = Any  # botocore builds client methods at run time; stubs cannot see them

_THROTTLING = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests"}


class Sts:
    """STS for one IAM user: calls signed with its long-term keys or a session of it."""

    def __init__(self, mfa: MfaProfile) -> None:
        self.mfa = mfa
        self._clients: dict[str, BaseClient] = {}

    def get_session_token(self, code: str, duration: int) -> Credentials:
        """GetSessionToken with the long-term keys and one MFA code."""
        mfa = self.mfa
        debug("GetSessionToken for %s, device %s, %d s", mfa.name, mfa.mfa_serial, duration)
        response = self._call(
            None,
            "get_session_token",
            None,
            DurationSeconds=duration,
            SerialNumber=mfa.mfa_serial,
            TokenCode=code,
        )
        return _credentials(response["Credentials"])

    def assume_role(
        self,
        hop: RoleHop,
        session_name: str,
        duration: int,
        via: Credentials | None,
        mfa: tuple[str, str] | None = None,
    ) -> Credentials:
        """AssumeRole signed with `via` (a session) or, when None, the long-term keys;
        `mfa` is (serial, code) when this call itself carries the MFA."""
        arguments: dict[str, Any] = {
            "RoleArn": hop.role_arn,
            "RoleSessionName": session_name,
            "DurationSeconds": duration,
        }
        if hop.external_id:
            arguments["ExternalId"] = hop.external_id
        if mfa is not None:
            arguments["SerialNumber"], arguments["TokenCode"] = mfa
        debug(
            "AssumeRole %s as %s for %d s (MFA in call: %s)",
            hop.role_arn,
            session_name,
            duration,
            mfa is not None,
        )
        response = self._call(via, "assume_role", hop, **arguments)
        return _credentials(response["Credentials"])

    def get_federation_token(self, name: str, duration: int, policy: str) -> Credentials:
        """GetFederationToken with the long-term keys: the only console session AWS gives an
        IAM user without a role, and it carries no MFA context."""
        debug("GetFederationToken for %s as %s, %d s", self.mfa.name, name, duration)
        response = self._call(
            None,
            "get_federation_token",
            None,
            Name=name,
            DurationSeconds=duration,
            Policy=policy,
        )
        return _credentials(response["Credentials"])

    def user_name(self, via: Credentials | None) -> str:
        """The IAM user's name, from GetCallerIdentity (e.g. for a role session name)."""
        arn = self.caller_arn(via)
        return arn.rsplit("/", 1)[-1] if ":user/" in arn else arn.rsplit(":", 1)[-1]

    def caller_arn(self, via: Credentials | None) -> str:
        """Who the keys belong to; GetCallerIdentity needs no permission at all."""
        return str(self._call(via, "get_caller_identity", None)["Arn"])

    def _call(
        self, via: Credentials | None, operation: str, hop: RoleHop | None, **arguments: Any
    ) -> dict[str, Any]:
        client = self._client(via)
        try:
            response: dict[str, Any] = getattr(client, operation)(**arguments)
        except Exception as exc:
            translated = _translate(exc, self.mfa, client, hop)
            if translated is None:
                raise
            raise translated from exc
        return response

    def _client(self, via: Credentials | None) -> BaseClient:
        name = via.access_key_id if via is not None else ""
        if name not in self._clients:
            self._clients[name] = new_client(self.mfa, via, "sts")
        return self._clients[name]


def new_client(
    mfa: MfaProfile, via: Credentials | None, service: str, attempts: int | None = None
) -> BaseClient:
    """A botocore client of ``service`` signed with the user's keys or a session of them;
    ``attempts`` caps botocore's retries (1: none) for calls that must not repeat."""
    import botocore.session
    from botocore.config import Config

    # The profile with the keys: its region, endpoint_url, ca_bundle and retry settings.
    session = botocore.session.Session(profile=mfa.name)
    region = session.get_config_variable("region") or "us-east-1"
    options: dict[str, Any] = {"connect_timeout": 10}
    # botocore always reports a default retry_mode; only the user's own choice may win.
    if attempts is not None:
        options["retries"] = {"mode": "standard", "total_max_attempts": attempts}
        options["read_timeout"] = 30
    elif not (session.get_scoped_config().get("retry_mode") or os.environ.get("AWS_RETRY_MODE")):
        options["retries"] = {"mode": "standard"}
    if via is None:
        key_id, secret, token = mfa.keys.access_key_id, mfa.keys.secret_access_key, None
    else:
        key_id, secret, token = via.access_key_id, via.secret_access_key, via.session_token
    return session.create_client(
        service,
        region_name=region,
        config=Config(**options),
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        aws_session_token=token,
    )


def _credentials(raw: dict[str, Any]) -> Credentials:
    return Credentials(
        access_key_id=raw["AccessKeyId"],
        secret_access_key=raw["SecretAccessKey"],
        session_token=raw["SessionToken"],
        expiration=raw["Expiration"],
    )


def _translate(
    exc: Exception, mfa: MfaProfile, client: BaseClient, hop: RoleHop | None
) -> StsError | None:
    """One clear error for each way STS can say no; anything unknown passes through."""
    from botocore import exceptions as botocore_errors

    if isinstance(exc, botocore_errors.ClientError):
        error = exc.response.get("Error", {})
        code, message = str(error.get("Code", "")), str(error.get("Message", ""))
        return _client_error(code, message, mfa, hop)
    return transport_error(exc, "STS", client.meta.endpoint_url, "AWS_ENDPOINT_URL_STS")


def transport_error(
    exc: Exception, service: str, endpoint: str, endpoint_variable: str
) -> StsError | None:
    """One clear error for each way a call can fail to reach AWS; None for the rest."""
    from botocore import exceptions as botocore_errors

    if isinstance(exc, botocore_errors.SSLError):
        return StsError(
            f"TLS to {service} at {endpoint} failed",
            hint="check AWS_CA_BUNDLE / ca_bundle and any TLS-inspecting proxy",
        )
    if isinstance(exc, botocore_errors.ProxyConnectionError):
        return StsError(
            f"cannot reach {service} at {endpoint} through the proxy",
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
            f"cannot reach {service} at {endpoint}",
            hint=f"check the network, HTTPS_PROXY, and endpoint_url / {endpoint_variable}",
        )
    if isinstance(exc, botocore_errors.BotoCoreError):
        return StsError(f"{service} call failed: {exc}")
    return None


def _client_error(code: str, message: str, mfa: MfaProfile, hop: RoleHop | None) -> StsError:
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
    if hop is not None:
        role_error = _role_error(code, message, hop)
        if role_error is not None:
            return role_error
    if code == "InvalidClientTokenId":
        return StsError(
            f"AWS does not accept access key {mfa.keys.access_key_id} of profile {profile!r}: "
            "it is deleted, inactive or mistyped",
            hint="create a new access key in IAM and put it in the credentials file",
        )
    if code == "SignatureDoesNotMatch":
        if "expired" in message.lower() or "not yet current" in message.lower():
            return StsError(
                "STS refused the request because this computer's clock is off",
                hint="sync the clock (e.g. 'timedatectl set-ntp true'); TOTP codes need it too",
            )
        return StsError(
            f"the secret access key of profile {profile!r} does not match its access key id",
            hint="copy the secret again from when the key was created, or create a new key",
        )
    if code == "ExpiredToken":
        return StsError(
            f"a cached session of profile {profile!r} has expired",
            hint=f"run 'mfa-session clear --profile {profile}' and try again",
        )
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


def _role_error(code: str, message: str, hop: RoleHop) -> StsError | None:
    role = hop.role_arn
    if code == "AccessDenied" and "sts:AssumeRole" in message:
        return StsError(
            f"AWS denied assuming role {role}: it does not exist, its trust policy does not "
            "allow this user (or needs MFA), or the external id is wrong",
            hint=f"check role_arn and external_id for profile {hop.profile!r} and the role's "
            "trust policy",
        )
    if code == "ValidationError" and "MaxSessionDuration" in message:
        return StsError(
            f"role {role} does not allow sessions that long (its MaxSessionDuration is less)",
            hint="ask for less with --duration or duration_seconds, or raise the role's "
            "maximum session duration in IAM",
        )
    if code == "ValidationError" and "role chaining" in message:
        return StsError(
            f"AWS caps role {role} at 1 hour when it is assumed from another session",
            hint="ask for 3600 seconds or less",
        )
    return None
