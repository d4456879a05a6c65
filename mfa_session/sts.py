"""The STS calls, through botocore so that endpoints, proxies, CA bundles and retries
behave exactly as in every other AWS tool. botocore is imported here only: never on
the cache-hit path.

Two rules keep secrets out of errors: a message is never built from a response body
or from botocore's exception text (a parser error quotes the body, which may hold a
live session), and botocore's exceptions are never chained to ours (``from None``),
so not even a --debug traceback shows them. Every call has a time budget: connect and
read timeouts and retries together stay within it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mfa_session import environment
from mfa_session.config import MfaProfile, RoleHop
from mfa_session.credentials import Credentials, utc_now
from mfa_session.deadline import Overrun, within
from mfa_session.debug import debug
from mfa_session.errors import (
    CodeSpentUnseen,
    ConfigError,
    StsError,
    WrongCodeError,
    sensitive,
)

if TYPE_CHECKING:
    BaseClient = Any  # botocore builds client methods at run time; stubs cannot see them

DEFAULT_TIMEOUT = 30.0  # seconds for one call, retries included
MIN_SESSION_SECONDS = 60  # a session ending sooner than this is a clock or proxy problem
STANDARD_ATTEMPTS, LEGACY_ATTEMPTS = 3, 5  # botocore's defaults per retry mode
MAX_BACKOFF = 20.0  # botocore's longest sleep between attempts (standard mode)
MIN_ATTEMPT_SECONDS = 2.0  # time for a connection and an answer, or it is no attempt
_THROTTLING = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests"}
_MESSAGE_LIMIT = 200


def time_budget(environ: Mapping[str, str]) -> float:
    """MFA_SESSION_STS_TIMEOUT: seconds for one call, retries included (default 30)."""
    return environment.seconds(environ, environment.STS_TIMEOUT, DEFAULT_TIMEOUT, most=600)


class Sts:
    """STS for one IAM user: calls signed with its long-term keys or a session of it."""

    def __init__(self, mfa: MfaProfile, budget: float = DEFAULT_TIMEOUT) -> None:
        self.mfa = mfa
        self.budget = budget
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
        return session_credentials(response, "GetSessionToken")

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
        return session_credentials(response, "AssumeRole")

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
        return session_credentials(response, "GetFederationToken")

    def user_name(self, via: Credentials | None) -> str:
        """The IAM user's name, from GetCallerIdentity (e.g. for a role session name)."""
        arn = self.caller_arn(via)
        return arn.rsplit("/", 1)[-1] if ":user/" in arn else arn.rsplit(":", 1)[-1]

    def caller_arn(self, via: Credentials | None) -> str:
        """Who the keys belong to; GetCallerIdentity needs no permission at all."""
        arn = self._call(via, "get_caller_identity", None).get("Arn")
        if not isinstance(arn, str) or not arn.startswith("arn:"):
            raise unreadable("STS", "GetCallerIdentity")
        return arn

    def _call(
        self, via: Credentials | None, operation: str, hop: RoleHop | None, **arguments: Any
    ) -> dict[str, Any]:
        client = self._client(via)
        try:
            response: dict[str, Any] = within(
                self.budget, functools.partial(getattr(client, operation), **arguments)
            )
        except Exception as exc:
            translated = _translate(exc, self.mfa, client, hop, operation)
            if translated is None:
                raise
            raise translated from None
        return response

    def _client(self, via: Credentials | None) -> BaseClient:
        name = via.access_key_id if via is not None else ""
        if name not in self._clients:
            self._clients[name] = new_client(self.mfa, via, "sts", budget=self.budget)
        return self._clients[name]


def new_client(
    mfa: MfaProfile,
    via: Credentials | None,
    service: str,
    attempts: int | None = None,
    budget: float = DEFAULT_TIMEOUT,
) -> BaseClient:
    """A botocore client of ``service`` signed with the user's keys or a session of them;
    ``attempts`` caps botocore's retries (1: none) for calls that must not repeat. All
    attempts together fit in ``budget`` seconds."""
    import botocore.session
    from botocore.config import Config

    # The profile with the keys: its region, endpoint_url, ca_bundle and retry settings.
    session = botocore.session.Session(profile=mfa.name)
    region = session.get_config_variable("region") or "us-east-1"
    options: dict[str, Any] = {}
    # botocore always reports a default retry_mode; only the user's own choice may win.
    mode = (  # as botocore ranks them: the environment, then the profile
        os.environ.get("AWS_RETRY_MODE") or session.get_scoped_config().get("retry_mode") or ""
    ).strip() or "standard"
    wanted = attempts or _configured_attempts(session, mode)
    tries, per_attempt = attempts_within(budget, wanted, mode)
    options["retries"] = {"mode": mode, "total_max_attempts": tries}
    options["connect_timeout"] = min(5.0, per_attempt / 3)
    options["read_timeout"] = max(1.0, per_attempt - options["connect_timeout"])
    if via is None:
        key_id, secret_key, token = mfa.keys.access_key_id, mfa.keys.secret_access_key, None
    else:
        key_id, secret_key, token = via.access_key_id, via.secret_access_key, via.session_token
    try:
        return session.create_client(
            service,
            region_name=region,
            config=Config(**options),
            aws_access_key_id=key_id,
            aws_secret_access_key=secret_key,
            aws_session_token=token,
        )
    except ValueError as exc:
        if "endpoint" not in str(exc).lower():
            raise
        variable = f"AWS_ENDPOINT_URL_{service.upper()}"  # botocore's "Invalid endpoint: ..."
        raise ConfigError(
            f"the {service.upper()} endpoint URL is not valid",
            hint=f"check endpoint_url in profile {mfa.name!r}, AWS_ENDPOINT_URL and {variable}",
        ) from None


def attempts_within(budget: float, wanted: int, mode: str = "standard") -> tuple[int, float]:
    """How many attempts, and how long each, fit in ``budget`` with botocore's longest
    pauses between them: fewer than the user wanted rather than an overrun."""
    for tries in range(max(1, wanted), 1, -1):
        backoff = sum(longest_backoff(attempt, mode) for attempt in range(1, tries))
        per_attempt = (budget - backoff) / tries
        if per_attempt >= MIN_ATTEMPT_SECONDS:
            return tries, per_attempt
    return 1, budget


def longest_backoff(failed_attempts: int, mode: str) -> float:
    """The longest sleep botocore takes after that many failed attempts: the random factor
    at 1 and the throttling scale (1 s); the standard mode stops at 20 s."""
    delay = 2.0 ** (failed_attempts - 1)
    return delay if mode == "legacy" else min(delay, MAX_BACKOFF)


def _configured_attempts(session: Any, mode: str) -> int:
    """The user's max_attempts / AWS_MAX_ATTEMPTS, else the mode's default (legacy: 5)."""
    default = LEGACY_ATTEMPTS if mode == "legacy" else STANDARD_ATTEMPTS
    try:
        configured = int(session.get_config_variable("max_attempts") or default)
    except (TypeError, ValueError):
        configured = default
    return max(1, configured)


def session_credentials(response: Mapping[str, Any], action: str) -> Credentials:
    """The session in an answer, checked: all four fields, and an Expiration a minute or
    more away (a past one means a wrong clock or a meddling proxy; never cache it)."""
    from datetime import datetime

    raw = response.get("Credentials")
    fields = ("AccessKeyId", "SecretAccessKey", "SessionToken")
    if not isinstance(raw, Mapping) or not all(
        isinstance(raw.get(name), str) and raw.get(name) for name in fields
    ):
        raise unreadable("STS", action)
    expiration = raw.get("Expiration")
    if not isinstance(expiration, datetime) or expiration.tzinfo is None:
        raise unreadable("STS", action)
    credentials = Credentials(
        access_key_id=raw["AccessKeyId"],
        secret_access_key=sensitive(raw["SecretAccessKey"]),
        session_token=sensitive(raw["SessionToken"]),
        expiration=expiration,
    )
    left = credentials.seconds_left(utc_now())
    if left < MIN_SESSION_SECONDS:
        when = "ended" if left <= 0 else f"ends in {left} s"
        raise StsError(
            f"STS sent a session ({action}) that {when}, by this computer's clock "
            f"(Expiration {credentials.expiration_iso}); it was not used",
            hint="check this computer's clock (e.g. 'timedatectl'), and any proxy between "
            "you and STS",
        )
    return credentials


def unreadable(service: str, action: str) -> StsError:
    return StsError(
        f"{service} sent an answer that could not be read ({action})",
        hint="a proxy or TLS-inspecting middlebox may be changing answers; try again, "
        "or check HTTPS_PROXY",
    )


def _translate(
    exc: Exception, mfa: MfaProfile, client: BaseClient, hop: RoleHop | None, operation: str
) -> StsError | None:
    """One clear error for each way STS can say no; anything unknown passes through."""
    from botocore import exceptions as botocore_errors

    if isinstance(exc, botocore_errors.ClientError):
        error = exc.response.get("Error", {})
        code, message = str(error.get("Code", "")), str(error.get("Message", ""))
        retried = int(exc.response.get("ResponseMetadata", {}).get("RetryAttempts") or 0)
        return _client_error(code, clean_message(message), mfa, hop, retried)
    return transport_error(
        exc, "STS", client.meta.endpoint_url, "AWS_ENDPOINT_URL_STS", _action_name(operation)
    )


def _action_name(operation: str) -> str:
    return "".join(word.capitalize() for word in operation.split("_"))


def clean_message(message: str) -> str:
    """AWS's own message, on one line and bounded: it is shown, so keep it tame."""
    first = " ".join(message.split())
    return first if len(first) <= _MESSAGE_LIMIT else first[: _MESSAGE_LIMIT - 1] + "…"


def transport_error(
    exc: Exception, service: str, endpoint: str, endpoint_variable: str, action: str
) -> StsError | None:
    """One clear error for each way a call can fail to reach AWS or to be understood;
    None for exceptions that are not botocore's. Never botocore's own text."""
    from botocore import exceptions as botocore_errors
    from botocore.parsers import ResponseParserError

    debug("%s %s failed: %s", service, action, type(exc).__name__)
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
    timeouts = (botocore_errors.ConnectTimeoutError, botocore_errors.ReadTimeoutError, Overrun)
    if isinstance(exc, timeouts):
        return StsError(
            f"cannot reach {service} at {endpoint}: no answer in time",
            hint=f"check the network and HTTPS_PROXY; {environment.STS_TIMEOUT} sets the "
            "time allowed",
        )
    if isinstance(
        exc, botocore_errors.EndpointConnectionError | botocore_errors.ConnectionClosedError
    ):
        return StsError(
            f"cannot reach {service} at {endpoint}",
            hint=f"check the network, HTTPS_PROXY, and endpoint_url / {endpoint_variable}",
        )
    if isinstance(exc, ResponseParserError | botocore_errors.ResponseStreamingError):
        return unreadable(service, action)
    if isinstance(exc, botocore_errors.ParamValidationError):
        return StsError(f"{service} {action} was not sent: a parameter is not valid")
    if isinstance(exc, botocore_errors.BotoCoreError):
        return StsError(f"{service} {action} failed ({type(exc).__name__})")
    return None


def _client_error(
    code: str, message: str, mfa: MfaProfile, hop: RoleHop | None, retried: int
) -> StsError:
    profile, serial = mfa.name, mfa.mfa_serial
    if code == "AccessDenied" and "MultiFactorAuthentication" in message:
        if "unable to validate" in message:
            return StsError(
                f"AWS does not know MFA device {serial} for the user of profile {profile!r}",
                hint="check mfa_serial against the device ARN shown in IAM",
            )
        if retried:
            return CodeSpentUnseen(
                f"STS rejected the MFA code for {serial} on a retry: the first attempt may "
                "have used it and its answer got lost",
                hint="a code works once: use the next one",
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
            hint=replace_key_hint(mfa),
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
    if code.isdigit() or code in ("InternalFailure", "ServiceUnavailable", "InternalError"):
        return StsError(
            f"STS failed on its side ({code})",
            hint="try again in a minute; see health.aws.amazon.com",
        )
    return StsError(f"STS error {code}: {message}")


def replace_key_hint(mfa: MfaProfile) -> str:
    """How to put a working key where this profile's keys live."""
    if mfa.keys.in_keyring:
        return (
            f"create a new access key in IAM and store it: 'mfa-session keys remove --profile "
            f"{mfa.name} --yes' then 'mfa-session keys add --profile {mfa.name}'"
        )
    return (
        f"create a new access key in IAM and put it in {mfa.keys.where or 'the credentials file'}"
    )


def _role_error(code: str, message: str, hop: RoleHop) -> StsError | None:
    role = hop.role_arn
    where = (
        "--role-arn and --external-id"
        if hop.profile == "--role-arn"
        else f"role_arn and external_id for profile {hop.profile!r}"
    )
    if code == "AccessDenied" and "sts:AssumeRole" in message:
        return StsError(
            f"AWS denied assuming role {role}: it does not exist, its trust policy does not "
            "allow this user (or needs MFA), or the external id is wrong",
            hint=f"check {where} and the role's trust policy",
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
    if code == "ValidationError" and "roleArn" in message:
        return StsError(
            f"{role!r} is not a role ARN", hint=f"check {where}: arn:aws:iam::ACCOUNT:role/NAME"
        )
    return None
