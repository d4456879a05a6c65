"""A credential endpoint that speaks the AWS container credentials protocol.

SDKs given ``AWS_CONTAINER_CREDENTIALS_FULL_URI`` and ``AWS_CONTAINER_AUTHORIZATION_TOKEN``
ask it for credentials and come back before those expire, so a long-running process
never holds keys that end under it. Every answer comes from ``fetch`` (for the CLI:
``session.get_session``, the cache, lock, code and STS every other command uses). One
fetch runs at a time and every request waits a bounded time for it: a prompt nobody
answers never hangs a client, and a failure is retried only after a pause that grows,
so nothing spins (aws-vault's server burns CPU when the MFA session ends).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from mfa_session import environment
from mfa_session.credentials import Credentials, format_utc, utc_now
from mfa_session.debug import debug
from mfa_session.errors import MfaSessionError, UsageError, sensitive
from mfa_session.session import SessionRequest, get_session

FULL_URI = "AWS_CONTAINER_CREDENTIALS_FULL_URI"
AUTHORIZATION_TOKEN = "AWS_CONTAINER_AUTHORIZATION_TOKEN"  # noqa: S105 - a variable name
LOOPBACK = "127.0.0.1"
PATH = "/"
# botocore asks again 15 minutes before expiry (and must have new keys at 10); handing
# out less than 15 minutes would bring every SDK call back here. Five more minutes make
# each answer last a while.
MIN_REMAINING = 20 * 60
# The JavaScript SDK gives up on an answer after 1 s, botocore after 2 s; both retry
# about a second later. Answering within that, even with "not yet", beats a timeout.
REQUEST_WAIT = 0.8
# While a new session is on its way (a prompt, say), the previous one is still handed
# out if it has this long left: SDKs keep working until the person answers.
STALE_FLOOR = 60
FIRST_BACKOFF = 2.0
MAX_BACKOFF = 60.0
_IDLE_CONNECTION_SECONDS = 10


class ListenAddress:
    """Where the server binds, and the address clients are told to use."""

    __slots__ = ("client_host", "host", "ip")

    def __init__(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        self.ip = ip
        self.host = str(ip)
        client = ip
        if ip.is_unspecified:  # every interface: local clients still use loopback
            client = ipaddress.ip_address("::1" if ip.version == 6 else LOOPBACK)
        self.client_host = f"[{client}]" if client.version == 6 else str(client)

    @property
    def is_loopback(self) -> bool:
        return self.ip.is_loopback


def listen_address(text: str | None, allow_non_loopback: bool) -> ListenAddress:
    """The --listen address; anything beyond loopback only when asked for in so many words."""
    if text is None or text == "localhost":
        return ListenAddress(ipaddress.ip_address(LOOPBACK))
    try:
        ip = ipaddress.ip_address(text.strip().removeprefix("[").removesuffix("]"))
    except ValueError:
        raise UsageError(f"--listen wants an IP address such as {LOOPBACK}, not {text!r}") from None
    address = ListenAddress(ip)
    if not address.is_loopback and not allow_non_loopback:
        raise UsageError(
            f"--listen {ip} is not a loopback address: whoever reaches it with the token "
            "gets your AWS session",
            hint="add --allow-non-loopback if that is what you want (see docs/server.md)",
        )
    return address


class Unavailable(Exception):
    """No credentials to hand out right now; the message is safe to show to any client."""

    def __init__(self, code: str, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after


class _Attempt:
    """One fetch in flight; every request that arrives meanwhile waits for its outcome."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.done = threading.Event()
        self.credentials: Credentials | None = None
        self.error: Unavailable | None = None


class Refresher:
    """At most one fetch at a time, shared by concurrent requests, with a growing pause
    after a failure so that a code source that keeps failing is not run in a loop."""

    def __init__(
        self,
        fetch: Callable[[], Credentials],
        initial: Credentials | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._attempt: _Attempt | None = None
        self._latest = initial
        self._failure: Unavailable | None = None
        self._retry_at = 0.0
        self._backoff = FIRST_BACKOFF

    def prime(self, credentials: Credentials) -> None:
        """The session made before serving began: the fallback while the next one is made."""
        with self._lock:
            self._latest = credentials

    def credentials(self, wait: float) -> Credentials:
        """Fresh credentials, waiting for the fetch until it has run ``wait`` seconds."""
        with self._lock:
            attempt = self._attempt
            if attempt is None:
                now = self._clock()
                if self._failure is not None and now < self._retry_at:
                    return self._fallback(self._failure.message, self._retry_at - now)
                attempt = self._attempt = _Attempt(now)
                threading.Thread(
                    target=self._run, args=(attempt,), name="mfa-session-fetch", daemon=True
                ).start()
        # Up to ``wait`` after the attempt began: past that it is likely a prompt, and
        # every request is answered at once instead of each one waiting again.
        if not attempt.done.wait(max(0.0, attempt.started + wait - self._clock())):
            waited = self._clock() - attempt.started
            return self._fallback(
                f"mfa-session is getting a new session ({waited:.0f} s so far; it may be "
                "waiting for an MFA code on its terminal or in a dialog)",
                1.0,
                code="SessionPending",
            )
        if attempt.credentials is not None:
            return attempt.credentials
        assert attempt.error is not None  # noqa: S101 - one of the two is always set
        return self._fallback(attempt.error.message, attempt.error.retry_after)

    def _fallback(
        self, message: str, retry_after: float, code: str = "SessionUnavailable"
    ) -> Credentials:
        """The previous session while it still has a while left, else the reason there is none."""
        latest = self._latest
        if latest is not None and latest.seconds_left() > STALE_FLOOR:
            return latest
        raise Unavailable(code, message, retry_after)

    def _run(self, attempt: _Attempt) -> None:
        try:
            credentials = self._fetch()
        except MfaSessionError as exc:
            self._finish(attempt, None, exc.message + (f" (hint: {exc.hint})" if exc.hint else ""))
        except BaseException as exc:  # a bug: name it, never quote it (it may hold a secret);
            # and finish the attempt whatever it was, or every later request would wait on it
            debug("fetching a session failed unexpectedly: %s", type(exc).__name__)
            self._finish(attempt, None, f"unexpected {type(exc).__name__} in mfa-session")
        else:
            self._finish(attempt, credentials, None)

    def _finish(
        self, attempt: _Attempt, credentials: Credentials | None, error: str | None
    ) -> None:
        with self._lock:
            self._attempt = None
            if credentials is not None:
                self._latest, self._failure, self._backoff = credentials, None, FIRST_BACKOFF
            else:
                pause = self._backoff
                self._retry_at = self._clock() + pause
                self._backoff = min(pause * 2, MAX_BACKOFF)
                self._failure = Unavailable("SessionUnavailable", str(error), pause)
                attempt.error = self._failure
                debug("no session: %s; next try in %.0f s at the earliest", error, pause)
            attempt.credentials = credentials
        attempt.done.set()


class CredentialServer:
    """The endpoint: binds at once, serves from a background thread until ``close``."""

    def __init__(
        self,
        refresher: Refresher,
        address: ListenAddress | None = None,
        port: int = 0,
        token: str | None = None,
        wait: float = REQUEST_WAIT,
    ) -> None:
        self.refresher = refresher
        self.address = address or listen_address(None, False)
        self.token = sensitive(token or secrets.token_urlsafe(32))
        self.wait = wait
        self.counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        server_class = _Http6 if self.address.ip.version == 6 else _Http
        try:
            self._http = server_class((self.address.host, port), _Handler)
        except OSError as exc:
            raise MfaSessionError(
                f"cannot listen on {self.address.host} port {port}: {exc.strerror}",
                hint="pick another --port, or leave it out for a free one",
            ) from None
        self._http.endpoint = self
        self.port: int = self._http.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.address.client_host}:{self.port}{PATH}"

    def client_variables(self) -> dict[str, str]:
        """The two variables every AWS SDK reads to use this endpoint."""
        return {FULL_URI: self.url, AUTHORIZATION_TOKEN: self.token}

    def start(self) -> CredentialServer:
        self._thread = threading.Thread(
            target=self._http.serve_forever,
            kwargs={"poll_interval": 0.25},
            name="mfa-session-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self._http.shutdown()
            self._thread.join()
            self._thread = None
        self._http.server_close()
        if self.counts:
            debug(
                "server closed: %s", ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
            )

    def __enter__(self) -> CredentialServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def count(self, outcome: str) -> int:
        with self._counts_lock:
            self.counts[outcome] += 1
            return self.counts[outcome]

    def answer(
        self, method: str, path: str, headers: Mapping[str, str]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Status, JSON document and extra headers for one request, checks first."""
        refusal = self._refusal(headers)
        if refusal is not None:
            status, code, message = refusal
            seen = self.count(code)
            debug("refused a request (%s): %s; %d so far", code, message, seen)
            return status, _error(code, message), {}
        if method != "GET":
            return 405, _error("MethodNotAllowed", "only GET is served"), {"Allow": "GET"}
        if path.split("?", 1)[0] != PATH:
            return 404, _error("NotFound", f"the credentials are at {PATH}"), {}
        try:
            credentials = self.refresher.credentials(self.wait)
        except Unavailable as exc:
            self.count("unavailable")
            retry = {"Retry-After": str(max(1, round(exc.retry_after)))}
            return 503, _error(exc.code, exc.message), retry
        self.count("served")
        debug(
            "served %s (%d s left)", credentials.access_key_id, credentials.seconds_left(utc_now())
        )
        return 200, container_json(credentials), {}

    def _refusal(self, headers: Mapping[str, str]) -> tuple[int, str, str] | None:
        host = headers.get("host")
        if not host or not _is_local_name(host):
            # A web page that rebinds its own name to 127.0.0.1 still sends that name.
            return 403, "InvalidHost", "the Host header must be an IP address or localhost"
        if headers.get("origin") is not None:
            return 403, "BrowserRequest", "requests from web pages are refused"
        given = headers.get("authorization")
        if given is None:
            return 401, "MissingToken", f"no Authorization header (the {AUTHORIZATION_TOKEN})"
        if not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            return 403, "InvalidToken", "the Authorization header is not this server's token"
        return None


def container_json(credentials: Credentials) -> dict[str, Any]:
    """The container credentials protocol's answer, as ECS and EKS give it."""
    return {
        "AccessKeyId": credentials.access_key_id,
        "SecretAccessKey": credentials.secret_access_key,
        "Token": credentials.session_token,
        "Expiration": format_utc(credentials.expiration),
    }


def session_source(
    request: SessionRequest, environ: Mapping[str, str]
) -> Callable[[], Credentials]:
    """Later sessions for the same request. A code is accepted once, so --token-code and
    MFA_SESSION_TOKEN_CODE, spent on the first session, are left out."""
    later = SessionRequest(
        profile=request.profile,
        duration=request.duration,
        min_remaining=request.min_remaining,
        role_arn=request.role_arn,
        external_id=request.external_id,
        role_session_name=request.role_session_name,
        mfa_serial=request.mfa_serial,
    )
    later_environ = {k: v for k, v in environ.items() if k != environment.TOKEN_CODE}
    return lambda: get_session(later, later_environ).credentials


def _error(code: str, message: str) -> dict[str, Any]:
    # The JavaScript SDK reads Code and Message; botocore shows the body as it is.
    return {"Code": code, "Message": message}


def _is_local_name(host: str) -> bool:
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else ""
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class _Http(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # many SDK clients at once: the default 5 drops connections
    endpoint: CredentialServer


class _Http6(_Http):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Http
    server_version = "mfa-session"
    sys_version = ""
    timeout = _IDLE_CONNECTION_SECONDS  # a client that connects and says nothing

    def _reply(self) -> None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        status, document, extra = self.server.endpoint.answer(self.command, self.path, headers)
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _reply

    def log_message(self, format: str, *args: Any) -> None:
        # The request line and status only: never headers, where the token travels.
        debug("server: %s %s", self.address_string(), format % args)
