"""A strict AWS STS (and the MFA corner of IAM) emulator that serves real HTTP on loopback.

Real botocore clients talk to it, so code under test goes through the same
SigV4 signing, query-protocol serialisation and XML error parsing as against
AWS. It is strict on purpose: it recomputes every signature, refuses a TOTP
code it has accepted before and answers with AWS's own error codes and texts,
because a lenient fake would hide exactly the bugs it exists to catch.

STS: GetSessionToken, GetCallerIdentity and AssumeRole (trust, external id, MFA,
role chaining). IAM, on the same port and told apart by the query's Version:
the virtual MFA device life cycle (create, enable, list, deactivate, delete) and
GetUser, under the common "self-manage MFA" policy. Console sign-in, on the same
port: STS GetFederationToken and the federation endpoint at ``/federation``
(getSigninToken, login). Access keys, in IAM: Create/List/Update/DeleteAccessKey on the
caller's own user (two keys at most, MFA once enrolled), a new key authenticating only after
``key_activation_delay``.

Demo server: ``python -m tests.sts_emulator --state-file PATH [--port 0]``.
"""

from __future__ import annotations

import argparse
import base64
import calendar
import contextlib
import functools
import hashlib
import hmac
import itertools
import json
import os
import re
import secrets
import signal
import socket
import string
import struct
import sys
import threading
import time
import traceback
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, quote, urlsplit
from xml.sax.saxutils import escape

import pyotp

API_VERSION = "2011-06-15"
XMLNS = f"https://sts.amazonaws.com/doc/{API_VERSION}/"
SERVICE = "sts"
IAM_API_VERSION = "2010-05-08"
IAM_XMLNS = f"https://iam.amazonaws.com/doc/{IAM_API_VERSION}/"
IAM_SERVICE = "iam"
# The query's Version says which API a request is for: its signing service and XML namespace.
APIS = {API_VERSION: (SERVICE, XMLNS), IAM_API_VERSION: (IAM_SERVICE, IAM_XMLNS)}
ALGORITHM = "AWS4-HMAC-SHA256"
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
ISO8601 = "%Y-%m-%dT%H:%M:%SZ"
MAX_CLOCK_SKEW = 15 * 60  # seconds a signature may be early or late, as AWS allows
TOTP_STEP = 30
MAX_BODY = 1 << 20
DEFAULT_ACCOUNT = "123456789012"

# GetSessionToken limits for IAM users (root users would be capped at 3600).
MIN_DURATION = 900
MAX_DURATION = 129600
DEFAULT_DURATION = 43200
ROOT_MAX_DURATION = 3600  # root sessions: longer requests are silently cut to this

# AssumeRole limits: the API's own bounds, and AWS's cap on chained role sessions.
ROLE_MAX_DURATION = 43200
ROLE_DEFAULT_DURATION = 3600
CHAINED_MAX_DURATION = 3600

# IAM's virtual MFA devices.
MAX_MFA_DEVICES_PER_USER = 8
ENABLE_PAST_STEPS = 3  # EnableMFADevice: the first code may be this many steps old
VIRTUAL_SEED_LENGTH = 64  # AWS's Base32StringSeed is 64 base32 characters

# AWS's message texts, verbatim (including their trailing spaces and periods).
INVALID_TOKEN = "The security token included in the request is invalid."
EXPIRED_TOKEN = "The security token included in the request is expired"
MISSING_AUTH = "Request is missing Authentication Token"
BAD_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
MFA_UNVALIDATED = (
    "MultiFactorAuthentication failed, unable to validate MFA code. "
    "Please verify your MFA serial number is valid and associated with this user."
)
MFA_BAD_CODE = "MultiFactorAuthentication failed with invalid MFA one time pass code. "
SESSION_CALLS_GST = "Cannot call GetSessionToken with session credentials"
ROLE_MAX_EXCEEDED = (
    "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
)
ROLE_CHAIN_LIMIT = (
    "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by "
    "role chaining."
)
ROOT_ASSUMES_ROLE = "Roles may not be assumed by root accounts."
MFA_NAME_TAKEN = "MFADevice entity at the same path and name already exists."
MFA_IN_USE = "MFA Device is already in use."
BAD_AUTHENTICATION_CODE = "Authentication code for device is not valid."
MFA_QUOTA = f"Cannot exceed quota for MFADevicesPerUser: {MAX_MFA_DEVICES_PER_USER}"
NON_USER_NEEDS_NAME = "Must specify userName when calling with non-User credentials"

_ID_ALPHABET = string.ascii_uppercase + string.digits


class StsError(Exception):
    """An AWS error answer: raised anywhere while handling a request, rendered once."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def _denied(message: str) -> StsError:
    return StsError("AccessDenied", message, 403)


def _bad_signature(message: str = BAD_SIGNATURE) -> StsError:
    return StsError("SignatureDoesNotMatch", message, 403)


def _incomplete_signature(message: str) -> StsError:
    return StsError("IncompleteSignature", message, 400)


def _not_authorized(principal: str, action: str, resource: str, why: str = "") -> StsError:
    """AWS's policy refusal; ``why`` is its optional tail (explicit deny, no allowing policy)."""
    return _denied(
        f"User: {principal} is not authorized to perform: {action} on resource: {resource}{why}"
    )


def _explicit_deny(principal: str, action: str, resource: str) -> StsError:
    return _not_authorized(
        principal, action, resource, " with an explicit deny in an identity-based policy"
    )


def _no_allowing_policy(principal: str, action: str, resource: str) -> StsError:
    return _not_authorized(
        principal, action, resource, f" because no identity-based policy allows the {action} action"
    )


# --------------------------------------------------------------------------- public records


@dataclass(frozen=True)
class User:
    """An IAM user (or an account's root user) with one long-term access key.

    The key's state lives in the emulator. A root user's id is its account number.
    """

    name: str
    account: str
    user_id: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    root: bool = False
    created_at: float = 0.0

    @property
    def arn(self) -> str:
        if self.root:
            return f"arn:aws:iam::{self.account}:root"
        return f"arn:aws:iam::{self.account}:user/{self.name}"


@dataclass(frozen=True)
class Role:
    """An IAM role and, in place of a trust policy, the few conditions AWS would check."""

    account: str
    name: str
    role_id: str
    require_mfa: bool
    max_session_duration: int
    external_id: str | None = field(default=None, repr=False)
    trusted_arns: frozenset[str] | None = None  # users who may assume it; None: every user

    @property
    def arn(self) -> str:
        return f"arn:aws:iam::{self.account}:role/{self.name}"


@dataclass(frozen=True)
class Device:
    """A virtual MFA device; the seed is what an authenticator app would hold."""

    serial: str
    seed: str = field(repr=False)


class VirtualDevice(NamedTuple):
    """One row of ``virtual_devices()``: assigned or not (the seed stays out of repr)."""

    serial: str
    seed: str
    user_name: str | None  # the user it is enabled for, None while unassigned

    def __repr__(self) -> str:
        return f"VirtualDevice(serial={self.serial!r}, user_name={self.user_name!r})"


@dataclass(frozen=True)
class Session:
    """Temporary credentials issued here, remembered so they can sign later calls.

    ``user`` is the IAM user behind them, also for a role session (``role`` set),
    however long the chain of roles that led to it.
    """

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    user: User
    expires_at: int
    mfa_authenticated: bool
    role: Role | None = None
    role_session_name: str | None = None
    federated_name: str | None = None  # GetFederationToken's Name
    chained: bool = False  # a role session assumed with temporary credentials

    @property
    def arn(self) -> str:
        """Who these credentials are: the user, ``assumed-role/ROLE/SESSION`` or
        ``federated-user/NAME``."""
        if self.federated_name is not None:
            return f"arn:aws:sts::{self.user.account}:federated-user/{self.federated_name}"
        if self.role is None:
            return self.user.arn
        return (
            f"arn:aws:sts::{self.role.account}:assumed-role/{self.role.name}/"
            f"{self.role_session_name}"
        )


@dataclass(frozen=True)
class Call:
    """One request as the log keeps it: never a code, secret or session token."""

    action: str
    access_key_id: str
    serial: str | None
    duration: int | None
    outcome: str  # "ok" or the error code
    time: float


@dataclass(frozen=True)
class Caller:
    """Who signed a request: a user's long-term key, or a session issued here."""

    user: User
    access_key_id: str
    session: Session | None = None

    @property
    def arn(self) -> str:
        return self.user.arn if self.session is None else self.session.arn

    @property
    def role(self) -> Role | None:
        return None if self.session is None else self.session.role

    @property
    def mfa_authenticated(self) -> bool:
        return self.session is not None and self.session.mfa_authenticated


# --------------------------------------------------------------------------- shared state


@dataclass
class _AccessKey:
    user: User
    secret: str = field(repr=False)
    active: bool = True
    created_at: float = 0.0  # CreateDate
    usable_from: float = 0.0  # it authenticates from then on (see key_activation_delay)


@dataclass
class _DeviceState:
    device: Device
    owner_arn: str | None  # None: created but not enabled for anyone
    enabled_at: float | None = None
    last_accepted_step: int | None = None  # AWS never accepts a code twice

    @property
    def account(self) -> str:
        return self.device.serial.split(":")[4]

    @property
    def name(self) -> str:
        return self.device.serial.rsplit("/", 1)[-1]


@dataclass
class _Fault:
    code: str
    message: str
    status: int
    remaining: int
    after: bool = False  # the action is carried out, then its answer is this error


@dataclass
class _State:
    """Everything requests read or change. One lock guards all of it: requests are few."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    users: dict[str, User] = field(default_factory=dict)  # by ARN
    keys: dict[str, _AccessKey] = field(default_factory=dict)  # by access key id
    devices: dict[str, _DeviceState] = field(default_factory=dict)  # by serial
    roles: dict[str, Role] = field(default_factory=dict)  # by ARN
    sessions: dict[str, Session] = field(default_factory=dict)  # by access key id
    faults: dict[str, deque[_Fault]] = field(default_factory=dict)  # by action
    sabotage: dict[str, deque[str]] = field(default_factory=dict)  # by action: answer faults
    calls: list[tuple[int, Call]] = field(default_factory=list)  # (arrival number, call)


# --------------------------------------------------------------------------- HTTP and SigV4


@dataclass(frozen=True)
class HttpRequest:
    """The parts of an HTTP request that SigV4 and the query protocol look at."""

    method: str
    path: str
    query: str
    headers: Mapping[str, list[str]]  # lower-case names; repeated headers keep every value
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes
    request_id: str
    content_type: str = "text/xml"
    location: str | None = None  # a redirect's target
    sabotage: str | None = None  # "drop", "hang" or "drip": how the HTTP layer fails


@dataclass(frozen=True)
class SigV4Authorization:
    """The parsed ``Authorization: AWS4-HMAC-SHA256 Credential=..., ...`` header."""

    access_key_id: str
    date: str
    region: str
    service: str
    terminator: str
    signed_headers: tuple[str, ...]
    signature: str

    @classmethod
    def parse(cls, header: str) -> SigV4Authorization:
        algorithm, _, rest = header.strip().partition(" ")
        if algorithm != ALGORITHM:
            raise _incomplete_signature(f"Unsupported AWS 'algorithm': '{algorithm}'")
        parts: dict[str, str] = {}
        for item in rest.split(","):
            key, sep, value = item.strip().partition("=")
            if sep:
                parts[key] = value
        missing = [k for k in ("Credential", "Signature", "SignedHeaders") if not parts.get(k)]
        if missing:
            raise _incomplete_signature(
                " ".join(f"Authorization header requires '{k}' parameter." for k in missing)
            )
        scope = parts["Credential"].split("/")
        if len(scope) != 5 or not all(scope):
            raise _incomplete_signature(
                "Authorization header requires a 'Credential' of the form "
                "'KEY/YYYYMMDD/REGION/SERVICE/aws4_request'."
            )
        return cls(
            access_key_id=scope[0],
            date=scope[1],
            region=scope[2],
            service=scope[3],
            terminator=scope[4],
            signed_headers=tuple(parts["SignedHeaders"].split(";")),
            signature=parts["Signature"],
        )

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{self.terminator}"


def _aws_quote(value: str) -> str:
    """URI-encode as SigV4 wants: everything but RFC 3986 unreserved characters."""
    return quote(value, safe="-_.~")


def canonical_query_string(query: str) -> str:
    """Decode the query the client sent and re-encode it the one way SigV4 signs it."""
    pairs = parse_qsl(query, keep_blank_values=True)
    return "&".join(f"{k}={v}" for k, v in sorted((_aws_quote(k), _aws_quote(v)) for k, v in pairs))


def canonical_request(request: HttpRequest, signed_headers: tuple[str, ...]) -> str:
    """Rebuild what the client hashed; a missing signed header counts as empty."""
    header_lines = "".join(
        f"{name}:{','.join(' '.join(v.split()) for v in request.headers.get(name, []))}\n"
        for name in signed_headers
    )
    body_hash = hashlib.sha256(request.body).hexdigest()
    claimed = request.header("x-amz-content-sha256")
    if claimed is not None and re.fullmatch(r"[0-9a-f]{64}", claimed) and claimed != body_hash:
        raise _bad_signature()  # the body is not what was signed
    return "\n".join(
        [
            request.method,
            quote(request.path or "/", safe="/~"),
            canonical_query_string(request.query),
            header_lines,
            ";".join(signed_headers),
            claimed if claimed is not None else body_hash,
        ]
    )


def sigv4_signature(secret: str, auth: SigV4Authorization, amz_date: str, creq: str) -> str:
    """The hex signature a client holding ``secret`` would have sent."""
    string_to_sign = "\n".join(
        [ALGORITHM, amz_date, auth.scope, hashlib.sha256(creq.encode()).hexdigest()]
    )
    key = f"AWS4{secret}".encode()
    for part in (auth.date, auth.region, auth.service, auth.terminator):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- helpers


def _random_id(prefix: str, length: int) -> str:
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def _random_secret() -> str:
    return base64.b64encode(secrets.token_bytes(30)).decode()  # 40 chars, with + and / like AWS


def _random_session_token() -> str:
    return base64.b64encode(secrets.token_bytes(300)).decode()  # AWS's are a few hundred chars


def _amz_date(epoch: float) -> str:
    return time.strftime(AMZ_DATE_FORMAT, time.gmtime(epoch))


def _iso8601(epoch: float) -> str:
    return time.strftime(ISO8601, time.gmtime(epoch))


def _xml_fields(**fields: str) -> str:
    return "".join(f"<{name}>{escape(value)}</{name}>" for name, value in fields.items())


def _result_document(action: str, result: str | None, request_id: str, xmlns: str) -> str:
    """An action's answer; one without output (``None``) has no Result element, as AWS sends."""
    wrapped = "" if result is None else f"<{action}Result>{result}</{action}Result>"
    return (
        f'<{action}Response xmlns="{xmlns}">{wrapped}'
        f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>"
        f"</{action}Response>"
    )


def _error_document(error: StsError, request_id: str, xmlns: str = XMLNS) -> str:
    kind = "Receiver" if error.status >= 500 else "Sender"
    return (
        f'<ErrorResponse xmlns="{xmlns}">'
        f"<Error>{_xml_fields(Type=kind, Code=error.code, Message=error.message)}</Error>"
        f"<RequestId>{request_id}</RequestId>"
        f"</ErrorResponse>"
    )


class _Validation:
    """Collects constraint violations so they are reported together, as AWS does."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def _fail(self, member: str, value: str | None, constraint: str) -> None:
        shown = f" '{value}'" if value is not None else ""
        self.problems.append(
            f"Value{shown} at '{member}' failed to satisfy constraint: Member must {constraint}"
        )

    def required(self, params: Mapping[str, str], name: str, member: str) -> str | None:
        value = params.get(name)
        if value is None:
            self.problems.append(
                f"Value null at '{member}' failed to satisfy constraint: Member must not be null"
            )
        return value

    def integer(
        self, params: Mapping[str, str], name: str, member: str, low: int, high: int
    ) -> int | None:
        raw = params.get(name)
        if raw is None:
            return None
        if not re.fullmatch(r"-?[0-9]+", raw):
            self._fail(member, raw, "be an integer")  # the emulator's wording, not AWS's
            return None
        value = int(raw)
        if value < low:
            self._fail(member, raw, f"have value greater than or equal to {low}")
        elif value > high:
            self._fail(member, raw, f"have value less than or equal to {high}")
        return value

    def text(
        self,
        member: str,
        value: str | None,
        low: int,
        high: int,
        pattern: str | None,
        *,
        secret: bool = False,
    ) -> None:
        """Check length and pattern (if any) of a value that was given; a ``secret`` value
        (a code) is never echoed back."""
        if value is None:
            return
        shown = None if secret else value
        if len(value) < low:
            self._fail(member, shown, f"have length greater than or equal to {low}")
        elif len(value) > high:
            self._fail(member, shown, f"have length less than or equal to {high}")
        if pattern is not None and not re.fullmatch(pattern, value, re.ASCII):
            self._fail(member, shown, f"satisfy regular expression pattern: {pattern}")

    def raise_if_any(self) -> None:
        if self.problems:
            count = len(self.problems)
            noun = "error" if count == 1 else "errors"
            raise StsError(
                "ValidationError",
                f"{count} validation {noun} detected: " + "; ".join(self.problems),
            )


def _png(width: int = 1, height: int = 1) -> bytes:
    """A valid (blank, greyscale) PNG: what QRCodePNG needs to be for a client to decode it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = b"".join(b"\x00" + b"\xff" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(pixels))
        + chunk(b"IEND", b"")
    )


QR_CODE_PNG = _png()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _api(params: Mapping[str, str]) -> tuple[str, str]:
    """(signing service, XML namespace) of the API a request's Version names; STS by default."""
    return APIS.get(params.get("Version", ""), APIS[API_VERSION])


# Answer faults (sabotage_next): what a broken or TLS-intercepting proxy does to an answer.
SABOTAGE = ("truncate", "malformed", "missing-field", "expired", "drop", "hang", "drip")
HANG_LIMIT = 600.0  # a hanging answer ends by itself after this, or at release/stop
DRIP_PAUSE = 0.5  # "drip": the answer comes a byte at a time, each within any read timeout


def _sabotaged(body: str, kind: str) -> str:
    """The answer as a broken proxy would pass it on; "drop", "hang" and "drip" happen in
    HTTP."""
    if kind == "truncate":
        return body[: max(1, body.find("</SessionToken>"))]  # cut just after the secrets
    if kind == "malformed":
        return body.replace("</Credentials>", "<Credentials>", 1)  # unbalanced XML
    if kind == "missing-field":
        return re.sub(r"<SecretAccessKey>[^<]*</SecretAccessKey>", "", body)
    if kind == "expired":
        return re.sub(
            r"<Expiration>[^<]*</Expiration>", "<Expiration>2001-01-01T00:00:00Z</Expiration>", body
        )
    return body


def _credentials_xml(session: Session) -> str:
    credentials = _xml_fields(
        AccessKeyId=session.access_key_id,
        SecretAccessKey=session.secret_access_key,
        SessionToken=session.session_token,
        Expiration=_iso8601(session.expires_at),
    )
    return f"<Credentials>{credentials}</Credentials>"


def _no_such_device(serial: str) -> StsError:
    return StsError("NoSuchEntity", f"MFA device with serial number {serial} does not exist.", 404)


def _int_or_none(raw: str | None) -> int | None:
    return int(raw) if raw is not None and re.fullmatch(r"-?[0-9]{1,12}", raw) else None


def _claimed_access_key(request: HttpRequest) -> str:
    """The key id a request names, for the log, whether or not it verifies."""
    match = re.search(r"Credential=([^/,\s]+)/", request.header("authorization") or "")
    return match.group(1) if match else ""


# --------------------------------------------------------------------------- console sign-in
#
# GetFederationToken (an STS action) and the federation endpoint at /federation, which
# trades a role or federation session for a sign-in token (Action=getSigninToken) and
# turns that token into a console session (Action=login), as AWS's "custom identity
# broker" guide describes. The endpoint speaks plain HTTP GET (or a POSTed form) and
# JSON, not the query protocol: it is not signed, the session's secrets are its proof.

FEDERATION_PATH = "/federation"
FEDERATED_NAME_PATTERN = r"[\w+=,.@-]*"
MAX_POLICY_ARNS = 10
SIGNIN_TOKEN_LIFETIME = 15 * 60  # AWS: the login URL works for 15 minutes
MIN_CONSOLE_SESSION = 900
MAX_CONSOLE_SESSION = 43200
CONSOLE_HOSTS = ("console.aws.amazon.com", "console.amazonaws.cn", "console.amazonaws-us-gov.com")
SESSION_CALLS_GFT = "Cannot call GetFederationToken with session credentials"
# The endpoint answers errors with an HTML page; these texts stand in for it. The first
# two are AWS's wording as users have reported it, the others the emulator's.
BAD_CREDENTIALS_PARAMETER = "Invalid credentials parameter"
NOT_FOR_FEDERATED_LOGIN = (
    "Only federation tokens or assume role tokens may be used for federated login."
)
EXPIRED_SESSION = "The session credentials have expired"
SESSION_DURATION_RANGE = (
    f"SessionDuration must be between {MIN_CONSOLE_SESSION} and {MAX_CONSOLE_SESSION} seconds"
)
SESSION_DURATION_FEDERATED = "SessionDuration cannot be used with GetFederationToken credentials"
SESSION_DURATION_CHAINED = "SessionDuration cannot be used with credentials from role chaining"
BAD_SIGNIN_TOKEN = "The sign-in token is invalid or has expired"
BAD_DESTINATION = "Destination must be an https URL of the AWS console"


@dataclass(frozen=True)
class SigninToken:
    """A sign-in token the endpoint issued, for tests to inspect (the token is a secret)."""

    token: str = field(repr=False)
    access_key_id: str  # the session it signs in
    kind: str  # "role" or "federation"
    console_seconds: int  # how long the console session lasts
    issued_at: float


@dataclass
class _SigninState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    tokens: dict[str, SigninToken] = field(default_factory=dict)  # by token
    policies: dict[str, str | None] = field(default_factory=dict)  # federated key id -> Policy


class _FederationAnswer(Exception):
    """A federation endpoint error: an HTTP status and a short text body."""

    def __init__(self, status: int, text: str, outcome: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.outcome = outcome


def _refuse_federated_caller(caller: Caller, service: str, action: str) -> None:
    """AWS lets GetFederationToken's credentials call no STS action but GetCallerIdentity,
    and no IAM action at all through the API."""
    session = caller.session
    if session is None or session.federated_name is None or action == "GetCallerIdentity":
        return
    raise _not_authorized(caller.arn, f"{service}:{action}", "*")


def _console_destination(url: str | None) -> bool:
    if not url:
        return False
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return parts.scheme == "https" and any(
        host == console or host.endswith("." + console) for console in CONSOLE_HOSTS
    )


class _ConsoleSignin:
    """GetFederationToken and the federation endpoint, mixed into StsEmulator: they use its
    state, clock, call log and fault injection (``fail_next("getSigninToken", ...)``
    answers that HTTP status with the message as the body; with status 200 that is a
    broken answer)."""

    _state: _State
    _signin: _SigninState
    _clock: Callable[[], float]
    _arrivals: Iterator[int]
    _record: Callable[[int, Call], None]
    _take_fault: Callable[[str], _Fault | None]
    _issue_session: Callable[..., Session]

    def signin_tokens(self) -> list[SigninToken]:
        """Every sign-in token issued so far, oldest first (holds secrets)."""
        with self._signin.lock:
            return sorted(self._signin.tokens.values(), key=lambda token: token.issued_at)

    def federation_policy(self, access_key_id: str) -> str | None:
        """The inline session policy a federation session was given (None: no permissions)."""
        with self._signin.lock:
            return self._signin.policies[access_key_id]

    def _get_federation_token(self, params: Mapping[str, str], caller: Caller) -> str:
        check = _Validation()
        name = check.required(params, "Name", "name")
        duration = check.integer(
            params, "DurationSeconds", "durationSeconds", MIN_DURATION, MAX_DURATION
        )
        policy = params.get("Policy")
        check.text("name", name, 2, 32, FEDERATED_NAME_PATTERN)
        check.text("policy", policy, 1, 2048, r"[\u0009\u000A\u000D\u0020-\u00FF]+")
        policy_arns = [
            value
            for key, value in params.items()
            if re.fullmatch(r"PolicyArns\.member\.\d+\.arn", key)
        ]
        if len(policy_arns) > MAX_POLICY_ARNS:
            check.problems.append(
                f"Value at 'policyArns' failed to satisfy constraint: Member must have length "
                f"less than or equal to {MAX_POLICY_ARNS}"
            )
        check.raise_if_any()
        if name is None:
            raise AssertionError("unreachable")
        if caller.session is not None:
            raise _denied(SESSION_CALLS_GFT)
        if policy is not None:
            try:
                document = json.loads(policy)
            except ValueError:
                document = None
            if not isinstance(document, dict):
                raise StsError("MalformedPolicyDocument", "The policy is not valid JSON.")
        if duration is None:
            duration = DEFAULT_DURATION
        if caller.user.root:
            duration = min(duration, ROOT_MAX_DURATION)
        session = self._issue_session(
            caller.user, duration, mfa_authenticated=False, federated_name=name
        )
        with self._signin.lock:
            self._signin.policies[session.access_key_id] = policy
        federated = _xml_fields(FederatedUserId=f"{caller.user.account}:{name}", Arn=session.arn)
        answer = f"{_credentials_xml(session)}<FederatedUser>{federated}</FederatedUser>"
        if policy is None:
            return answer
        # How much of the packed-policy quota the policy takes, in percent (roughly).
        return f"{answer}<PackedPolicySize>{max(1, len(policy) * 100 // 2048)}</PackedPolicySize>"

    def _federation(self, request: HttpRequest) -> HttpResponse:
        """One request to the federation endpoint, logged like every STS call."""
        arrival = next(self._arrivals)
        arrived_at = self._clock()
        request_id = str(uuid.uuid4())
        params: dict[str, str] = {}
        access_key_id, session_duration = "", None
        try:
            params = _federation_params(request)
            action = params.get("Action", "")
            if action == "getSigninToken":
                access_key_id = _session_key_id(params.get("Session"))
                session_duration = _int_or_none(params.get("SessionDuration"))
            response = self._federation_answer(action, params, request_id)
            outcome = "ok"
        except _FederationAnswer as answer:
            content_type = "application/json" if answer.status == 200 else "text/plain"
            response = HttpResponse(answer.status, answer.text.encode(), request_id, content_type)
            outcome = answer.outcome
        self._record(
            arrival,
            Call(
                action=params.get("Action", ""),
                access_key_id=access_key_id,
                serial=None,
                duration=session_duration,
                outcome=outcome,
                time=arrived_at,
            ),
        )
        return response

    def _federation_answer(
        self, action: str, params: Mapping[str, str], request_id: str
    ) -> HttpResponse:
        """An injected fault's answer (before or after the action), or the action's; of the
        sabotages, only "drip" applies here."""
        fault = self._take_fault(action) if action else None
        if fault is not None and not fault.after:
            raise _FederationAnswer(fault.status, fault.message, fault.code)
        response = self._federation_action(action, params, request_id)
        if fault is not None:
            raise _FederationAnswer(fault.status, fault.message, fault.code)
        if action and self._take_sabotage(action) == "drip":
            return replace(response, sabotage="drip")
        return response

    def _federation_action(
        self, action: str, params: Mapping[str, str], request_id: str
    ) -> HttpResponse:
        if action == "getSigninToken":
            token = self._get_signin_token(params)
            body = json.dumps({"SigninToken": token}).encode()
            return HttpResponse(200, body, request_id, "application/json")
        if action == "login":
            return HttpResponse(302, b"", request_id, "text/plain", self._login(params))
        raise _FederationAnswer(400, f"Unsupported Action: {action!r}", "InvalidAction")

    def _get_signin_token(self, params: Mapping[str, str]) -> str:
        """A sign-in token for a role or federation session: never a GetSessionToken one."""
        refused = functools.partial(_FederationAnswer, 400)
        try:
            document = json.loads(params.get("Session") or "")
        except ValueError:
            document = None
        fields = ("sessionId", "sessionKey", "sessionToken")
        if not isinstance(document, dict) or not all(
            isinstance(document.get(name), str) for name in fields
        ):
            raise refused(BAD_CREDENTIALS_PARAMETER, "InvalidSession")
        with self._state.lock:
            session = self._state.sessions.get(document["sessionId"])
        if (
            session is None
            or not hmac.compare_digest(document["sessionKey"], session.secret_access_key)
            or not hmac.compare_digest(document["sessionToken"], session.session_token)
        ):
            raise refused(BAD_CREDENTIALS_PARAMETER, "InvalidSession")
        now = self._clock()
        if now >= session.expires_at:
            raise refused(EXPIRED_SESSION, "ExpiredSession")
        if session.role is None and session.federated_name is None:
            raise refused(NOT_FOR_FEDERATED_LOGIN, "NotFederationSession")
        kind = "role" if session.role is not None else "federation"
        console_seconds = int(session.expires_at - now)
        raw = params.get("SessionDuration")
        if raw is not None:
            if kind == "federation":
                raise refused(SESSION_DURATION_FEDERATED, "InvalidSessionDuration")
            if session.chained:
                raise refused(SESSION_DURATION_CHAINED, "InvalidSessionDuration")
            seconds = _int_or_none(raw)
            if seconds is None or not MIN_CONSOLE_SESSION <= seconds <= MAX_CONSOLE_SESSION:
                raise refused(SESSION_DURATION_RANGE, "InvalidSessionDuration")
            console_seconds = seconds
        token = SigninToken(
            token=secrets.token_urlsafe(384),
            access_key_id=session.access_key_id,
            kind=kind,
            console_seconds=console_seconds,
            issued_at=now,
        )
        with self._signin.lock:
            self._signin.tokens[token.token] = token
        return token.token

    def _login(self, params: Mapping[str, str]) -> str:
        """Where the browser goes: the Destination, if the token is one of ours and fresh."""
        with self._signin.lock:
            token = self._signin.tokens.get(params.get("SigninToken") or "")
        if token is None or self._clock() >= token.issued_at + SIGNIN_TOKEN_LIFETIME:
            raise _FederationAnswer(400, BAD_SIGNIN_TOKEN, "InvalidSigninToken")
        destination = params.get("Destination")
        if not _console_destination(destination) or destination is None:
            raise _FederationAnswer(400, BAD_DESTINATION, "InvalidDestination")
        return destination


def _federation_params(request: HttpRequest) -> dict[str, str]:
    if request.method not in ("GET", "POST"):
        raise _FederationAnswer(405, f"{request.method} is not supported", "MethodNotAllowed")
    try:
        return StsEmulator._parse_params(request)
    except StsError as error:
        raise _FederationAnswer(400, error.message, error.code) from error


def _session_key_id(raw: str | None) -> str:
    """The access key id a getSigninToken request names, for the log (never its secrets)."""
    try:
        document = json.loads(raw or "")
    except ValueError:
        return ""
    key_id = document.get("sessionId") if isinstance(document, dict) else None
    return key_id if isinstance(key_id, str) else ""


# --------------------------------------------------------------------------- IAM: access keys
#
# CreateAccessKey, ListAccessKeys, UpdateAccessKey and DeleteAccessKey, as AWS's example
# policy "Allows MFA-authenticated IAM users to manage their own credentials" lets a user
# call them: on their own user only, and (its BlockMostAccessUnlessSignedInWithMFA
# statement exempts none of them) with an MFA session once the user has an enabled device,
# as for device changes. What AWS does, and where it says so:
# - At most two keys per user, active or not ("You can have a maximum of two access keys
#   per user": IAM User Guide, "Manage access keys for IAM users"); a third one is
#   LimitExceeded "Cannot exceed quota for AccessKeysPerUser: 2".
# - UserName may be left out: IAM takes the user of the signing key (API reference of all
#   four). Role sessions have no such user and must name one, which this policy refuses.
# - AccessDenied names the resource "user NAME", or "user nullNAME" when UserName was left
#   out: AWS's own message, as aws-vault issues #178 and #190 and CloudTrail records show it.
# - A new key is not usable at once: IAM is eventually consistent (aws-vault retries for
#   20 s before it deletes the old key). Until the test's key_activation_delay has passed,
#   the new key is an invalid token, as AWS answers for a key it does not know (yet). An
#   inactive or deleted key is an invalid token too.
# - Deleting or deactivating a key leaves the sessions issued with it working until they
#   expire: "Temporary security credentials are valid until they expire, and they cannot
#   be revoked" (IAM User Guide, "Disabling permissions for temporary security
#   credentials"); only a change to the user's permissions stops them, and a key is none.
# - The root user may manage its own keys through the API (CreateAccessKey's reference
#   says so); no identity-based policy binds it, so no MFA rule applies to it here.

MAX_ACCESS_KEYS_PER_USER = 2
ACCESS_KEY_QUOTA = f"Cannot exceed quota for AccessKeysPerUser: {MAX_ACCESS_KEYS_PER_USER}"
ACCESS_KEY_STATUSES = ("Active", "Inactive", "Expired")  # the API model's enum
SETTABLE_KEY_STATUSES = ("Active", "Inactive")  # what UpdateAccessKey's reference lists
# The emulator's wording: AWS documents InvalidInput for UpdateAccessKey, not its text.
EXPIRED_NOT_SETTABLE = "Status Expired cannot be set with UpdateAccessKey."


class AccessKeyInfo(NamedTuple):
    """One row of ``access_keys()``: what ListAccessKeys shows, and when the key works."""

    access_key_id: str
    status: str  # "Active" or "Inactive"
    created_at: float  # CreateDate, on the emulator's clock
    usable_from: float  # the key authenticates from then on (key_activation_delay)


def _no_such_access_key(access_key_id: str) -> StsError:
    return StsError("NoSuchEntity", f"The Access Key with id {access_key_id} cannot be found.", 404)


def _key_resource(user: User, user_name: str | None) -> str:
    """The resource AWS names when it refuses an access-key action (see above)."""
    return f"user {user_name}" if user_name is not None else f"user null{user.name}"


def _key_status(key: _AccessKey) -> str:
    return "Active" if key.active else "Inactive"


class _AccessKeys:
    """IAM's access-key actions and their test controls, mixed into StsEmulator: they use
    its state (``_State.keys``, which authentication reads), clock and MFA-device policy."""

    _state: _State
    _clock: Callable[[], float]
    _check_device_change: Callable[[Caller, str, str], None]
    _key_activation_delay: float = 0.0

    # ----------------------------------------------------------------- test controls

    def key_activation_delay(self, seconds: float) -> None:
        """Keys CreateAccessKey makes from now on authenticate only ``seconds`` later (on the
        emulator's clock); before that they are an invalid token. Default 0: at once."""
        if seconds < 0:
            raise ValueError("the activation delay cannot be negative")
        with self._state.lock:
            self._key_activation_delay = seconds

    def access_keys(self, user: User) -> list[AccessKeyInfo]:
        """The user's access keys, oldest first (no secrets)."""
        with self._state.lock:
            return [
                AccessKeyInfo(key_id, _key_status(key), key.created_at, key.usable_from)
                for key_id, key in self._keys_of(user)
            ]

    def add_access_key(self, user: User) -> User:
        """Give ``user`` another active key that works at once, as one made long ago would;
        returns the user signing with it (a User whose key fields hold it, secret included)."""
        now = self._clock()
        with self._state.lock:
            owner = self._state.users.get(user.arn)
            if owner is None:
                raise ValueError(f"no user {user.arn}")
            if len(self._keys_of(owner)) >= MAX_ACCESS_KEYS_PER_USER:
                raise ValueError(f"{owner.arn} has {MAX_ACCESS_KEYS_PER_USER} keys already")
            signer = replace(
                owner, access_key_id=_random_id("AKIA", 16), secret_access_key=_random_secret()
            )
            self._state.keys[signer.access_key_id] = _AccessKey(
                owner, signer.secret_access_key, created_at=now, usable_from=now
            )
        return signer

    def set_key_create_date(self, access_key_id: str, created_at: float) -> None:
        """Backdate (or move) a key's CreateDate, e.g. to make it older than 90 days."""
        with self._state.lock:
            key = self._state.keys.get(access_key_id)
            if key is None:
                raise ValueError(f"no access key {access_key_id}")
            key.created_at = created_at

    # ----------------------------------------------------------------- actions

    def _create_access_key(self, params: Mapping[str, str], caller: Caller) -> str:
        check = _Validation()
        user_name = params.get("UserName")
        check.text("userName", user_name, 1, 128, r"[\w+=,.@-]+")
        check.raise_if_any()
        now = self._clock()
        with self._state.lock:
            user = self._key_owner(caller, user_name, "iam:CreateAccessKey")
            if len(self._keys_of(user)) >= MAX_ACCESS_KEYS_PER_USER:
                raise StsError("LimitExceeded", ACCESS_KEY_QUOTA, 409)
            key_id = _random_id("AKIA", 16)
            key = _AccessKey(
                user,
                _random_secret(),
                created_at=now,
                usable_from=now + self._key_activation_delay,
            )
            self._state.keys[key_id] = key
        fields = _xml_fields(
            UserName=user.name,
            AccessKeyId=key_id,
            Status="Active",
            SecretAccessKey=key.secret,
            CreateDate=_iso8601(now),
        )
        return f"<AccessKey>{fields}</AccessKey>"

    def _list_access_keys(self, params: Mapping[str, str], caller: Caller) -> str:
        check = _Validation()
        user_name = params.get("UserName")
        max_items = check.integer(params, "MaxItems", "maxItems", 1, 1000)
        marker = params.get("Marker")
        check.text("userName", user_name, 1, 128, r"[\w+=,.@-]+")
        check.text("marker", marker, 1, 320, r"[\u0020-\u00FF]+")
        check.raise_if_any()
        with self._state.lock:
            user = self._key_owner(caller, user_name, "iam:ListAccessKeys")
            keys = self._keys_of(user)
        # IAM's markers are opaque; here one is the id of the first key of the next page.
        ids = [key_id for key_id, _ in keys]
        start = 0 if marker is None else ids.index(marker) if marker in ids else len(ids)
        page = keys[start : start + (max_items or 100)]
        members = "".join(
            "<member>"
            + _xml_fields(
                UserName=user.name,
                AccessKeyId=key_id,
                Status=_key_status(key),
                CreateDate=_iso8601(key.created_at),
            )
            + "</member>"
            for key_id, key in page
        )
        rest = keys[start + len(page) :]
        truncated = f"<IsTruncated>{'true' if rest else 'false'}</IsTruncated>"
        next_marker = _xml_fields(Marker=rest[0][0]) if rest else ""
        return f"<AccessKeyMetadata>{members}</AccessKeyMetadata>{truncated}{next_marker}"

    def _update_access_key(self, params: Mapping[str, str], caller: Caller) -> None:
        check = _Validation()
        user_name = params.get("UserName")
        key_id = check.required(params, "AccessKeyId", "accessKeyId")
        status = check.required(params, "Status", "status")
        check.text("userName", user_name, 1, 128, r"[\w+=,.@-]+")
        check.text("accessKeyId", key_id, 16, 128, r"[\w]+")
        if status is not None and status not in ACCESS_KEY_STATUSES:
            check.problems.append(
                f"Value '{status}' at 'status' failed to satisfy constraint: Member must "
                f"satisfy enum value set: [{', '.join(ACCESS_KEY_STATUSES)}]"
            )
        check.raise_if_any()
        if key_id is None or status is None:
            raise AssertionError("unreachable")
        with self._state.lock:
            user = self._key_owner(caller, user_name, "iam:UpdateAccessKey")
            key = self._owned_key(user, key_id)
            if status not in SETTABLE_KEY_STATUSES:
                raise StsError("InvalidInput", EXPIRED_NOT_SETTABLE)
            key.active = status == "Active"

    def _delete_access_key(self, params: Mapping[str, str], caller: Caller) -> None:
        check = _Validation()
        user_name = params.get("UserName")
        key_id = check.required(params, "AccessKeyId", "accessKeyId")
        check.text("userName", user_name, 1, 128, r"[\w+=,.@-]+")
        check.text("accessKeyId", key_id, 16, 128, r"[\w]+")
        check.raise_if_any()
        if key_id is None:
            raise AssertionError("unreachable")
        with self._state.lock:
            user = self._key_owner(caller, user_name, "iam:DeleteAccessKey")
            self._owned_key(user, key_id)
            # Sessions issued with this key keep working until they expire (see above).
            del self._state.keys[key_id]

    # ----------------------------------------------------------------- helpers (lock held)

    def _key_owner(self, caller: Caller, user_name: str | None, action: str) -> User:
        """The user whose keys the caller may manage: its own, and with MFA once enrolled."""
        if caller.role is not None:
            if user_name is None:
                raise StsError("ValidationError", NON_USER_NEEDS_NAME)
            raise _no_allowing_policy(caller.arn, action, f"user {user_name}")
        user = caller.user
        resource = _key_resource(user, user_name)
        if user_name is not None and (user.root or user_name != user.name):
            raise _no_allowing_policy(caller.arn, action, resource)
        if not user.root:
            self._check_device_change(caller, action, resource)  # the same MFA rule
        return user

    def _keys_of(self, user: User) -> list[tuple[str, _AccessKey]]:
        keys = [
            (key_id, key) for key_id, key in self._state.keys.items() if key.user.arn == user.arn
        ]
        return sorted(keys, key=lambda item: item[1].created_at)

    def _owned_key(self, user: User, access_key_id: str) -> _AccessKey:
        key = self._state.keys.get(access_key_id)
        if key is None or key.user.arn != user.arn:
            raise _no_such_access_key(access_key_id)
        return key


# --------------------------------------------------------------------------- the emulator

# A handler returns its Result element's content, or None for an action without output.
Handler = Callable[[Mapping[str, str], Caller], str | None]


class StsEmulator(_ConsoleSignin, _AccessKeys):
    """AWS STS (and IAM's MFA actions) on 127.0.0.1: users, roles, MFA devices, sessions,
    a call log and fault injection.

    ``clock`` drives every check that reads the time (TOTP steps, signature age,
    session expiry), so tests can simulate a skewed server clock without sleeping.
    ``on_call`` sees each logged call (the CLI mode writes them to a file).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
        on_call: Callable[[Call], None] | None = None,
    ) -> None:
        self._address = (host, port)
        self._clock = clock
        self._on_call = on_call
        self._state = _State()
        self._arrivals = itertools.count()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._release = threading.Event()  # ends "hang" sabotage
        self._signin = _SigninState()
        self._lifetime_caps: dict[str, int] = {}  # see "short sessions" below
        # (API version, action) -> handler.
        self._handlers: dict[tuple[str, str], Handler] = {
            (API_VERSION, "GetSessionToken"): self._get_session_token,
            (API_VERSION, "GetCallerIdentity"): self._get_caller_identity,
            (API_VERSION, "AssumeRole"): self._assume_role,
            (API_VERSION, "GetFederationToken"): self._get_federation_token,
            (IAM_API_VERSION, "CreateVirtualMFADevice"): self._create_virtual_mfa_device,
            (IAM_API_VERSION, "EnableMFADevice"): self._enable_mfa_device,
            (IAM_API_VERSION, "DeactivateMFADevice"): self._deactivate_mfa_device,
            (IAM_API_VERSION, "DeleteVirtualMFADevice"): self._delete_virtual_mfa_device,
            (IAM_API_VERSION, "ListMFADevices"): self._list_mfa_devices,
            (IAM_API_VERSION, "GetUser"): self._get_user,
            (IAM_API_VERSION, "CreateAccessKey"): self._create_access_key,
            (IAM_API_VERSION, "ListAccessKeys"): self._list_access_keys,
            (IAM_API_VERSION, "UpdateAccessKey"): self._update_access_key,
            (IAM_API_VERSION, "DeleteAccessKey"): self._delete_access_key,
        }

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> StsEmulator:
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        self._server = _Server(self._address, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},  # stop() waits for one poll: keep it short
            name="sts-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        self._release.set()
        server.shutdown()
        server.close_connections()  # idle keep-alive connections would pin handler threads
        server.server_close()
        if thread is not None:
            thread.join()

    def __enter__(self) -> StsEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not running: call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # ----------------------------------------------------------------- test controls

    def now(self) -> float:
        """The emulator's clock (also sent as each response's Date header)."""
        return self._clock()

    def add_user(self, name: str, account: str = DEFAULT_ACCOUNT, *, root: bool = False) -> User:
        """Create an IAM user (or, ``root=True``, the account's root user) with an active
        long-term (AKIA) key pair."""
        user = User(
            name=name,
            account=account,
            user_id=account if root else _random_id("AIDA", 17),
            access_key_id=_random_id("AKIA", 16),
            secret_access_key=_random_secret(),
            root=root,
            created_at=self._clock(),
        )
        with self._state.lock:
            if user.arn in self._state.users:
                raise ValueError(f"user {user.arn} already exists")
            self._state.users[user.arn] = user
            self._state.keys[user.access_key_id] = _AccessKey(
                user,
                user.secret_access_key,
                created_at=user.created_at,
                usable_from=user.created_at,
            )
        return user

    def add_mfa_device(self, user: User, name: str | None = None) -> Device:
        """Attach a virtual MFA device (named after the user by default) with a fresh seed."""
        default_name = "root-account-mfa-device" if user.root else user.name
        device = Device(
            serial=f"arn:aws:iam::{user.account}:mfa/{name or default_name}",
            seed=pyotp.random_base32(),
        )
        with self._state.lock:
            if device.serial in self._state.devices:
                raise ValueError(f"MFA device {device.serial} already exists")
            self._state.devices[device.serial] = _DeviceState(
                device, owner_arn=user.arn, enabled_at=self._clock()
            )
        return device

    def add_role(
        self,
        *,
        account: str = DEFAULT_ACCOUNT,
        name: str,
        require_mfa: bool = True,
        max_session_duration: int = ROLE_DEFAULT_DURATION,
        external_id: str | None = None,
        trusted_users: Iterable[User] | None = None,
    ) -> Role:
        """Create a role that ``trusted_users`` (None: every user) may assume, with MFA
        and a matching ExternalId if asked for; sessions last up to the maximum (seconds)."""
        if not CHAINED_MAX_DURATION <= max_session_duration <= ROLE_MAX_DURATION:
            raise ValueError("max_session_duration must be between 3600 and 43200 seconds")
        role = Role(
            account=account,
            name=name,
            role_id=_random_id("AROA", 17),
            require_mfa=require_mfa,
            max_session_duration=max_session_duration,
            external_id=external_id,
            trusted_arns=None
            if trusted_users is None
            else frozenset(user.arn for user in trusted_users),
        )
        with self._state.lock:
            if role.arn in self._state.roles:
                raise ValueError(f"role {role.arn} already exists")
            self._state.roles[role.arn] = role
        return role

    def virtual_devices(self) -> list[VirtualDevice]:
        """Every MFA device, oldest first, with the user it is enabled for (holds seeds)."""
        with self._state.lock:
            return [
                VirtualDevice(
                    state.device.serial,
                    state.device.seed,
                    None if state.owner_arn is None else self._state.users[state.owner_arn].name,
                )
                for state in self._state.devices.values()
            ]

    def deactivate_key(self, user: User) -> None:
        """Make the user's long-term key inactive: AWS then calls it an invalid token."""
        with self._state.lock:
            self._state.keys[user.access_key_id].active = False

    def expire_sessions(self, user: User | None = None) -> int:
        """End every session (of ``user``, or of everyone) now; returns how many."""
        now = int(self._clock())
        with self._state.lock:
            sessions = self._state.sessions
            ended = [s for s in sessions.values() if user is None or s.user.arn == user.arn]
            for session in ended:
                sessions[session.access_key_id] = replace(session, expires_at=now)
        return len(ended)

    def sessions(self) -> list[Session]:
        """Every session issued so far, oldest first (holds secrets: keep out of logs)."""
        with self._state.lock:
            return list(self._state.sessions.values())

    def fail_next(
        self,
        action: str,
        code: str,
        message: str,
        status: int = 400,
        times: int = 1,
        *,
        after: bool = False,
    ) -> None:
        """The next ``times`` authenticated calls of ``action`` get this error instead, or
        (``after=True``) are carried out and then answered with it: a lost answer."""
        with self._state.lock:
            queue = self._state.faults.setdefault(action, deque())
            queue.append(_Fault(code, message, status, times, after))

    def sabotage_next(self, action: str, kind: str, times: int = 1) -> None:
        """The next ``times`` authenticated calls of ``action`` get a broken answer, as from
        a failing or TLS-intercepting proxy (see SABOTAGE). The broken bodies still hold
        the session's secrets, so a test can check that none of them is ever shown."""
        if kind not in SABOTAGE:
            raise ValueError(f"unknown sabotage {kind!r}: one of {', '.join(SABOTAGE)}")
        with self._state.lock:
            self._state.sabotage.setdefault(action, deque()).extend([kind] * times)

    def release_hangs(self) -> None:
        """Let every hanging answer go (as dropped connections)."""
        self._release.set()

    def calls(self, action: str | None = None) -> list[Call]:
        """A copy of the call log in arrival order, optionally only one action's calls."""
        with self._state.lock:
            ordered = sorted(self._state.calls, key=lambda entry: entry[0])
        return [call for _, call in ordered if action is None or call.action == action]

    # ----------------------------------------------------------------- short sessions
    #
    # For the credential server's tests: SDKs must see a session renewed while a test
    # runs, and AWS never issues sessions shorter than 900 s. Those tests cap sessions at
    # a little over a minute (mfa-session refuses one that ends within 60 s) and have the
    # server renew them early with --min-remaining. Not an AWS behaviour.

    def cap_lifetime(self, action: str, seconds: int) -> None:
        """Sessions ``action`` (GetSessionToken or AssumeRole) issues from now on end after
        ``seconds``, whatever DurationSeconds asked for (the call log keeps the asked one)."""
        if action not in ("GetSessionToken", "AssumeRole") or seconds < 1:
            raise ValueError("cap GetSessionToken or AssumeRole sessions, by 1 s or more")
        with self._state.lock:
            self._lifetime_caps[action] = seconds

    def _lifetime(self, duration: int, role: Role | None) -> int:
        with self._state.lock:
            cap = self._lifetime_caps.get("GetSessionToken" if role is None else "AssumeRole")
        return duration if cap is None else min(duration, cap)

    # ----------------------------------------------------------------- request pipeline

    def handle(self, request: HttpRequest) -> HttpResponse:
        """Answer one HTTP request; every request, good or bad, lands in the call log."""
        if request.path == FEDERATION_PATH:
            return self._federation(request)
        arrival = next(self._arrivals)
        arrived_at = self._clock()
        request_id = str(uuid.uuid4())
        params: dict[str, str] = {}
        xmlns = XMLNS
        sabotage = None
        try:
            self._check_route(request)
            params = self._parse_params(request)
            xmlns = _api(params)[1]
            body, sabotage = self._answer(request, params, request_id)
            status, outcome = 200, sabotage or "ok"
            if sabotage is not None:
                body = _sabotaged(body, sabotage)
        except StsError as error:
            body = _error_document(error, request_id, xmlns)
            status, outcome = error.status, error.code
        except Exception:  # an emulator bug: show it, and answer like AWS would
            traceback.print_exc()
            failure = StsError("InternalFailure", "An internal error occurred.", 500)
            body = _error_document(failure, request_id, xmlns)
            status, outcome = failure.status, failure.code
        self._record(
            arrival,
            Call(
                action=params.get("Action", ""),
                access_key_id=_claimed_access_key(request),
                serial=params.get("SerialNumber"),
                duration=_int_or_none(params.get("DurationSeconds")),
                outcome=outcome,
                time=arrived_at,
            ),
        )
        return HttpResponse(status, body.encode(), request_id, sabotage=sabotage)

    def _take_sabotage(self, action: str) -> str | None:
        with self._state.lock:
            queue = self._state.sabotage.get(action)
            return queue.popleft() if queue else None

    def wait_for_release(self, limit: float) -> None:
        self._release.wait(limit)

    def released(self, wait: float) -> bool:
        """After up to ``wait`` s: whether hanging and dripping answers were let go."""
        return self._release.wait(wait)

    def _record(self, arrival: int, call: Call) -> None:
        with self._state.lock:
            self._state.calls.append((arrival, call))
            if self._on_call is not None:
                self._on_call(call)  # under the lock, so a log file keeps one order

    def _answer(
        self, request: HttpRequest, params: Mapping[str, str], request_id: str
    ) -> tuple[str, str | None]:
        """Authenticate, then let an injected fault or the action's handler answer; the
        answer comes with the sabotage to apply to it, if any ("hang": not carried out)."""
        caller = self._authenticate(request, _api(params)[0])
        sabotage = self._take_sabotage(params.get("Action", ""))
        if sabotage == "hang":
            return "", sabotage
        _refuse_federated_caller(caller, _api(params)[0], params.get("Action", ""))
        fault = self._take_fault(params.get("Action", ""))
        if fault is not None and not fault.after:
            raise StsError(fault.code, fault.message, fault.status)
        answer = self._dispatch(params, caller, request_id)
        if fault is not None:
            raise StsError(fault.code, fault.message, fault.status)
        return answer, sabotage

    @staticmethod
    def _check_route(request: HttpRequest) -> None:
        if request.path != "/":
            raise StsError("NotFound", f"No such resource: {request.path}", 404)
        if request.method not in ("GET", "POST"):
            raise StsError("MethodNotAllowed", f"{request.method} is not supported", 405)

    @staticmethod
    def _parse_params(request: HttpRequest) -> dict[str, str]:
        """Query-protocol parameters, from the query string and a form-encoded body."""
        try:
            pairs = parse_qsl(request.query, keep_blank_values=True, errors="strict")
            content_type = (request.header("content-type") or "").split(";")[0].strip().lower()
            if request.method == "POST" and content_type == "application/x-www-form-urlencoded":
                pairs += parse_qsl(
                    request.body.decode("utf-8"), keep_blank_values=True, errors="strict"
                )
        except UnicodeDecodeError as exc:
            raise StsError("MalformedQueryString", "The query string is not valid UTF-8.") from exc
        return dict(pairs)

    def _authenticate(self, request: HttpRequest, service: str) -> Caller:
        """Verify SigV4 exactly as AWS would: key, scope, clock, then the signature itself.

        ``service`` is the signing name of the API the request is for (sts or iam)."""
        header = request.header("authorization")
        if header is None:
            raise StsError("MissingAuthenticationToken", MISSING_AUTH, 403)
        auth = SigV4Authorization.parse(header)
        amz_date = request.header("x-amz-date")
        if amz_date is None:
            raise _incomplete_signature(
                "Authorization header requires existence of either a 'X-Amz-Date' "
                "or a 'Date' header."  # only X-Amz-Date is implemented
            )
        caller, secret = self._resolve_key(auth.access_key_id, request)
        self._check_scope(auth, amz_date, service)
        self._check_clock(amz_date)
        expected = sigv4_signature(
            secret, auth, amz_date, canonical_request(request, auth.signed_headers)
        )
        if not hmac.compare_digest(expected, auth.signature):
            raise _bad_signature()
        return caller

    def _resolve_key(self, access_key_id: str, request: HttpRequest) -> tuple[Caller, str]:
        token = request.header("x-amz-security-token")
        with self._state.lock:
            key = self._state.keys.get(access_key_id)
            session = self._state.sessions.get(access_key_id)
        if key is not None:
            if not key.active or token is not None or self._clock() < key.usable_from:
                raise StsError("InvalidClientTokenId", INVALID_TOKEN, 403)
            return Caller(key.user, access_key_id), key.secret
        if session is not None:
            if token is None or not hmac.compare_digest(token, session.session_token):
                raise StsError("InvalidClientTokenId", INVALID_TOKEN, 403)
            if self._clock() >= session.expires_at:
                raise StsError("ExpiredToken", EXPIRED_TOKEN, 403)
            return Caller(session.user, access_key_id, session), session.secret_access_key
        raise StsError("InvalidClientTokenId", INVALID_TOKEN, 403)

    @staticmethod
    def _check_scope(auth: SigV4Authorization, amz_date: str, service: str) -> None:
        if auth.date != amz_date[:8]:
            raise _bad_signature(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of "
                f"date from HTTP: '{auth.date}' != '{amz_date[:8]}', from '{amz_date}'."
            )
        if auth.service != service:
            raise _bad_signature(f"Credential should be scoped to correct service: '{service}'. ")
        if auth.terminator != "aws4_request":
            raise _bad_signature(
                "Credential should be scoped with a valid terminator: 'aws4_request', "
                f"not '{auth.terminator}'. "
            )
        if "host" not in auth.signed_headers:
            raise _bad_signature(
                "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
            )

    def _check_clock(self, amz_date: str) -> None:
        try:
            signed_at = calendar.timegm(time.strptime(amz_date, AMZ_DATE_FORMAT))
        except ValueError as exc:
            raise _incomplete_signature(
                f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'. "
                "See http://en.wikipedia.org/wiki/ISO_8601"
            ) from exc
        now = self._clock()
        if signed_at < now - MAX_CLOCK_SKEW:
            raise _bad_signature(
                f"Signature expired: {amz_date} is now earlier than "
                f"{_amz_date(now - MAX_CLOCK_SKEW)} ({_amz_date(now)} - 15 min.)"
            )
        if signed_at > now + MAX_CLOCK_SKEW:
            raise _bad_signature(
                f"Signature not yet current: {amz_date} is still later than "
                f"{_amz_date(now + MAX_CLOCK_SKEW)} ({_amz_date(now)} + 15 min.)"
            )

    def _take_fault(self, action: str) -> _Fault | None:
        with self._state.lock:
            queue = self._state.faults.get(action)
            if not queue:
                return None
            fault = queue[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                queue.popleft()
        return fault

    def _dispatch(self, params: Mapping[str, str], caller: Caller, request_id: str) -> str:
        action = params.get("Action")
        if action is None:
            raise StsError("MissingAction", "Missing Action")
        version = params.get("Version", "NO_VERSION_SPECIFIED")
        handler = self._handlers.get((version, action))
        if handler is None:
            raise StsError(
                "InvalidAction", f"Could not find operation {action} for version {version}"
            )
        return _result_document(action, handler(params, caller), request_id, _api(params)[1])

    # ----------------------------------------------------------------- actions

    def _get_session_token(self, params: Mapping[str, str], caller: Caller) -> str:
        check = _Validation()
        duration = check.integer(
            params, "DurationSeconds", "durationSeconds", MIN_DURATION, MAX_DURATION
        )
        serial = params.get("SerialNumber")
        code = params.get("TokenCode")
        if serial is not None:
            check.text("serialNumber", serial, 9, 256, r"[\w+=/:,.@-]*")
        if code is not None:
            check.text("tokenCode", code, 6, 6, r"[\d]*", secret=True)
        check.raise_if_any()
        if caller.session is not None:
            raise _denied(SESSION_CALLS_GST)
        if serial is not None or code is not None:
            if serial is None or code is None:
                raise _denied(MFA_UNVALIDATED)
            self._accept_code(caller.user, serial, code)
        if duration is None:
            duration = DEFAULT_DURATION
        if caller.user.root:
            duration = min(duration, ROOT_MAX_DURATION)  # AWS cuts root sessions, silently
        session = self._issue_session(caller.user, duration, mfa_authenticated=serial is not None)
        return _credentials_xml(session)

    def _get_caller_identity(self, params: Mapping[str, str], caller: Caller) -> str:
        session = caller.session
        if session is not None and session.federated_name is not None:
            user_id = f"{session.user.account}:{session.federated_name}"
            return _xml_fields(Arn=caller.arn, UserId=user_id, Account=session.user.account)
        role = caller.role
        if role is not None and caller.session is not None:
            return _xml_fields(
                Arn=caller.arn,
                UserId=f"{role.role_id}:{caller.session.role_session_name}",
                Account=role.account,
            )
        user = caller.user
        return _xml_fields(Arn=user.arn, UserId=user.user_id, Account=user.account)

    def _assume_role(self, params: Mapping[str, str], caller: Caller) -> str:
        """AssumeRole as the role's trust policy would allow it.

        Checks run cheapest first, so a code is only spent on a request that could pass:
        validation, root, trust and ExternalId, duration limits, then the MFA code.
        """
        check = _Validation()
        role_arn = check.required(params, "RoleArn", "roleArn")
        session_name = check.required(params, "RoleSessionName", "roleSessionName")
        duration = check.integer(
            params, "DurationSeconds", "durationSeconds", MIN_DURATION, ROLE_MAX_DURATION
        )
        external_id = params.get("ExternalId")
        serial = params.get("SerialNumber")
        code = params.get("TokenCode")
        check.text("roleArn", role_arn, 20, 2048, None)
        check.text("roleSessionName", session_name, 2, 64, r"[\w+=,.@-]*")
        check.text("externalId", external_id, 2, 1224, r"[\w+=,.@:\/-]*")
        check.text("serialNumber", serial, 9, 256, r"[\w+=/:,.@-]*")
        check.text("tokenCode", code, 6, 6, r"[\d]*", secret=True)
        check.raise_if_any()
        if role_arn is None or session_name is None:  # reported above; this narrows the types
            raise AssertionError("unreachable")
        if caller.user.root:
            raise _denied(ROOT_ASSUMES_ROLE)
        with self._state.lock:
            role = self._state.roles.get(role_arn)
        refusal = _not_authorized(caller.arn, "sts:AssumeRole", role_arn)
        if role is None:
            raise refusal
        if role.trusted_arns is not None and caller.user.arn not in role.trusted_arns:
            raise refusal
        if role.external_id is not None and not hmac.compare_digest(
            (external_id or "").encode(), role.external_id.encode()
        ):
            raise refusal
        if duration is None:
            duration = ROLE_DEFAULT_DURATION
        if caller.session is not None and duration > CHAINED_MAX_DURATION:
            raise StsError("ValidationError", ROLE_CHAIN_LIMIT)
        if duration > role.max_session_duration:
            raise StsError("ValidationError", ROLE_MAX_EXCEEDED)
        mfa_authenticated = caller.mfa_authenticated  # a chained session inherits it
        if serial is not None or code is not None:
            if serial is None or code is None:
                raise _denied(MFA_UNVALIDATED)
            self._accept_code(caller.user, serial, code)
            mfa_authenticated = True
        if role.require_mfa and not mfa_authenticated:
            raise refusal
        session = self._issue_session(
            caller.user,
            duration,
            mfa_authenticated=mfa_authenticated,
            role=role,
            role_session_name=session_name,
            chained=caller.session is not None,
        )
        assumed = _xml_fields(AssumedRoleId=f"{role.role_id}:{session_name}", Arn=session.arn)
        return f"{_credentials_xml(session)}<AssumedRoleUser>{assumed}</AssumedRoleUser>"

    # ----------------------------------------------------------------- IAM actions
    #
    # Each caller acts on its own IAM user, as the common "self-manage MFA" policy allows:
    # once a user has an enabled device, changing devices takes an MFA-authenticated
    # session. Root users may only read here (AWS sets up root MFA in the console).

    def _create_virtual_mfa_device(self, params: Mapping[str, str], caller: Caller) -> str:
        check = _Validation()
        name = check.required(params, "VirtualMFADeviceName", "virtualMFADeviceName")
        path = params.get("Path", "/")
        check.text("virtualMFADeviceName", name, 1, 226, r"[\w+=,.@-]+")
        check.text("path", path, 1, 512, r"(\u002F)|(\u002F[\u0021-\u007E]+\u002F)")
        check.raise_if_any()
        if name is None:
            raise AssertionError("unreachable")
        account = caller.role.account if caller.role is not None else caller.user.account
        device = Device(
            serial=f"arn:aws:iam::{account}:mfa{path}{name}",
            seed=pyotp.random_base32(VIRTUAL_SEED_LENGTH),
        )
        with self._state.lock:
            self._check_device_change(caller, "iam:CreateVirtualMFADevice", device.serial)
            devices = self._state.devices
            if any(d.account == account and d.name == name for d in devices.values()):
                raise StsError("EntityAlreadyExists", MFA_NAME_TAKEN, 409)
            devices[device.serial] = _DeviceState(device, owner_arn=None)
        fields = _xml_fields(
            SerialNumber=device.serial,
            Base32StringSeed=_b64(device.seed.encode()),  # a blob: base64 of the base32 text
            QRCodePNG=_b64(QR_CODE_PNG),
        )
        return f"<VirtualMFADevice>{fields}</VirtualMFADevice>"

    def _enable_mfa_device(self, params: Mapping[str, str], caller: Caller) -> None:
        check = _Validation()
        user_name = check.required(params, "UserName", "userName")
        serial = check.required(params, "SerialNumber", "serialNumber")
        code1 = check.required(params, "AuthenticationCode1", "authenticationCode1")
        code2 = check.required(params, "AuthenticationCode2", "authenticationCode2")
        check.text("userName", user_name, 1, 128, r"[\w+=,.@-]+")
        check.text("serialNumber", serial, 9, 256, r"[\w+=/:,.@-]+")
        check.text("authenticationCode1", code1, 6, 6, r"[\d]+", secret=True)
        check.text("authenticationCode2", code2, 6, 6, r"[\d]+", secret=True)
        check.raise_if_any()
        if user_name is None or serial is None or code1 is None or code2 is None:
            raise AssertionError("unreachable")
        now = self._clock()
        now_step = int(now // TOTP_STEP)
        with self._state.lock:
            user = self._own_user(caller, user_name, "iam:EnableMFADevice")
            self._check_device_change(
                caller, "iam:EnableMFADevice", self._user_arn(user, user_name)
            )
            device = self._state.devices.get(serial)
            if device is None or device.account != user.account:
                raise _no_such_device(serial)
            if device.owner_arn is not None:
                raise StsError("EntityAlreadyExists", MFA_IN_USE, 409)
            owned = sum(d.owner_arn == user.arn for d in self._state.devices.values())
            if owned >= MAX_MFA_DEVICES_PER_USER:
                raise StsError("LimitExceeded", MFA_QUOTA, 409)
            totp = pyotp.TOTP(device.device.seed, interval=TOTP_STEP)
            last = device.last_accepted_step
            first_steps = [
                step
                for step in range(now_step - ENABLE_PAST_STEPS, now_step + 1)
                if (last is None or step > last)
                and hmac.compare_digest(totp.generate_otp(step), code1)
                and hmac.compare_digest(totp.generate_otp(step + 1), code2)
            ]
            if not first_steps:
                raise StsError("InvalidAuthenticationCode", BAD_AUTHENTICATION_CODE, 403)
            device.owner_arn = user.arn
            device.enabled_at = now
            device.last_accepted_step = max(first_steps) + 1

    def _deactivate_mfa_device(self, params: Mapping[str, str], caller: Caller) -> None:
        check = _Validation()
        user_name = params.get("UserName")
        serial = check.required(params, "SerialNumber", "serialNumber")
        check.text("userName", user_name, 1, 128, r"[\w+=,.@-]+")
        check.text("serialNumber", serial, 9, 256, r"[\w+=/:,.@-]+")
        check.raise_if_any()
        if serial is None:
            raise AssertionError("unreachable")
        with self._state.lock:
            user = self._own_user(caller, user_name, "iam:DeactivateMFADevice")
            self._check_device_change(
                caller, "iam:DeactivateMFADevice", self._user_arn(user, user_name)
            )
            device = self._state.devices.get(serial)
            if device is None or device.owner_arn != user.arn:
                raise _no_such_device(serial)
            device.owner_arn = device.enabled_at = None

    def _delete_virtual_mfa_device(self, params: Mapping[str, str], caller: Caller) -> None:
        check = _Validation()
        serial = check.required(params, "SerialNumber", "serialNumber")
        check.text("serialNumber", serial, 9, 256, r"[\w+=/:,.@-]+")
        check.raise_if_any()
        if serial is None:
            raise AssertionError("unreachable")
        with self._state.lock:
            self._check_device_change(caller, "iam:DeleteVirtualMFADevice", serial)
            device = self._state.devices.get(serial)
            if device is None or device.account != caller.user.account:
                raise _no_such_device(serial)
            if device.owner_arn is not None:
                raise StsError("DeleteConflict", MFA_IN_USE, 409)
            del self._state.devices[serial]

    def _list_mfa_devices(self, params: Mapping[str, str], caller: Caller) -> str:
        check = _Validation()
        user_name = params.get("UserName")
        check.text("userName", user_name, 1, 128, r"[\w+=,.@-]+")
        check.raise_if_any()
        with self._state.lock:
            user = self._own_user(caller, user_name, "iam:ListMFADevices")
            owned = sorted(
                (d for d in self._state.devices.values() if d.owner_arn == user.arn),
                key=lambda d: d.enabled_at or 0.0,
            )
            members = "".join(
                "<member>"
                + _xml_fields(
                    UserName=user.name,
                    SerialNumber=d.device.serial,
                    EnableDate=_iso8601(d.enabled_at or 0.0),
                )
                + "</member>"
                for d in owned
            )
        return f"<IsTruncated>false</IsTruncated><MFADevices>{members}</MFADevices>"

    def _get_user(self, params: Mapping[str, str], caller: Caller) -> str:
        check = _Validation()
        user_name = params.get("UserName")
        check.text("userName", user_name, 1, 128, r"[\w+=,.@-]+")
        check.raise_if_any()
        with self._state.lock:
            user = self._own_user(caller, user_name, "iam:GetUser")
        created = _iso8601(user.created_at)
        if user.root:  # AWS names no user and no path for the root user
            fields = _xml_fields(UserId=user.user_id, Arn=user.arn, CreateDate=created)
        else:
            fields = _xml_fields(
                Path="/",
                UserName=user.name,
                UserId=user.user_id,
                Arn=user.arn,
                CreateDate=created,
            )
        return f"<User>{fields}</User>"

    # ----------------------------------------------------------------- IAM permissions

    @staticmethod
    def _user_arn(user: User, user_name: str | None) -> str:
        """The resource ARN AWS names for a user-scoped action."""
        return user.arn if user_name is None else f"arn:aws:iam::{user.account}:user/{user_name}"

    def _own_user(self, caller: Caller, user_name: str | None, action: str) -> User:
        """The IAM user an action is for: the caller's own, named or implied (lock held)."""
        if caller.role is not None:
            if user_name is None:
                raise StsError("ValidationError", NON_USER_NEEDS_NAME)
            resource = f"arn:aws:iam::{caller.role.account}:user/{user_name}"
            raise _no_allowing_policy(caller.arn, action, resource)
        user = caller.user
        if user_name is not None and (user.root or user_name != user.name):
            raise _no_allowing_policy(caller.arn, action, self._user_arn(user, user_name))
        return user

    def _check_device_change(self, caller: Caller, action: str, resource: str) -> None:
        """May this caller create, enable, deactivate or delete an MFA device? (lock held)"""
        if caller.role is not None:
            raise _no_allowing_policy(caller.arn, action, resource)
        user = caller.user
        if user.root:
            raise _not_authorized(caller.arn, action, resource)
        enrolled = any(d.owner_arn == user.arn for d in self._state.devices.values())
        if enrolled and not caller.mfa_authenticated:
            raise _explicit_deny(caller.arn, action, resource)

    # ----------------------------------------------------------------- MFA and sessions

    def _accept_code(self, user: User, serial: str, code: str) -> None:
        """Accept a TOTP code once: within one step of now and newer than the last one used."""
        now_step = int(self._clock() // TOTP_STEP)
        with self._state.lock:
            device = self._state.devices.get(serial)
            if device is None or device.owner_arn != user.arn:
                raise _denied(MFA_UNVALIDATED)
            totp = pyotp.TOTP(device.device.seed, interval=TOTP_STEP)
            last = device.last_accepted_step
            fresh = [
                step
                for step in (now_step - 1, now_step, now_step + 1)
                if hmac.compare_digest(totp.generate_otp(step), code)
                and (last is None or step > last)
            ]
            if not fresh:
                raise _denied(MFA_BAD_CODE)
            device.last_accepted_step = max(fresh)

    def _issue_session(
        self,
        user: User,
        duration: int,
        *,
        mfa_authenticated: bool,
        role: Role | None = None,
        role_session_name: str | None = None,
        federated_name: str | None = None,
        chained: bool = False,
    ) -> Session:
        session = Session(
            access_key_id=_random_id("ASIA", 16),
            secret_access_key=_random_secret(),
            session_token=_random_session_token(),
            user=user,
            expires_at=int(self._clock()) + self._lifetime(duration, role),
            mfa_authenticated=mfa_authenticated,
            role=role,
            role_session_name=role_session_name,
            federated_name=federated_name,
            chained=chained,
        )
        with self._state.lock:
            self._state.sessions[session.access_key_id] = session
        return session


# --------------------------------------------------------------------------- HTTP server


class _Server(ThreadingHTTPServer):
    """Threaded HTTP server that remembers open connections so stop() can end them."""

    daemon_threads = True
    # socketserver's default backlog of 5 drops SYNs when tests start many clients at
    # once, and the kernel's 1 s SYN retry then looks like a slow STS.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], emulator: StsEmulator) -> None:
        super().__init__(address, _RequestHandler)
        self.emulator = emulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # the client may have closed it already
                connection.shutdown(socket.SHUT_RDWR)


class _RequestHandler(BaseHTTPRequestHandler):
    """Turns HTTP/1.1 (keep-alive, as botocore uses it) into HttpRequest and back."""

    protocol_version = "HTTP/1.1"

    def version_string(self) -> str:
        return "sts-emulator"  # for the Server header, instead of Python's version

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The Date header tells the emulator's clock, as AWS's tells AWS's time."""
        server = self.server
        if timestamp is None and isinstance(server, _Server):
            timestamp = server.emulator.now()
        return super().date_time_string(timestamp)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence http.server's line per request on stderr."""

    def _serve(self) -> None:
        server = self.server
        if not isinstance(server, _Server):
            raise TypeError("_RequestHandler only serves an StsEmulator")
        length_header = self.headers.get("Content-Length") or "0"
        if not length_header.isdigit() or int(length_header) > MAX_BODY:
            self.send_error(413 if length_header.isdigit() else 400)
            return
        body = self.rfile.read(int(length_header))
        headers: dict[str, list[str]] = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        target = urlsplit(self.path)
        response = server.emulator.handle(
            HttpRequest(self.command, target.path, target.query, headers, body)
        )
        if response.sabotage in ("hang", "drop"):
            if response.sabotage == "hang":
                server.emulator.wait_for_release(HANG_LIMIT)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(response.status)  # also sends Date and Server
        self.send_header("x-amzn-RequestId", response.request_id)
        self.send_header("Content-Type", response.content_type)
        if response.location is not None:
            self.send_header("Location", response.location)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if response.sabotage != "drip":
            self.wfile.write(response.body)
            return
        for index in range(len(response.body)):  # until the whole answer or a release
            try:
                self.wfile.write(response.body[index : index + 1])
                self.wfile.flush()
            except OSError:
                return  # the client gave up
            if server.emulator.released(DRIP_PAUSE):
                self.close_connection = True
                return


# --------------------------------------------------------------------------- command line


def _write_private_file(path: Path, text: str, *, append: bool = False) -> None:
    """Write (or append) with mode 0600: the state file holds a secret key and a seed."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _write_state(path: Path, state: Mapping[str, str]) -> None:
    """Write whole-or-nothing (temp file, then rename) so a poller never reads half of it."""
    temp = path.with_name(path.name + ".tmp")
    temp.unlink(missing_ok=True)
    _write_private_file(temp, json.dumps(state, indent=2) + "\n")
    temp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.sts_emulator",
        description="Serve a strict STS (and IAM MFA) emulator with user 'alice' and her "
        "MFA device.",
    )
    parser.add_argument("--state-file", type=Path, required=True, help="JSON written here")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--no-device", action="store_true", help="alice has no MFA device yet (to enroll one)"
    )
    args = parser.parse_args(argv)
    state_file: Path = args.state_file
    log_file = Path(f"{state_file}.log")

    def log_call(call: Call) -> None:
        _write_private_file(log_file, json.dumps(asdict(call)) + "\n", append=True)

    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with StsEmulator(port=args.port, on_call=log_call) as emulator:
        user = emulator.add_user("alice", account=DEFAULT_ACCOUNT)
        state = {
            "url": emulator.url,
            "access_key_id": user.access_key_id,
            "secret_access_key": user.secret_access_key,
            "account": user.account,
        }
        if not args.no_device:
            device = emulator.add_mfa_device(user)
            state.update(mfa_serial=device.serial, seed=device.seed)
        _write_state(state_file, state)
        print(emulator.url, flush=True)
        while not stopping.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
