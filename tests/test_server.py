"""The credential server's own rules, in-process and fast: one fetch for many requests,
bounded waits, pauses after failures, the request checks, addresses and output formats.
Fetches here are plain functions; tests/e2e/test_server.py runs the real session."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import pytest

from mfa_session import exports, server
from mfa_session.cache import SessionCache
from mfa_session.credentials import Credentials
from mfa_session.errors import CodeError, UsageError
from mfa_session.lock import DeviceLock


def credentials(seconds_left: int = 3600, key: str = "ASIATEST") -> Credentials:
    expiration = datetime.now(timezone.utc) + timedelta(seconds=seconds_left)
    return Credentials(key, "secret/key+value", "session-token", expiration)


class Gate:
    """A fetch that blocks until released, counting its calls."""

    def __init__(self, result: Credentials | Exception) -> None:
        self.result = result
        self.calls = 0
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self) -> Credentials:
        self.calls += 1
        self.entered.set()
        assert self.release.wait(10)
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def serve() -> Iterator[Callable[..., server.CredentialServer]]:
    started: list[server.CredentialServer] = []

    def start(refresher: server.Refresher, **options: object) -> server.CredentialServer:
        endpoint = server.CredentialServer(refresher, **options).start()  # type: ignore[arg-type]
        started.append(endpoint)
        return endpoint

    yield start
    for endpoint in started:
        endpoint.close()


def get(
    endpoint: server.CredentialServer, token: str | None = None, **headers: str
) -> tuple[int, dict[str, object], dict[str, str]]:
    connection = http.client.HTTPConnection(endpoint.address.client_host.strip("[]"), endpoint.port)
    try:
        connection.putrequest("GET", "/", skip_host=True)
        connection.putheader("Host", headers.pop("host", f"127.0.0.1:{endpoint.port}"))
        connection.putheader("Authorization", endpoint.token if token is None else token)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read()), dict(answer.getheaders())
    finally:
        connection.close()


# --------------------------------------------------------------------------- the refresher


def test_concurrent_requests_share_one_fetch() -> None:
    gate = Gate(credentials())
    refresher = server.Refresher(gate)
    results: list[Credentials] = []

    def ask() -> None:
        results.append(refresher.credentials(wait=10))

    threads = [threading.Thread(target=ask) for _ in range(20)]
    threads[0].start()
    assert gate.entered.wait(10)
    for thread in threads[1:]:
        thread.start()
    time.sleep(0.2)  # the other nineteen join the fetch in flight
    gate.release.set()
    for thread in threads:
        thread.join()
    assert gate.calls == 1
    assert len(results) == 20 and all(result is gate.result for result in results)


def test_a_request_waits_a_bounded_time_then_gets_a_reason(
    serve: Callable[..., server.CredentialServer],
) -> None:
    gate = Gate(credentials())
    endpoint = serve(server.Refresher(gate), wait=0.2)
    started = time.monotonic()
    status, document, headers = get(endpoint)
    assert time.monotonic() - started < 2
    assert status == 503
    assert document["Code"] == "SessionPending"
    assert "waiting for an MFA code" in str(document["Message"])
    assert headers["Retry-After"] == "1"
    gate.release.set()
    deadline = time.monotonic() + 10
    while (answer := get(endpoint))[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert answer[1] == server.container_json(gate.result)  # type: ignore[arg-type]
    assert gate.calls <= 2  # a request after the first fetch ended asks anew (a cache hit)


def test_the_previous_session_is_served_while_the_next_is_made() -> None:
    gate = Gate(credentials(key="ASIANEW"))
    refresher = server.Refresher(gate, initial=credentials(1200, key="ASIAOLD"))
    assert refresher.credentials(wait=0.05).access_key_id == "ASIAOLD"
    gate.release.set()
    time.sleep(0.05)
    assert refresher.credentials(wait=5).access_key_id == "ASIANEW"


def test_late_requests_do_not_wait_again_for_a_slow_fetch() -> None:
    gate = Gate(credentials())
    refresher = server.Refresher(gate, initial=credentials(1200, key="ASIAOLD"))
    started = time.monotonic()
    assert refresher.credentials(wait=0.3).access_key_id == "ASIAOLD"
    assert 0.25 < time.monotonic() - started < 2
    started = time.monotonic()
    for _ in range(5):  # a prompt is open: answered at once, not 0.3 s each
        assert refresher.credentials(wait=0.3).access_key_id == "ASIAOLD"
    assert time.monotonic() - started < 0.2
    assert gate.calls == 1
    gate.release.set()


def test_a_previous_session_about_to_end_is_not_served() -> None:
    gate = Gate(credentials())
    refresher = server.Refresher(gate, initial=credentials(server.STALE_FLOOR - 5))
    with pytest.raises(server.Unavailable) as caught:
        refresher.credentials(wait=0.05)
    assert caught.value.code == "SessionPending"
    gate.release.set()


def test_a_failure_pauses_the_next_try_and_the_pause_grows() -> None:
    clock = Clock()
    fails = Gate(CodeError("no way to get an MFA code", hint="pass --token-code"))
    fails.release.set()
    refresher = server.Refresher(fails, clock=clock)
    for expected_calls in (1, 1, 1):
        with pytest.raises(server.Unavailable) as caught:
            refresher.credentials(wait=5)
        assert fails.calls == expected_calls  # no new try inside the pause
    assert caught.value.message == "no way to get an MFA code (hint: pass --token-code)"
    assert caught.value.retry_after == pytest.approx(server.FIRST_BACKOFF)
    clock.now += server.FIRST_BACKOFF + 0.1
    with pytest.raises(server.Unavailable) as caught:
        refresher.credentials(wait=5)
    assert fails.calls == 2
    assert caught.value.retry_after == pytest.approx(server.FIRST_BACKOFF * 2)
    fails.result = credentials()
    clock.now += server.FIRST_BACKOFF * 2 + 0.1
    assert refresher.credentials(wait=5) is fails.result
    assert fails.calls == 3


def test_an_unexpected_error_is_named_not_quoted() -> None:
    leaky = Gate(RuntimeError("AKIA... wJalrXUtnFEMI/K7MDENG"))
    leaky.release.set()
    with pytest.raises(server.Unavailable) as caught:
        server.Refresher(leaky).credentials(wait=5)
    assert caught.value.message == "unexpected RuntimeError in mfa-session"


# --------------------------------------------------------------------------- the endpoint


def test_answers_and_refusals(serve: Callable[..., server.CredentialServer]) -> None:
    session = credentials()
    ready = Gate(session)
    ready.release.set()
    endpoint = serve(server.Refresher(ready))
    status, document, headers = get(endpoint)
    assert status == 200
    assert document == {
        "AccessKeyId": "ASIATEST",
        "SecretAccessKey": "secret/key+value",
        "Token": "session-token",
        "Expiration": session.expiration_iso,
    }
    assert headers["Cache-Control"] == "no-store"
    assert get(endpoint, token="wrong")[0] == 403
    assert get(endpoint, token=" " + endpoint.token + " ")[0] == 200
    assert get(endpoint, host="attacker.example")[1]["Code"] == "InvalidHost"
    assert get(endpoint, host=f"localhost:{endpoint.port}")[0] == 200
    assert get(endpoint, Origin="null")[1]["Code"] == "BrowserRequest"
    assert endpoint.counts["InvalidToken"] == 1
    assert endpoint.counts["InvalidHost"] == 1
    assert endpoint.counts["served"] == 3


def test_each_server_has_its_own_long_random_token(
    serve: Callable[..., server.CredentialServer],
) -> None:
    ready = Gate(credentials())
    first, second = serve(server.Refresher(ready)), serve(server.Refresher(ready))
    assert first.token != second.token
    assert len(first.token) >= 40
    assert first.client_variables() == {
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"http://127.0.0.1:{first.port}/",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": first.token,
    }


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1:8080", True),
        ("127.0.0.1", True),
        ("localhost:1", True),
        ("LOCALHOST", True),
        ("[::1]:8080", True),
        ("169.254.170.2", True),
        ("[fd00:ec2::23]:80", True),
        ("evil.example:8080", False),
        ("localhost.evil.example", False),
        ("127.0.0.1.nip.io:80", False),
        ("[::1", False),
        ("", False),
    ],
)
def test_host_header_must_name_an_address_or_localhost(host: str, local: bool) -> None:
    assert server._is_local_name(host) is local


def test_ipv6_loopback(serve: Callable[..., server.CredentialServer]) -> None:
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    ready = Gate(credentials())
    ready.release.set()
    endpoint = serve(server.Refresher(ready), address=server.listen_address("::1", False))
    assert endpoint.url == f"http://[::1]:{endpoint.port}/"
    assert get(endpoint, host=f"[::1]:{endpoint.port}")[0] == 200


# --------------------------------------------------------------------------- addresses


def test_listen_addresses() -> None:
    assert server.listen_address(None, False).host == "127.0.0.1"
    assert server.listen_address("localhost", False).host == "127.0.0.1"
    assert server.listen_address("127.0.0.2", False).client_host == "127.0.0.2"
    assert server.listen_address("[::1]", False).client_host == "[::1]"
    anywhere = server.listen_address("0.0.0.0", True)
    assert (anywhere.host, anywhere.client_host, anywhere.is_loopback) == (
        "0.0.0.0",
        "127.0.0.1",
        False,
    )
    assert server.listen_address("::", True).client_host == "[::1]"
    assert server.listen_address("169.254.170.2", True).client_host == "169.254.170.2"


@pytest.mark.parametrize("text", ["0.0.0.0", "::", "192.0.2.10", "169.254.170.2"])
def test_beyond_loopback_needs_the_flag(text: str) -> None:
    with pytest.raises(UsageError, match="not a loopback address") as caught:
        server.listen_address(text, False)
    assert caught.value.hint is not None and "--allow-non-loopback" in caught.value.hint


@pytest.mark.parametrize("text", ["example.com", "127.0.0.1:80", "", "300.1.1.1"])
def test_listen_wants_an_ip_address(text: str) -> None:
    with pytest.raises(UsageError, match="wants an IP address"):
        server.listen_address(text, True)


# --------------------------------------------------------------------------- formats


def test_the_variables_in_every_export_format() -> None:
    variables = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:1/", "T": "a'b"}
    unset = ["AWS_PROFILE", "AWS_ACCESS_KEY_ID"]
    assert exports.render_variables("sh", variables, unset) == (
        "unset AWS_PROFILE AWS_ACCESS_KEY_ID\n"
        "export AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:1/\n"
        "export T='a'\"'\"'b'\n"
    )
    assert exports.render_variables("fish", variables, unset) == (
        "set -e AWS_PROFILE\nset -e AWS_ACCESS_KEY_ID\n"
        "set -gx AWS_CONTAINER_CREDENTIALS_FULL_URI 'http://127.0.0.1:1/'\n"
        "set -gx T 'a\\'b'\n"
    )
    assert exports.render_variables("powershell", variables, unset) == (
        "Remove-Item Env:AWS_PROFILE -ErrorAction SilentlyContinue\n"
        "Remove-Item Env:AWS_ACCESS_KEY_ID -ErrorAction SilentlyContinue\n"
        "$env:AWS_CONTAINER_CREDENTIALS_FULL_URI = 'http://127.0.0.1:1/'\n"
        "$env:T = 'a''b'\n"
    )
    assert json.loads(exports.render_variables("json", variables, unset)) == variables
    assert exports.render_variables("dotenv", variables, unset) == (
        "AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:1/\nT=a'b\n"
    )


# --------------------------------------------------------------------------- the device lock


def test_the_device_lock_also_serialises_threads_of_one_process(tmp_path: object) -> None:
    """The server's fetches and any other thread share one process: the per-device lock
    (filelock's flock, one open file per DeviceLock) must still let one in at a time."""
    cache = SessionCache(str(tmp_path))
    inside = 0
    most = 0
    guard = threading.Lock()

    def hold() -> None:
        nonlocal inside, most
        with DeviceLock(cache.folder, "arn:aws:iam::123456789012:mfa/alice", lambda _: None):
            with guard:
                inside += 1
                most = max(most, inside)
            time.sleep(0.05)
            with guard:
                inside -= 1

    threads = [threading.Thread(target=hold) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most == 1
