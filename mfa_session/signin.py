"""Console sign-in: a role or federation session, traded at the AWS federation endpoint
for a sign-in token, makes an ``Action=login`` URL in the partition of the profile's
region (AWS's "custom identity broker" recipe).

The endpoint takes only role and GetFederationToken sessions, never GetSessionToken
ones: a role assumed on the MFA session is how MFA reaches the console. The sign-in
token and the URL are secrets (for 15 minutes the URL opens the console session for
whoever holds it), so they never appear in errors or debug output.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, Any
from urllib.parse import quote_plus, urlencode, urlsplit

from mfa_session import __version__, environment
from mfa_session.config import CHAINED_ROLE_LIMIT, AwsFiles, MfaProfile
from mfa_session.credentials import Credentials, utc_now
from mfa_session.deadline import Overrun, within
from mfa_session.debug import debug
from mfa_session.errors import ConfigError, MfaSessionError, StsError, UsageError, sensitive

ISSUER = "mfa-session"  # shown by the console as who signed the session in
TIMEOUT = 10.0  # seconds for the whole exchange with the federation endpoint
MAX_ANSWER = 64 * 1024
STANDARD_STREAMS = (0, 1, 2)  # what a browser launcher inherits from us
MIN_CONSOLE_SESSION = 900  # AWS's SessionDuration bounds
MAX_CONSOLE_SESSION = 43_200
DEFAULT_FEDERATION_DURATION = 3_600
# Reuse a cached role session only with this much left: the console gets at least it.
LOGIN_MIN_REMAINING = 1_800
# A federated session has the intersection of its session policy and the user's own
# policies; with no session policy it could do nothing. Allow-all means "the user's".
ALLOW_ALL_POLICY = (
    '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}'
)
_SERVICE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class SigninError(MfaSessionError):
    """The federation endpoint or the browser failed. Never carries the URL or a token."""


@dataclass(frozen=True)
class Partition:
    """Where an AWS partition's federation endpoint and console live."""

    name: str
    signin_host: str
    console_host: str


PARTITIONS = {
    "aws": Partition("aws", "signin.aws.amazon.com", "console.aws.amazon.com"),
    "aws-cn": Partition("aws-cn", "signin.amazonaws.cn", "console.amazonaws.cn"),
    "aws-us-gov": Partition(
        "aws-us-gov", "signin.amazonaws-us-gov.com", "console.amazonaws-us-gov.com"
    ),
}


@dataclass(frozen=True)
class LoginRequest:
    """What `login` was asked for; None means "from the profile or the default"."""

    profile: str
    role_arn: str | None = None
    external_id: str | None = None
    role_session_name: str | None = None
    token_code: str | None = field(default=None, repr=False)
    duration: int | None = None
    min_remaining: int | None = None
    destination: str | None = None
    without_mfa: bool = False


@dataclass(frozen=True)
class ConsoleLogin:
    """A ready sign-in URL (a secret) and what it signs in as."""

    url: str = field(repr=False)
    identity: str  # e.g. "role ARN (MFA)"
    expiration: datetime


def partition_for(region: str | None) -> Partition:
    """The partition of a region, as botocore's endpoint data knows it; aws without one."""
    if not region:
        return PARTITIONS["aws"]
    import botocore.session
    from botocore.exceptions import UnknownRegionError

    try:
        name = botocore.session.Session().get_partition_for_region(region)
    except UnknownRegionError:
        raise ConfigError(
            f"region {region!r} belongs to no AWS partition that botocore knows",
            hint="check the profile's region (or AWS_REGION)",
        ) from None
    partition = PARTITIONS.get(name)
    if partition is None:
        raise ConfigError(
            f"console sign-in through the federation endpoint is not available in "
            f"partition {name} (region {region})",
            hint="mfa-session signs in to the aws, aws-cn and aws-us-gov partitions",
        )
    return partition


def federation_endpoint(partition: Partition, environ: Mapping[str, str]) -> str:
    """The partition's federation endpoint, or MFA_SESSION_SIGNIN_URL."""
    override = environ.get(environment.SIGNIN_URL)
    if not override:
        return f"https://{partition.signin_host}/federation"
    wrong = ConfigError(
        f"{environment.SIGNIN_URL} must be an https:// URL with no user, query or fragment "
        "(plain http:// only to this machine): the session's secret key travels to it",
        hint=f"unset {environment.SIGNIN_URL} to use https://{partition.signin_host}/federation",
    )
    try:
        parts = urlsplit(override)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        raise wrong from None
    if (
        not parts.hostname
        or not re.fullmatch(r"[!-~]+", override)
        or parts.username is not None
        or parts.query
        or parts.fragment
        or parts.scheme not in ("https", "http")
        or (parts.scheme == "http" and parts.hostname not in _LOOPBACK)
    ):
        raise wrong
    return override


def destination_url(partition: Partition, region: str | None, destination: str | None) -> str:
    """The console page to land on: its home, a service (``s3``), or a console URL as given."""
    region_query = f"?{urlencode({'region': region})}" if region else ""
    console = partition.console_host
    if destination is None:
        return f"https://{console}/console/home{region_query}"
    if _SERVICE.fullmatch(destination):
        return f"https://{console}/{destination}/home{region_query}"
    try:
        parts = urlsplit(destination)
        port = parts.port
    except ValueError:
        parts, port = urlsplit(""), None
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or not host:
        raise UsageError(
            "--destination must be a service name such as s3 or an https:// console URL"
        )
    if (
        parts.username is not None
        or port not in (None, 443)
        or not (host == console or host.endswith("." + console))
    ):
        raise UsageError(
            f"--destination must be a console URL of partition {partition.name} "
            f"(https://{console}/... or a subdomain), not one on {host}",
            hint="the partition follows the profile's region",
        )
    return destination


def request_signin_token(
    endpoint: str,
    credentials: Credentials,
    session_duration: int | None,
    *,
    ca_bundle: str | None = None,
    timeout: float = TIMEOUT,
) -> str:
    """Trade a role or federation session for a sign-in token (``Action=getSigninToken``).

    A plain HTTPS GET through urllib: HTTPS_PROXY/NO_PROXY apply as urllib reads them,
    ``ca_bundle`` replaces the system's CAs, redirects are not followed, and the whole
    exchange is bounded by ``timeout``."""
    query = {"Action": "getSigninToken"}
    if session_duration is not None:
        query["SessionDuration"] = str(session_duration)
    query["Session"] = json.dumps(
        {
            "sessionId": credentials.access_key_id,
            "sessionKey": credentials.secret_access_key,
            "sessionToken": credentials.session_token,
        }
    )
    debug("getSigninToken at %s (SessionDuration: %s)", endpoint, session_duration)
    deadline = time.monotonic() + timeout
    try:
        request = urllib.request.Request(  # noqa: S310 - checked: https, or http to loopback
            f"{endpoint}?{urlencode(query)}",
            headers={"User-Agent": f"mfa-session/{__version__}", "Accept": "application/json"},
        )
        opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=_tls_context(ca_bundle)), _NoRedirect()
        )

        def exchange() -> bytes:
            with opener.open(request, timeout=timeout) as response:
                return _read_bounded(response, deadline)

        body = within(timeout, exchange)  # urllib's timeout bounds each read, not the answer
    except urllib.error.HTTPError as exc:
        exc.close()
        raise _status_error(exc.code, endpoint) from None
    except (OSError, http.client.HTTPException, ValueError, Overrun) as exc:  # URLError: OSError
        # Never shown: urllib's texts may quote the request's URL, which holds the secret key.
        raise _transport_error(exc, endpoint, timeout) from None
    try:
        answer = json.loads(body.decode("utf-8"))
    except ValueError:
        answer = None
    token = answer.get("SigninToken") if isinstance(answer, dict) else None
    # The answer is never shown: it may hold a token.
    if not isinstance(token, str) or not re.fullmatch(r"[!-~]{1,16384}", token):
        raise _unreadable(endpoint)
    debug("got a sign-in token (%d characters)", len(token))
    sensitive(quote_plus(token))  # as it appears in the login URL
    return sensitive(token)


def login_url(endpoint: str, token: str, destination: str) -> str:
    """The ``Action=login`` URL: for 15 minutes it opens the console session."""
    query = {"Action": "login", "Issuer": ISSUER, "Destination": destination, "SigninToken": token}
    return sensitive(f"{endpoint}?{urlencode(query)}")


def open_in_browser(url: str) -> None:
    """Open the URL with the standard library's webbrowser, which honours $BROWSER."""
    import webbrowser

    hint = "set $BROWSER to a browser command, or use --print and open the URL yourself"
    try:
        browser = webbrowser.get()
    except webbrowser.Error:
        raise SigninError("no web browser found to open the console in", hint=hint) from None
    name = str(getattr(browser, "name", "") or type(browser).__name__)  # a command, never the URL
    try:
        with _streams_to_devnull():
            opened = browser.open(url)
    except Exception:  # a launcher's error may quote its command line, which holds the URL
        opened = False
    if not opened:
        raise SigninError(f"the web browser ({name}) could not be started or failed", hint=hint)


@contextlib.contextmanager
def _streams_to_devnull() -> Iterator[None]:
    """Give launchers /dev/null for our standard streams: when they fail, xdg-open and the
    like print their command line, which holds the URL."""
    sys.stdout.flush()
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_RDWR)
    saved: dict[int, int] = {}
    try:
        for fd in STANDARD_STREAMS:
            try:
                saved[fd] = os.dup(fd)
            except OSError:  # closed (a daemon, `<&-`): nothing there to hide
                continue
            os.dup2(devnull, fd)
        yield
    finally:
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


def console_login(
    request: LoginRequest, environ: Mapping[str, str], say: Callable[[str], None]
) -> ConsoleLogin:
    """Console credentials for the profile, exchanged for a sign-in URL.

    A role (the profile's or --role-arn) comes from session.get_session: assumed on the
    cached MFA session (no code; AWS caps it at 1 hour) or, for longer, directly with
    the keys and a fresh code. Without a role only GetFederationToken is left, which
    has no MFA context: refused unless the request says ``without_mfa``."""
    files = AwsFiles(environ)
    plan = files.plan(request.profile)
    role_arn = request.role_arn or (plan.hops[-1].role_arn if plan.hops else None)
    if role_arn is None and not request.without_mfa:
        raise SigninError(
            f"profile {request.profile!r} has no role: for an IAM user AWS offers only "
            "GetFederationToken, whose console session carries no MFA, so policies that "
            "demand MFA deny there",
            hint="keep MFA with a role (--role-arn ARN or a role profile, see docs/login.md), "
            "or pass --without-mfa to sign in anyway",
        )
    if role_arn is not None and request.without_mfa:
        raise UsageError("--without-mfa is for a profile without a role: a role keeps MFA")
    profile = files.profile(request.profile)
    region = (
        profile.region
        or plan.mfa.profile.region
        or environ.get("AWS_REGION")
        or environ.get("AWS_DEFAULT_REGION")
    )
    partition = partition_for(region)
    destination = destination_url(partition, region, request.destination)
    endpoint = federation_endpoint(partition, environ)
    ca_bundle = (
        environ.get("AWS_CA_BUNDLE")
        or profile.get("ca_bundle")
        or plan.mfa.profile.get("ca_bundle")
    )
    if role_arn is None:
        _refuse_role_options(request)
        say(
            f"signing in as the IAM user of profile {plan.mfa.name!r} with GetFederationToken: "
            "the console session has no MFA, so policies that demand MFA deny there "
            "(a role keeps MFA: --role-arn)"
        )
        credentials, identity = _federation_session(plan.mfa, request.duration, environ)
        session_duration = None
    else:
        credentials = _role_session(request, environ)
        identity = f"role {role_arn} (MFA)"
        session_duration = _console_duration(credentials, request.duration)
    token = request_signin_token(endpoint, credentials, session_duration, ca_bundle=ca_bundle)
    ends = credentials.expiration
    if session_duration is not None:
        ends = min(ends, utc_now() + timedelta(seconds=session_duration))
    return ConsoleLogin(
        url=login_url(endpoint, token, destination),
        identity=identity,
        expiration=ends,
    )


def _role_session(request: LoginRequest, environ: Mapping[str, str]) -> Credentials:
    from mfa_session.session import SessionRequest, get_session

    min_remaining = request.min_remaining
    if min_remaining is None:
        # At least the length asked for (session.py caps it at half the session): a cached
        # chained session, an hour at most, never stands in for a longer one.
        min_remaining = max(LOGIN_MIN_REMAINING, request.duration or 0)
    session = get_session(
        SessionRequest(
            profile=request.profile,
            duration=request.duration,
            token_code=request.token_code,
            min_remaining=min_remaining,
            role_arn=request.role_arn,
            external_id=request.external_id,
            role_session_name=request.role_session_name,
        ),
        environ,
    )
    return session.credentials


def _console_duration(credentials: Credentials, asked: int | None) -> int | None:
    """SessionDuration for getSigninToken: none for a session that may be chained (AWS
    refuses it there, and the console then lasts as long as the credentials); for a
    role assumed directly, what was asked for, within the time its credentials have left."""
    left = credentials.seconds_left()
    if left <= CHAINED_ROLE_LIMIT + 60:  # chained sessions last an hour at most
        return None
    return max(MIN_CONSOLE_SESSION, min(left, asked or left, MAX_CONSOLE_SESSION))


def _federation_session(
    mfa: MfaProfile, duration: int | None, environ: Mapping[str, str]
) -> tuple[Credentials, str]:
    from mfa_session.sts import Sts, time_budget

    sts = Sts(mfa, time_budget(environ))
    name = _federated_name(sts.user_name(None))
    try:
        credentials = sts.get_federation_token(
            name, duration or DEFAULT_FEDERATION_DURATION, ALLOW_ALL_POLICY
        )
    except StsError as exc:
        if exc.hint is None and "GetFederationToken" in exc.message:
            raise StsError(
                exc.message,
                hint="a policy that demands MFA denies GetFederationToken itself: sign in "
                "with a role instead (--role-arn)",
            ) from exc
        raise
    return credentials, f"federated user {name} (no MFA)"


def _federated_name(user_name: str) -> str:
    """GetFederationToken's Name: 2-32 characters of [\\w+=,.@-]."""
    allowed = "".join(c if c.isalnum() or c in "_+=,.@-" else "-" for c in user_name)
    return (allowed or "mfa-session").ljust(2, "-")[:32]


def _refuse_role_options(request: LoginRequest) -> None:
    given = [
        option
        for option, value in (
            ("--external-id", request.external_id),
            ("--role-session-name", request.role_session_name),
            ("--token-code", request.token_code),
            ("--min-remaining", request.min_remaining),
        )
        if value is not None
    ]
    if given:
        raise UsageError(f"{', '.join(given)} apply to a role; this profile has none")


def _tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError):
        raise SigninError(
            f"cannot use the CA bundle {ca_bundle}",
            hint="AWS_CA_BUNDLE / ca_bundle must name a readable PEM file",
        ) from None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: the request's URL holds the session's secret key."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> None:
        return None


def _read_bounded(response: Any, deadline: float) -> bytes:
    """Read at most MAX_ANSWER bytes, and not past the deadline."""
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError("the answer took too long")
        chunk: bytes = response.read(8192)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_ANSWER:
            raise http.client.HTTPException("the answer is too long")
        chunks.append(chunk)


def _where(endpoint: str) -> str:
    return f"the AWS sign-in endpoint at {endpoint}"


def _unreadable(endpoint: str) -> SigninError:
    return SigninError(
        f"{_where(endpoint)} sent an answer that cannot be read",
        hint=f"try again; if it persists, check {environment.SIGNIN_URL} and any proxy",
    )


def _status_error(status: int, endpoint: str) -> SigninError:
    """One clear error per HTTP status; the answer itself is never shown."""
    where = _where(endpoint)
    if 300 <= status < 400:
        return SigninError(
            f"{where} answered with a redirect (HTTP {status}), which is not followed",
            hint=f"check {environment.SIGNIN_URL}",
        )
    if status == 429:
        return SigninError(
            f"{where} is throttling requests (HTTP 429)", hint="wait a minute and try again"
        )
    if status >= 500:
        return SigninError(f"{where} failed (HTTP {status})", hint="try again in a minute")
    if status in (400, 401, 403):
        return SigninError(
            f"{where} refused the session's credentials (HTTP {status})",
            hint="it takes only role and GetFederationToken sessions that have not ended or "
            "been revoked; 'mfa-session clear --profile P' forgets cached sessions",
        )
    return SigninError(f"{where} answered HTTP {status}")


def _transport_error(exc: Exception, endpoint: str, timeout: float) -> SigninError:
    """One clear error for each way the exchange can fail; exception texts are not shown."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    where = _where(endpoint)
    network = "check the network and HTTPS_PROXY / NO_PROXY"
    if isinstance(reason, TimeoutError | Overrun):
        return SigninError(f"{where} did not answer within {timeout:g} s", hint=network)
    if isinstance(reason, ssl.SSLError):
        return SigninError(
            f"TLS to {where} failed",
            hint="check AWS_CA_BUNDLE / ca_bundle and any TLS-inspecting proxy",
        )
    if isinstance(reason, http.client.HTTPException):
        return _unreadable(endpoint)
    if str(reason).startswith("Tunnel connection failed"):
        return SigninError(f"cannot reach {where} through the proxy", hint=network)
    return SigninError(
        f"cannot reach {where}", hint=f"{network}, and {environment.SIGNIN_URL} if it is set"
    )
