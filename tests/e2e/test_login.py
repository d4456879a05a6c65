"""`login` through the installed command against the emulator's STS and federation
endpoint: MFA kept by roles, GetFederationToken only when asked, the URL a secret."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import AwsHome, Result
from tests.e2e.test_credential_process import assert_clean_error, assert_process_json
from tests.sts_emulator import Role

ADMIN_ACCOUNT = "210987654321"
CONSOLE_HOME = "https://console.aws.amazon.com/console/home?region=eu-west-1"


@pytest.fixture
def signin(aws: AwsHome) -> AwsHome:
    """alice's world with the federation endpoint pointed at the emulator."""
    aws.env["MFA_SESSION_SIGNIN_URL"] = aws.emulator.url + "/federation"
    return aws


@pytest.fixture
def admin(aws: AwsHome) -> Role:
    return aws.emulator.add_role(
        account=ADMIN_ACCOUNT, name="Admin", require_mfa=True, max_session_duration=7200
    )


@pytest.fixture
def browser(tmp_path_factory: pytest.TempPathFactory, signin: AwsHome) -> Path:
    """A fake browser that records its command line; $BROWSER points at it."""
    folder = tmp_path_factory.mktemp("browser")  # outside HOME: it holds the URL
    log = folder / "argv"
    script = folder / "fake-browser"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > '{log}'\n")
    script.chmod(0o700)
    signin.env["BROWSER"] = str(script)
    return log


def url_parts(url: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    query = {key: values[0] for key, values in parse_qs(parts.query, strict_parsing=True).items()}
    return f"{parts.scheme}://{parts.netloc}{parts.path}", query


def only_token(aws: AwsHome) -> str:
    (issued,) = aws.emulator.signin_tokens()
    return issued.token


def assert_url_signs_in(aws: AwsHome, url: str, destination: str = CONSOLE_HOME) -> None:
    """The URL is a well-formed Action=login that the endpoint accepts, landing on destination."""
    endpoint, query = url_parts(url)
    assert endpoint == aws.emulator.url + "/federation"
    assert query == {
        "Action": "login",
        "Issuer": "mfa-session",
        "Destination": destination,
        "SigninToken": aws.emulator.signin_tokens()[-1].token,
    }
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=10)
    try:
        connection.request("GET", f"{parts.path}?{parts.query}")
        response = connection.getresponse()
        response.read()
        assert (response.status, response.getheader("Location")) == (302, destination)
    finally:
        connection.close()


def assert_secrets_kept(aws: AwsHome, *outputs: str) -> None:
    """No long-term secret, session secret or sign-in token in these outputs or under HOME."""
    secrets = [aws.user.secret_access_key, aws.device.seed]
    for session in aws.emulator.sessions():
        secrets += [session.secret_access_key, session.session_token]
    for output in outputs:
        for secret in secrets:
            assert secret not in output
    for issued in aws.emulator.signin_tokens():
        for output in outputs:
            assert issued.token not in output
        assert aws.files_holding(issued.token) == []
    for session in aws.emulator.sessions():
        if session.federated_name is not None:  # never cached
            assert aws.files_holding(session.session_token) == []


def login(aws: AwsHome, *args: str) -> Result:
    return aws.run("login", *args)


NO_MFA_NOTE = "mfa-session: signing in as the IAM user of profile 'alice' with GetFederationToken"


def assert_clean_failure(result: Result, *fragments: str) -> None:
    """assert_clean_error, after the note that --without-mfa prints before it acts."""
    note, _, rest = result.stderr.partition("\n")
    assert note.startswith(NO_MFA_NOTE), result.stderr
    assert_clean_error(Result(result.returncode, result.stdout, rest), *fragments)


# --------------------------------------------------------------------------- roles keep MFA


def test_role_on_the_cached_mfa_session_needs_no_second_code(
    signin: AwsHome, admin: Role, browser: Path
) -> None:
    aws = signin
    assert_process_json(
        aws.run("credential-process", "--profile", "alice", "--token-code", aws.code())
    )
    opened = login(aws, "--profile", "alice", "--role-arn", admin.arn)
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.startswith(
        f"opened the AWS console as role {admin.arn} (MFA); the console session lasts "
    )
    url = browser.read_text().strip()
    assert_url_signs_in(aws, url)
    # The role came from the MFA session: one GetSessionToken in all, no code in AssumeRole.
    assert len(aws.gst_calls()) == 1
    (assume,) = aws.emulator.calls("AssumeRole")
    assert (assume.serial, assume.duration) == (None, 3600)
    assert assume.access_key_id == aws.emulator.sessions()[0].access_key_id
    (exchange,) = aws.emulator.calls("getSigninToken")
    assert (exchange.access_key_id, exchange.duration, exchange.outcome) == (
        aws.emulator.sessions()[1].access_key_id,
        None,  # AWS refuses SessionDuration for a chained role session
        "ok",
    )
    assert aws.emulator.sessions()[1].mfa_authenticated
    assert_secrets_kept(aws, opened.stdout, opened.stderr)

    # Again: the cached role session serves, only a new sign-in token is needed.
    again = login(aws, "--profile", "alice", "--role-arn", admin.arn, "--print")
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("\n") == 1
    assert_url_signs_in(aws, again.stdout.strip())
    assert "open it within 15 minutes" in again.stderr
    assert (len(aws.gst_calls()), len(aws.emulator.calls("AssumeRole"))) == (1, 1)
    assert len(aws.emulator.calls("getSigninToken")) == 2


def test_longer_than_an_hour_assumes_the_role_directly_with_one_fresh_code(
    signin: AwsHome, admin: Role
) -> None:
    aws = signin
    aws.add_config(
        f"\n[profile admin]\nrole_arn = {admin.arn}\nsource_profile = alice\n"
        f"mfa_serial = {aws.device.serial}\n"
    )
    result = login(
        aws, "--profile", "admin", "--duration", "7200", "--print", "--token-code", aws.code()
    )
    assert result.returncode == 0, result.stderr
    assert "caps role chaining at 1 hour" in result.stderr
    assert "the console session lasts 1h59m" in result.stderr
    assert aws.gst_calls() == []
    (assume,) = aws.emulator.calls("AssumeRole")
    assert (assume.serial, assume.duration, assume.access_key_id) == (
        aws.device.serial,
        7200,
        aws.user.access_key_id,
    )
    (exchange,) = aws.emulator.calls("getSigninToken")
    assert exchange.duration is not None and 7100 < exchange.duration <= 7200
    assert aws.emulator.signin_tokens()[0].console_seconds == exchange.duration
    assert_url_signs_in(aws, result.stdout.strip())
    assert_secrets_kept(aws, result.stderr)  # stdout holds the URL, as --print asks


def test_the_long_path_never_reuses_the_code_of_the_mfa_session(
    signin: AwsHome, admin: Role
) -> None:
    """A role profile whose MFA session was made with this code: the direct AssumeRole
    refuses that code before any call, and takes the next one."""
    aws = signin
    aws.add_config(
        f"\n[profile admin]\nrole_arn = {admin.arn}\nsource_profile = alice\n"
        f"mfa_serial = {aws.device.serial}\n"
    )
    spent, following = aws.code(), aws.code(1)
    assert_process_json(aws.run("credential-process", "--profile", "alice", "--token-code", spent))
    refused = login(
        aws, "--profile", "admin", "--duration", "7200", "--print", "--token-code", spent
    )
    note, _, rest = refused.stderr.partition("\n")
    assert "caps role chaining at 1 hour" in note
    assert_clean_error(Result(refused.returncode, refused.stdout, rest), "already used")
    assert aws.emulator.calls("AssumeRole") == []
    result = login(
        aws, "--profile", "admin", "--duration", "7200", "--print", "--token-code", following
    )
    assert result.returncode == 0, result.stderr
    (assume,) = aws.emulator.calls("AssumeRole")
    assert (assume.serial, assume.outcome) == (aws.device.serial, "ok")
    assert len(aws.gst_calls()) == 1


def test_a_role_profile_signs_in_on_the_cached_mfa_session(signin: AwsHome, admin: Role) -> None:
    aws = signin
    aws.add_config(f"\n[profile admin]\nrole_arn = {admin.arn}\nsource_profile = alice\n")
    assert_process_json(
        aws.run("credential-process", "--profile", "alice", "--token-code", aws.code())
    )
    result = login(aws, "--profile", "admin", "--print")
    assert result.returncode == 0, result.stderr
    assert_url_signs_in(aws, result.stdout.strip())
    assert len(aws.gst_calls()) == 1
    (assume,) = aws.emulator.calls("AssumeRole")
    assert (assume.serial, assume.access_key_id) == (None, aws.emulator.sessions()[0].access_key_id)


# --------------------------------------------------------------------------- IAM user


def test_plain_user_is_told_and_refused_without_the_flag(signin: AwsHome) -> None:
    result = login(signin, "--profile", "alice")
    assert_clean_error(result, "GetFederationToken", "no MFA", "--without-mfa", "--role-arn")
    assert signin.emulator.calls() == []  # nothing was done


def test_plain_user_with_the_flag_signs_in_without_mfa(signin: AwsHome, browser: Path) -> None:
    aws = signin
    result = login(aws, "--profile", "dev", "--without-mfa", "--destination", "s3")
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(f"{NO_MFA_NOTE}: the console session has no MFA")
    assert "as federated user alice (no MFA)" in result.stdout
    s3 = "https://console.aws.amazon.com/s3/home?region=eu-west-1"
    assert_url_signs_in(aws, browser.read_text().strip(), destination=s3)
    (federation,) = aws.emulator.calls("GetFederationToken")
    assert (federation.access_key_id, federation.duration) == (aws.user.access_key_id, 3600)
    session = aws.emulator.sessions()[-1]
    assert (session.federated_name, session.mfa_authenticated) == ("alice", False)
    # A session policy that allows all: the session gets the user's own permissions.
    assert '"Action":"*"' in str(aws.emulator.federation_policy(session.access_key_id))
    assert aws.gst_calls() == []
    assert aws.emulator.signin_tokens()[0].kind == "federation"
    assert_secrets_kept(aws, result.stdout, result.stderr)


# --------------------------------------------------------------------------- partitions


class _RecordingProxy(BaseHTTPRequestHandler):
    """An HTTPS proxy that notes where CONNECT wanted to go, then refuses: no network."""

    targets: list[str]

    def do_CONNECT(self) -> None:
        self.targets.append(self.path)
        self.send_error(502)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def proxy() -> Iterator[tuple[str, list[str]]]:
    targets: list[str] = []
    handler = type("Proxy", (_RecordingProxy,), {"targets": targets})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", targets
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize(
    ("region", "host"),
    [
        ("eu-west-1", "signin.aws.amazon.com"),
        ("cn-north-1", "signin.amazonaws.cn"),
        ("us-gov-west-1", "signin.amazonaws-us-gov.com"),
    ],
)
def test_the_region_picks_the_partitions_endpoint_through_the_proxy(
    aws: AwsHome, proxy: tuple[str, list[str]], region: str, host: str
) -> None:
    proxy_url, targets = proxy
    aws.write_config(f"[profile alice]\nmfa_serial = {aws.device.serial}\nregion = {region}\n")
    result = aws.run("login", "--profile", "alice", "--without-mfa", env={"HTTPS_PROXY": proxy_url})
    assert_clean_failure(
        result,
        f"cannot reach the AWS sign-in endpoint at https://{host}/federation through the proxy",
    )
    assert targets == [f"{host}:443"]
    assert_secrets_kept(aws, result.stderr)


def test_console_destination_follows_the_partition(signin: AwsHome) -> None:
    aws = signin
    aws.write_config(f"[profile alice]\nmfa_serial = {aws.device.serial}\nregion = cn-north-1\n")
    wanted = "https://cn-north-1.console.amazonaws.cn/ec2/home?region=cn-north-1#Instances:"
    result = login(aws, "--profile", "alice", "--without-mfa", "--print", "--destination", wanted)
    assert result.returncode == 0, result.stderr
    assert_url_signs_in(aws, result.stdout.strip(), destination=wanted)
    wrong = login(
        aws,
        "--profile",
        "alice",
        "--without-mfa",
        "--destination",
        "https://console.aws.amazon.com/s3/",
    )
    assert wrong.returncode == 2, wrong.stderr
    assert (
        "mfa-session: error: --destination must be a console URL of partition aws-cn"
        in wrong.stderr
    )
    assert len(aws.emulator.calls("GetFederationToken")) == 1  # refused before any call


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (400, "Invalid credentials parameter", "refused the session's credentials (HTTP 400)"),
        (500, "Internal failure", "failed (HTTP 500)"),
        (200, '{"SigninTok', "sent an answer that cannot be read"),
    ],
)
def test_endpoint_errors_are_one_clean_line(
    signin: AwsHome, status: int, body: str, message: str
) -> None:
    signin.emulator.fail_next("getSigninToken", "Injected", body, status)
    result = login(signin, "--profile", "alice", "--without-mfa", "--print")
    assert_clean_failure(
        result, f"the AWS sign-in endpoint at {signin.emulator.url}/federation {message}"
    )
    assert body not in result.stderr.split("\n", 1)[-1]
    assert_secrets_kept(signin, result.stderr)


def test_a_sign_in_token_that_trickles_in_is_given_up_in_time(signin: AwsHome) -> None:
    """urllib's timeout bounds each read; the whole exchange has its own deadline."""
    signin.emulator.sabotage_next("getSigninToken", "drip")
    started = time.monotonic()
    result = login(signin, "--profile", "alice", "--without-mfa", "--print")
    assert time.monotonic() - started < 10 + 5  # signin.TIMEOUT, and the rest of the login
    assert_clean_failure(
        result, f"the AWS sign-in endpoint at {signin.emulator.url}/federation did not answer"
    )
    assert result.stdout == ""
    assert_secrets_kept(signin, result.stderr)


def test_a_browser_that_cannot_start_fails_without_showing_the_url(
    signin: AwsHome, tmp_path: Path
) -> None:
    failing = tmp_path / "failing-browser"
    # Like xdg-open falling through to lynx: the launcher quotes the URL as it fails.
    failing.write_text('#!/bin/sh\necho "cannot open $1"\necho "cannot open $1" >&2\nexit 3\n')
    failing.chmod(0o700)
    for command in ("/nonexistent/browser", str(failing)):
        result = signin.run(
            "login", "--profile", "alice", "--without-mfa", env={"BROWSER": command}
        )
        assert_clean_failure(result, f"the web browser ({command}) could not be started", "--print")
        assert "federation" not in result.stderr and "http" not in result.stderr
        assert_secrets_kept(signin, result.stdout, result.stderr)


def test_debug_output_holds_no_secret(signin: AwsHome, admin: Role) -> None:
    aws = signin
    result = aws.run(
        "--debug",
        "login",
        "--profile",
        "alice",
        "--role-arn",
        admin.arn,
        "--print",
        "--token-code",
        aws.code(),
    )
    assert result.returncode == 0, result.stderr
    assert "mfa-session: debug: getSigninToken at " in result.stderr
    assert "SigninToken=" not in result.stderr and "Action=login" not in result.stderr
    assert_secrets_kept(aws, result.stderr)


def test_debug_output_of_a_failure_without_mfa_holds_no_secret(
    signin: AwsHome, tmp_path: Path
) -> None:
    """The federation path, failing late (the browser), with --debug's traceback."""
    failing = tmp_path / "failing-browser"
    failing.write_text('#!/bin/sh\necho "cannot open $1" >&2\nexit 3\n')
    failing.chmod(0o700)
    result = signin.run(
        "--debug", "login", "--profile", "alice", "--without-mfa", env={"BROWSER": str(failing)}
    )
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "getSigninToken at " in result.stderr
    assert "SigninToken=" not in result.stderr and "Action=login" not in result.stderr
    assert_secrets_kept(signin, result.stdout, result.stderr)


@pytest.mark.parametrize(
    ("args", "env", "status", "fragment"),
    [
        (["--without-mfa", "--duration", "soon"], {}, 1, "--duration must be a number of seconds"),
        (
            ["--without-mfa", "--destination", "http://console.aws.amazon.com/"],
            {},
            2,
            "--destination must be",
        ),
        (["--without-mfa", "--token-code", "123456"], {}, 2, "--token-code apply to a role"),
        (
            ["--role-arn", "arn:aws:iam::210987654321:role/Admin", "--without-mfa"],
            {},
            2,
            "--without-mfa is for a profile without a role",
        ),
        (
            ["--without-mfa"],
            {"MFA_SESSION_SIGNIN_URL": "http://example.com/federation"},
            1,
            "MFA_SESSION_SIGNIN_URL must be an https:// URL",
        ),
        (["--without-mfa", "--min-remaining", "-1"], {}, 2, "--min-remaining must not be negative"),
    ],
)
def test_bad_input_fails_before_any_call(
    signin: AwsHome, args: list[str], env: dict[str, str], status: int, fragment: str
) -> None:
    result = signin.run("login", "--profile", "alice", *args, env=env)
    assert result.returncode == status, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("mfa-session: error: ") and fragment in lines[0], result.stderr
    assert all(line.startswith(("mfa-session:", "hint:")) for line in lines)
    assert result.stdout == ""
    assert signin.emulator.calls() == []
