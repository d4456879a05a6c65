"""A strict AWS STS emulator that serves real HTTP on loopback.

Real botocore clients talk to it, so code under test goes through the same
SigV4 signing, query-protocol serialisation and XML error parsing as against
AWS. It is strict on purpose: it recomputes every signature, refuses a TOTP
code it has accepted before and answers with AWS's own error codes and texts,
because a lenient fake would hide exactly the bugs it exists to catch.

Demo server: ``python -m tests.sts_emulator --state-file PATH [--port 0]``.
"""

from __future__ import annotations

import argparse
import base64
import calendar
import contextlib
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
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit
from xml.sax.saxutils import escape

import pyotp

API_VERSION = "2011-06-15"
XMLNS = f"https://sts.amazonaws.com/doc/{API_VERSION}/"
SERVICE = "sts"
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


# --------------------------------------------------------------------------- public records


@dataclass(frozen=True)
class User:
    """An IAM user with one long-term access key (the key's state lives in the emulator)."""

    name: str
    account: str
    user_id: str
    access_key_id: str
    secret_access_key: str = field(repr=False)

    @property
    def arn(self) -> str:
        return f"arn:aws:iam::{self.account}:user/{self.name}"


@dataclass(frozen=True)
class Device:
    """A virtual MFA device; the seed is what an authenticator app would hold."""

    serial: str
    seed: str = field(repr=False)


@dataclass(frozen=True)
class Session:
    """Temporary credentials issued here, remembered so they can sign later calls."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    user: User
    expires_at: int
    mfa_authenticated: bool


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


# --------------------------------------------------------------------------- shared state


@dataclass
class _AccessKey:
    user: User
    secret: str = field(repr=False)
    active: bool = True


@dataclass
class _DeviceState:
    device: Device
    owner_arn: str
    last_accepted_step: int | None = None  # AWS never accepts a code twice


@dataclass
class _Fault:
    code: str
    message: str
    status: int
    remaining: int


@dataclass
class _State:
    """Everything requests read or change. One lock guards all of it: requests are few."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    users: dict[str, User] = field(default_factory=dict)  # by ARN
    keys: dict[str, _AccessKey] = field(default_factory=dict)  # by access key id
    devices: dict[str, _DeviceState] = field(default_factory=dict)  # by serial
    sessions: dict[str, Session] = field(default_factory=dict)  # by access key id
    faults: dict[str, deque[_Fault]] = field(default_factory=dict)  # by action
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


def _result_document(action: str, result: str, request_id: str) -> str:
    return (
        f'<{action}Response xmlns="{XMLNS}">'
        f"<{action}Result>{result}</{action}Result>"
        f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>"
        f"</{action}Response>"
    )


def _error_document(error: StsError, request_id: str) -> str:
    kind = "Receiver" if error.status >= 500 else "Sender"
    return (
        f'<ErrorResponse xmlns="{XMLNS}">'
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
        self, member: str, value: str, low: int, high: int, pattern: str, *, secret: bool = False
    ) -> None:
        """Check length and pattern; a ``secret`` value (a code) is never echoed back."""
        shown = None if secret else value
        if len(value) < low:
            self._fail(member, shown, f"have length greater than or equal to {low}")
        elif len(value) > high:
            self._fail(member, shown, f"have length less than or equal to {high}")
        if not re.fullmatch(pattern, value, re.ASCII):
            self._fail(member, shown, f"satisfy regular expression pattern: {pattern}")

    def raise_if_any(self) -> None:
        if self.problems:
            count = len(self.problems)
            noun = "error" if count == 1 else "errors"
            raise StsError(
                "ValidationError",
                f"{count} validation {noun} detected: " + "; ".join(self.problems),
            )


def _int_or_none(raw: str | None) -> int | None:
    return int(raw) if raw is not None and re.fullmatch(r"-?[0-9]{1,12}", raw) else None


def _claimed_access_key(request: HttpRequest) -> str:
    """The key id a request names, for the log, whether or not it verifies."""
    match = re.search(r"Credential=([^/,\s]+)/", request.header("authorization") or "")
    return match.group(1) if match else ""


# --------------------------------------------------------------------------- the emulator

Handler = Callable[[Mapping[str, str], Caller], str]


class StsEmulator:
    """AWS STS on 127.0.0.1: users, MFA devices, sessions, a call log and fault injection.

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
        # Action -> handler. AssumeRole and IAM actions plug in here.
        self._handlers: dict[str, Handler] = {
            "GetSessionToken": self._get_session_token,
            "GetCallerIdentity": self._get_caller_identity,
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

    def add_user(self, name: str, account: str = DEFAULT_ACCOUNT) -> User:
        """Create an IAM user with an active long-term (AKIA) key pair."""
        user = User(
            name=name,
            account=account,
            user_id=_random_id("AIDA", 17),
            access_key_id=_random_id("AKIA", 16),
            secret_access_key=_random_secret(),
        )
        with self._state.lock:
            if user.arn in self._state.users:
                raise ValueError(f"user {user.arn} already exists")
            self._state.users[user.arn] = user
            self._state.keys[user.access_key_id] = _AccessKey(user, user.secret_access_key)
        return user

    def add_mfa_device(self, user: User, name: str | None = None) -> Device:
        """Attach a virtual MFA device (named after the user by default) with a fresh seed."""
        device = Device(
            serial=f"arn:aws:iam::{user.account}:mfa/{name or user.name}",
            seed=pyotp.random_base32(),
        )
        with self._state.lock:
            if device.serial in self._state.devices:
                raise ValueError(f"MFA device {device.serial} already exists")
            self._state.devices[device.serial] = _DeviceState(device, owner_arn=user.arn)
        return device

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
        self, action: str, code: str, message: str, status: int = 400, times: int = 1
    ) -> None:
        """The next ``times`` authenticated calls of ``action`` get this error instead."""
        with self._state.lock:
            queue = self._state.faults.setdefault(action, deque())
            queue.append(_Fault(code, message, status, times))

    def calls(self, action: str | None = None) -> list[Call]:
        """A copy of the call log in arrival order, optionally only one action's calls."""
        with self._state.lock:
            ordered = sorted(self._state.calls, key=lambda entry: entry[0])
        return [call for _, call in ordered if action is None or call.action == action]

    # ----------------------------------------------------------------- request pipeline

    def handle(self, request: HttpRequest) -> HttpResponse:
        """Answer one HTTP request; every request, good or bad, lands in the call log."""
        arrival = next(self._arrivals)
        arrived_at = self._clock()
        request_id = str(uuid.uuid4())
        params: dict[str, str] = {}
        try:
            self._check_route(request)
            params = self._parse_params(request)
            body = self._answer(request, params, request_id)
            status, outcome = 200, "ok"
        except StsError as error:
            body = _error_document(error, request_id)
            status, outcome = error.status, error.code
        except Exception:  # an emulator bug: show it, and answer like AWS would
            traceback.print_exc()
            failure = StsError("InternalFailure", "An internal error occurred.", 500)
            body = _error_document(failure, request_id)
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
        return HttpResponse(status, body.encode(), request_id)

    def _record(self, arrival: int, call: Call) -> None:
        with self._state.lock:
            self._state.calls.append((arrival, call))
            if self._on_call is not None:
                self._on_call(call)  # under the lock, so a log file keeps one order

    def _answer(self, request: HttpRequest, params: Mapping[str, str], request_id: str) -> str:
        """Authenticate, then let an injected fault or the action's handler answer."""
        caller = self._authenticate(request)
        self._take_fault(params.get("Action", ""))
        return self._dispatch(params, caller, request_id)

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

    def _authenticate(self, request: HttpRequest) -> Caller:
        """Verify SigV4 exactly as AWS would: key, scope, clock, then the signature itself."""
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
        self._check_scope(auth, amz_date)
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
            if not key.active or token is not None:
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
    def _check_scope(auth: SigV4Authorization, amz_date: str) -> None:
        if auth.date != amz_date[:8]:
            raise _bad_signature(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of "
                f"date from HTTP: '{auth.date}' != '{amz_date[:8]}', from '{amz_date}'."
            )
        if auth.service != SERVICE:
            raise _bad_signature(f"Credential should be scoped to correct service: '{SERVICE}'. ")
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

    def _take_fault(self, action: str) -> None:
        with self._state.lock:
            queue = self._state.faults.get(action)
            if not queue:
                return
            fault = queue[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                queue.popleft()
        raise StsError(fault.code, fault.message, fault.status)

    def _dispatch(self, params: Mapping[str, str], caller: Caller, request_id: str) -> str:
        action = params.get("Action")
        if action is None:
            raise StsError("MissingAction", "Missing Action")
        version = params.get("Version", "NO_VERSION_SPECIFIED")
        handler = self._handlers.get(action)
        if handler is None or version != API_VERSION:
            raise StsError(
                "InvalidAction", f"Could not find operation {action} for version {version}"
            )
        return _result_document(action, handler(params, caller), request_id)

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
        session = self._issue_session(
            caller.user,
            DEFAULT_DURATION if duration is None else duration,
            mfa_authenticated=serial is not None,
        )
        credentials = _xml_fields(
            AccessKeyId=session.access_key_id,
            SecretAccessKey=session.secret_access_key,
            SessionToken=session.session_token,
            Expiration=_iso8601(session.expires_at),
        )
        return f"<Credentials>{credentials}</Credentials>"

    def _get_caller_identity(self, params: Mapping[str, str], caller: Caller) -> str:
        user = caller.user
        return _xml_fields(Arn=user.arn, UserId=user.user_id, Account=user.account)

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

    def _issue_session(self, user: User, duration: int, *, mfa_authenticated: bool) -> Session:
        session = Session(
            access_key_id=_random_id("ASIA", 16),
            secret_access_key=_random_secret(),
            session_token=_random_session_token(),
            user=user,
            expires_at=int(self._clock()) + duration,
            mfa_authenticated=mfa_authenticated,
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
        self.send_response(response.status)  # also sends Date and Server
        self.send_header("x-amzn-RequestId", response.request_id)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)


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
        description="Serve a strict STS emulator with user 'alice' and her MFA device.",
    )
    parser.add_argument("--state-file", type=Path, required=True, help="JSON written here")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
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
        device = emulator.add_mfa_device(user)
        _write_state(
            state_file,
            {
                "url": emulator.url,
                "access_key_id": user.access_key_id,
                "secret_access_key": user.secret_access_key,
                "mfa_serial": device.serial,
                "seed": device.seed,
                "account": user.account,
            },
        )
        print(emulator.url, flush=True)
        while not stopping.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
