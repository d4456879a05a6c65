"""`exec --server` and `serve` end to end: the installed command, real SDK consumers
(boto3, the AWS CLI, the AWS SDK for JavaScript v3) in a child and against `serve`,
the strict STS emulator with sessions the server renews while the test runs, and a real pty."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import filelock
import pexpect
import pytest

from mfa_session.server import STALE_FLOOR
from mfa_session.sts import MIN_SESSION_SECONDS
from tests.conftest import AWS_CLI, MFA_SESSION, AwsHome
from tests.e2e.test_credential_process import assert_clean_error, assert_no_secrets
from tests.sts_emulator import Call

JS_DIR = Path(__file__).resolve().parent.parent / "js"
JS_CLIENT = str(JS_DIR / "container_client.mjs")
PRINT_ENV = [sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"]
FULL_URI = "AWS_CONTAINER_CREDENTIALS_FULL_URI"
TOKEN = "AWS_CONTAINER_AUTHORIZATION_TOKEN"

# Sessions of a little over a minute: STS answers ending within 60 s are refused as a
# clock or proxy problem (sts.MIN_SESSION_SECONDS), and AWS's own minimum is 900 s. Served
# with --min-remaining RENEW_AT, the server renews such a session once it has RENEW_AT s or
# less left: the emulator counts from the whole second and seconds_left() rounds down, so
# a session of LIFETIME is handed out for 4-5 s, then the next request gets a new one.
# RENEW_AT is no more than server.STALE_FLOOR, so the session being renewed is never the
# fallback: what the tests see is the renewal itself, not the previous keys.
LIFETIME = 66
RENEW_AT = 60
assert LIFETIME - 2 > MIN_SESSION_SECONDS and RENEW_AT <= STALE_FLOOR
ROTATION_DEADLINE = 30  # seconds; a rotation is due within LIFETIME - RENEW_AT

# boto3 in a long-running process: one session and client, calls until the endpoint has
# handed it new keys (the server renews the session under it), then prints what it used;
# its last call is made with the new keys.
BOTO3_ACROSS_RENEWAL = textwrap.dedent(
    f"""
    import json, time
    import boto3

    session = boto3.Session()
    client = session.client("sts")
    keys, calls = [], 0
    deadline = time.time() + {ROTATION_DEADLINE}
    while len(set(keys)) < 2:
        assert time.time() < deadline, "the keys were never renewed"
        keys.append(session.get_credentials().get_frozen_credentials().access_key)
        client.get_caller_identity()
        calls += 1
        time.sleep(0.2)
    print(json.dumps({{"keys": sorted(set(keys)), "calls": calls}}))
    """
)
BOTO3_CHILD = [sys.executable, "-c", BOTO3_ACROSS_RENEWAL]


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="session")
def node() -> str:
    """node with tests/js's locked packages installed; a machine without node fails here."""
    executable = shutil.which("node")
    npm = shutil.which("npm")
    if executable is None or npm is None:
        pytest.fail("node and npm are needed for the JavaScript SDK tests (install Node.js 20+)")
    lock = filelock.FileLock(str(Path(tempfile.gettempdir()) / "mfa-session-npm-ci.lock"))
    with lock:  # xdist workers share tests/js
        if not (JS_DIR / "node_modules" / "@aws-sdk" / "client-sts").is_dir():
            completed = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=JS_DIR,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if completed.returncode != 0:
                pytest.fail(f"npm ci in {JS_DIR} failed:\n{completed.stderr[-2000:]}")
    return executable


def js(node: str, *args: str) -> list[str]:
    return [node, JS_CLIENT, *args]


@pytest.fixture
def role(aws: AwsHome) -> str:
    return aws.emulator.add_role(name="Deploy").arn


def counting_mfa_process(aws: AwsHome) -> Path:
    """mfa_process for alice that prints the code of the next TOTP step each time it runs,
    so a second session within 30 s needs no wait; returns the file counting its runs."""
    counter = aws.root / "mfa-process-runs"
    script = aws.root / "next_code.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import pathlib, sys, time
            import pyotp
            counter = pathlib.Path({str(counter)!r})
            runs = int(counter.read_text()) if counter.exists() else 0
            counter.write_text(str(runs + 1))
            print(pyotp.TOTP({aws.device.seed!r}).at(time.time() + 30 * runs))
            """
        )
    )
    aws.write_config(
        f"[profile alice]\nmfa_serial = {aws.device.serial}\nregion = eu-west-1\n"
        f"mfa_process = {sys.executable} {script}\n"
    )
    return counter


def runs(counter: Path) -> int:
    return int(counter.read_text()) if counter.exists() else 0


def request(
    url: str,
    token: str | None,
    *,
    host: str | None = None,
    method: str = "GET",
    path: str | None = None,
    origin: str | None = None,
) -> tuple[int, dict[str, object], dict[str, str]]:
    """One raw HTTP request with exactly the headers given; status, JSON body, headers."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        connection.putrequest(method, path or parts.path, skip_host=True)
        connection.putheader("Host", host if host is not None else parts.netloc)
        if token is not None:
            connection.putheader("Authorization", token)
        if origin is not None:
            connection.putheader("Origin", origin)
        connection.endheaders()
        answer = connection.getresponse()
        body = answer.read()
        return answer.status, json.loads(body) if body else {}, dict(answer.getheaders())
    finally:
        connection.close()


@dataclass
class Served:
    process: subprocess.Popen[str]
    variables: dict[str, str]
    stderr_path: Path

    @property
    def url(self) -> str:
        return self.variables[FULL_URI]

    @property
    def token(self) -> str:
        return self.variables[TOKEN]

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def env(self) -> dict[str, str]:
        return dict(self.variables)


@contextlib.contextmanager
def serving(aws: AwsHome, *args: str, debug: bool = False) -> Iterator[Served]:
    """`mfa-session serve --format json ARGS` in the background until the block ends (then
    Ctrl-C, which must stop it with status 0)."""
    stderr_path = aws.root / f"serve-{time.monotonic_ns()}.stderr"
    argv = [MFA_SESSION, *(["--debug"] if debug else []), "serve", "--format", "json", *args]
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            argv,
            env=aws.env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=aws.root,
            start_new_session=True,
        )
    try:
        assert process.stdout is not None
        text = ""
        while True:
            line = process.stdout.readline()
            assert line, f"serve ended early: {stderr_path.read_text()}"
            text += line
            with contextlib.suppress(ValueError):
                variables = json.loads(text)
                break
        served = Served(process, variables, stderr_path)
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        status = process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()
    assert status == 0, stderr_path.read_text()
    assert stderr_path.read_text().rstrip().endswith("mfa-session: stopped")
    assert served.token not in stderr_path.read_text()


def sdk_env(served: Served, **extra: str) -> dict[str, str]:
    return {**served.env(), "NODE_NO_WARNINGS": "1", **extra}


def sdk_identity_calls(aws: AwsHome) -> list[Call]:
    """GetCallerIdentity calls signed with role keys: the SDKs' (mfa-session's own call,
    for the role session's name, is signed with the MFA session's keys)."""
    role_keys = {s.access_key_id for s in aws.emulator.sessions() if s.role is not None}
    return [c for c in aws.emulator.calls("GetCallerIdentity") if c.access_key_id in role_keys]


def assert_used_keys_across_a_renewal(aws: AwsHome, identity_calls: list[Call]) -> None:
    """The SDK's last call was signed with newer keys than its first, after the server had
    stopped handing out the first (their session down to RENEW_AT s left)."""
    sessions = {s.access_key_id: s for s in aws.emulator.sessions()}
    first, last = identity_calls[0], identity_calls[-1]
    assert last.access_key_id != first.access_key_id
    renewal_point = sessions[first.access_key_id].expires_at - (RENEW_AT + 1)
    assert last.time > renewal_point


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def assert_port_closed(url: str) -> None:
    parts = urlsplit(url)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((parts.hostname, parts.port), timeout=5).close()


# --------------------------------------------------------------------------- exec --server


def test_exec_server_gives_the_child_an_endpoint_instead_of_keys(aws: AwsHome) -> None:
    stale = {
        "AWS_PROFILE": "alice",
        "AWS_ACCESS_KEY_ID": "AKIASTALE",
        "AWS_SECRET_ACCESS_KEY": "stale",
        "AWS_SESSION_TOKEN": "stale",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:1/stale",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": "/nonexistent/token",
        "MFA_SESSION_EXPIRATION": "1",
    }
    code = aws.code()
    result = aws.run(
        "exec", "--server", "--profile", "alice", "--token-code", code, "--", *PRINT_ENV, env=stale
    )
    assert result.returncode == 0, result.stderr
    child = json.loads(result.stdout)
    url = urlsplit(child[FULL_URI])
    assert (url.scheme, url.hostname, url.path) == ("http", "127.0.0.1", "/")
    assert len(child[TOKEN]) >= 40
    for name in stale.keys() - {FULL_URI, "MFA_SESSION_EXPIRATION"}:
        assert name not in child
    assert "MFA_SESSION_EXPIRATION" not in child
    assert child["AWS_REGION"] == child["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert child["MFA_SESSION_PROFILE"] == "alice"
    assert child[TOKEN] not in result.stderr
    assert_no_secrets(aws, result.stderr, codes=(code,))
    assert_port_closed(child[FULL_URI])  # the server ended with the child


CREDENTIAL_METHOD = (
    "import boto3; session = boto3.Session(); print(session.get_credentials().method); "
    "print(session.client('sts').get_caller_identity()['Arn'])"
)


def test_a_default_profile_with_keys_does_not_win_over_the_endpoint(aws: AwsHome) -> None:
    """SDKs read the credentials file before the endpoint, and the child has no AWS_PROFILE:
    [default]'s long-term keys would be used without MFA. The child gets no credentials
    file instead."""
    with aws.credentials.open("a") as handle:
        handle.write(
            f"\n[default]\naws_access_key_id = {aws.user.access_key_id}\n"
            f"aws_secret_access_key = {aws.user.secret_access_key}\n"
        )
    code = aws.code()
    # In the child, SDKs see no credentials file, but mfa-session itself (here through
    # dev's credential_process) still finds alice's keys.
    nested = f"{AWS_CLI} sts get-caller-identity --profile dev --query Arn --output text"
    result = aws.run(
        "exec", "--server", "--profile", "alice", "--token-code", code, "--",
        "sh", "-c", f'{sys.executable} -c "{CREDENTIAL_METHOD}" && {nested}',
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "container-role"
    assert result.stdout.split()[-1] == aws.user.arn
    sdk_call = aws.emulator.calls("GetCallerIdentity")[-1]
    assert sdk_call.access_key_id != aws.user.access_key_id  # the MFA session's keys
    assert "warning" not in result.stderr
    with serving(aws, "--profile", "alice") as srv:
        assert srv.variables["AWS_SHARED_CREDENTIALS_FILE"] == os.devnull
        via_serve = aws.run_command([sys.executable, "-c", CREDENTIAL_METHOD], env=srv.env())
    assert via_serve.stdout.split()[0] == "container-role", via_serve.stderr


def test_a_default_profile_in_the_config_file_is_named_in_a_warning(aws: AwsHome) -> None:
    """The config file cannot be hidden (the child needs its region, endpoints...): a source
    of credentials in its default profile is said, once, before the command runs."""
    aws.add_config("\n[default]\ncredential_process = /bin/false\n")
    result = aws.run(
        "exec", "--server", "--profile", "alice", "--token-code", aws.code(), "--", "true"
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("warning") == 1
    assert (
        f"mfa-session: warning: profile 'default' in {aws.config} has credential_process: SDKs "
        "without a profile use it before the credential server"
    ) in result.stderr


def test_a_cached_session_near_botocores_refresh_window_is_renewed_before_serving(
    aws: AwsHome, role: str
) -> None:
    """By default the server hands out more than 20 minutes, past botocore's 15-minute
    refresh window: a cached role session with 16 minutes left is renewed, not served."""
    aws.emulator.cap_lifetime("AssumeRole", 16 * 60)
    near_its_end = aws.run(
        "credential-process", "--profile", "alice", "--role-arn", role, "--token-code", aws.code()
    )
    assert near_its_end.returncode == 0, near_its_end.stderr
    aws.emulator.cap_lifetime("AssumeRole", 12 * 3600)  # as asked from now on
    with serving(aws, "--profile", "alice", "--role-arn", role) as srv:
        status, first, _ = request(srv.url, srv.token)
        _, second, _ = request(srv.url, srv.token)
    assert status == 200
    assert first["AccessKeyId"] != json.loads(near_its_end.stdout)["AccessKeyId"]
    expires = datetime.fromisoformat(str(first["Expiration"]).replace("Z", "+00:00"))
    assert (expires - datetime.now(timezone.utc)).total_seconds() > 20 * 60
    assert second["AccessKeyId"] == first["AccessKeyId"]
    assert len(aws.emulator.calls("AssumeRole")) == 2
    assert len(aws.gst_calls()) == 1


def test_serve_listens_on_loopback_only(aws: AwsHome) -> None:
    """The kernel's own table of listening sockets, not the URL we print."""
    aws.run("credential-process", "--profile", "alice", "--token-code", aws.code())
    with serving(aws, "--profile", "alice") as srv:
        port = urlsplit(srv.url).port
        listening = [
            line.split()[1]
            for table in ("/proc/net/tcp", "/proc/net/tcp6")
            for line in Path(table).read_text().splitlines()[1:]
            if line.split()[3] == "0A"  # LISTEN
        ]
        ours = [address for address in listening if int(address.split(":")[1], 16) == port]
    assert ours == ["0100007F:" + f"{port:04X}"]


def test_exec_server_serves_boto3_the_aws_cli_and_javascript_in_the_child(
    aws: AwsHome, role: str, node: str
) -> None:
    boto3_call = (
        f"{sys.executable} -c 'import boto3; "
        'print(boto3.client("sts").get_caller_identity()["Arn"])\''
    )
    script = (
        f"{boto3_call} && {AWS_CLI} sts get-caller-identity --query Arn --output text && "
        f"{node} {JS_CLIENT} once"
    )
    result = aws.run(
        "exec",
        "--server",
        "--profile",
        "alice",
        "--role-arn",
        role,
        "--token-code",
        aws.code(),
        "--",
        "sh",
        "-c",
        script,
        env={"NODE_NO_WARNINGS": "1"},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assumed = "arn:aws:sts::123456789012:assumed-role/Deploy/alice"
    assert lines[:2] == [assumed, assumed]
    assert json.loads(lines[2])["arn"] == assumed
    assert len(aws.gst_calls()) == 1
    assert len(aws.emulator.calls("AssumeRole")) == 1
    assert [call.outcome for call in sdk_identity_calls(aws)] == ["ok"] * 3


def test_role_keys_renew_under_a_long_running_boto3_child(aws: AwsHome, role: str) -> None:
    aws.emulator.cap_lifetime("AssumeRole", LIFETIME)
    result = aws.run(
        "exec",
        "--server",
        "--profile",
        "alice",
        "--role-arn",
        role,
        "--min-remaining",
        str(RENEW_AT),
        "--token-code",
        aws.code(),
        "--",
        *BOTO3_CHILD,
    )
    assert result.returncode == 0, result.stderr
    used = json.loads(result.stdout)
    assert len(used["keys"]) >= 2
    identity_calls = sdk_identity_calls(aws)
    assert [call.outcome for call in identity_calls] == ["ok"] * used["calls"]
    assert_used_keys_across_a_renewal(aws, identity_calls)
    # One MFA session throughout; each new role session is one AssumeRole, however many
    # times boto3 asked the endpoint in between.
    assert len(aws.gst_calls()) == 1
    assert len(aws.emulator.calls("AssumeRole")) == len(aws.emulator.sessions()) - 1
    assert len(aws.emulator.calls("AssumeRole")) <= len(used["keys"]) + 1


def test_mfa_session_running_out_mid_run_gets_a_code_from_mfa_process(aws: AwsHome) -> None:
    counter = counting_mfa_process(aws)
    aws.emulator.cap_lifetime("GetSessionToken", LIFETIME)
    result = aws.run(
        "exec",
        "--server",
        "--profile",
        "alice",
        "--min-remaining",
        str(RENEW_AT),
        "--",
        *BOTO3_CHILD,
    )
    assert result.returncode == 0, result.stderr
    used = json.loads(result.stdout)
    assert len(used["keys"]) == 2
    assert [call.outcome for call in aws.gst_calls()] == ["ok", "ok"]
    assert runs(counter) == 2
    identity_calls = aws.emulator.calls("GetCallerIdentity")  # all boto3's: no role here
    assert [call.outcome for call in identity_calls] == ["ok"] * used["calls"]
    assert_used_keys_across_a_renewal(aws, identity_calls)
    assert_no_secrets(aws, result.stderr)


def test_mfa_session_running_out_mid_run_prompts_on_the_servers_terminal(aws: AwsHome) -> None:
    aws.emulator.cap_lifetime("GetSessionToken", LIFETIME)
    renewing = ["--min-remaining", str(RENEW_AT)]
    child = pexpect.spawn(
        MFA_SESSION,
        ["exec", "--server", "--profile", "alice", *renewing, "--", *BOTO3_CHILD],
        env=aws.env,
        cwd=str(aws.root),
        encoding="utf-8",
        timeout=60,
    )
    question = f"MFA code for {aws.device.serial} (profile alice): "
    child.expect_exact(question)
    child.sendline(aws.code())
    child.expect_exact(question)  # asked again, mid-run, when the MFA session runs out
    child.sendline(aws.code(1))
    child.expect(r"\{\"keys\": .*\}")
    used = json.loads(child.after)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    assert len(used["keys"]) == 2
    assert [call.outcome for call in aws.gst_calls()] == ["ok", "ok"]
    identity_calls = aws.emulator.calls("GetCallerIdentity")
    assert [call.outcome for call in identity_calls] == ["ok"] * used["calls"]
    assert_used_keys_across_a_renewal(aws, identity_calls)


def test_exit_status_of_the_child_is_passed_on(aws: AwsHome) -> None:
    result = aws.run(
        "exec", "--server", "--token-code", aws.code(), "--profile", "alice", "--", "sh", "-c",
        "exit 7",
    )  # fmt: skip
    assert result.returncode == 7, result.stderr


def test_missing_command_exits_127(aws: AwsHome) -> None:
    result = aws.run(
        "exec", "--server", "--profile", "alice", "--token-code", aws.code(), "--", "no-such-cmd"
    )
    assert result.returncode == 127
    assert result.stderr.strip() == "mfa-session: error: command not found: no-such-cmd"


def start_supervised(aws: AwsHome, script: str) -> tuple[subprocess.Popen[str], Path]:
    """exec --server with a Python child that writes 'ready' once its handlers are set."""
    ready = aws.root / f"ready-{time.monotonic_ns()}"
    python_child = [sys.executable, "-c", f"READY = {str(ready)!r}\n" + textwrap.dedent(script)]
    code = aws.code()
    aws.run("credential-process", "--profile", "alice", "--token-code", code)  # a warm cache
    process = subprocess.Popen(
        [MFA_SESSION, "exec", "--server", "--profile", "alice", "--", *python_child],
        env=aws.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while not ready.exists() or not ready.read_text():  # created, then written
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.02)
    return process, ready


SIGNAL_REPORTER = """
    import os, signal, sys, time
    def leave(signum, frame):
        print(signal.Signals(signum).name, flush=True)
        sys.exit(40 + signum)
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        signal.signal(getattr(signal, name), leave)
    open(READY, "w").write(str(os.getpid()))
    time.sleep(60)
"""


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT", "SIGHUP"])
def test_signals_sent_to_mfa_session_reach_the_child(aws: AwsHome, name: str) -> None:
    process, ready = start_supervised(aws, SIGNAL_REPORTER)
    assert int(ready.read_text()) != process.pid  # a child, not exec'd in place
    signum = getattr(signal, name)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 40 + signum, stderr
    assert stdout.strip() == name


@pytest.mark.parametrize("name", ["SIGTERM", "SIGKILL"])  # SIGKILL: the OOM killer's
def test_a_child_killed_by_a_signal_ends_mfa_session_the_same_way(aws: AwsHome, name: str) -> None:
    process, ready = start_supervised(
        aws, "import os, time\nopen(READY, 'w').write(str(os.getpid()))\ntime.sleep(60)\n"
    )
    os.kill(int(ready.read_text()), getattr(signal, name))
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == -getattr(signal, name), stderr
    assert "error" not in stderr


def test_ctrl_c_on_the_terminal_reaches_the_child_once(aws: AwsHome) -> None:
    assert aws.run("credential-process", "--profile", "alice", "--token-code", aws.code()).stdout
    script = textwrap.dedent(
        """
        import signal, sys, time
        seen = []
        signal.signal(signal.SIGINT, lambda *_: seen.append(1))
        print("ready", flush=True)
        while not seen:
            time.sleep(0.05)
        time.sleep(1)  # a second, forwarded SIGINT would arrive in this time
        print(f"interrupts={len(seen)}", flush=True)
        sys.exit(3)
        """
    )
    child = pexpect.spawn(
        MFA_SESSION,
        ["exec", "--server", "--profile", "alice", "--", sys.executable, "-c", script],
        env=aws.env,
        cwd=str(aws.root),
        encoding="utf-8",
        timeout=30,
    )
    child.expect_exact("ready")
    child.sendintr()
    child.expect_exact("interrupts=")
    child.expect(r"\d+")
    assert child.after == "1"
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 3


# --------------------------------------------------------------------------- serve


def test_serve_answers_boto3_the_aws_cli_and_javascript(aws: AwsHome, role: str, node: str) -> None:
    with serving(aws, "--profile", "alice", "--role-arn", role, "--token-code", aws.code()) as srv:
        assert set(srv.variables) == {FULL_URI, TOKEN, "AWS_REGION", "AWS_DEFAULT_REGION"}
        status, document, headers = request(srv.url, srv.token)
        assert status == 200
        assert set(document) == {"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}
        assert headers["Content-Type"] == "application/json"
        assert headers["Cache-Control"] == "no-store"
        # The same locked cache as credential-process: the CLI's helper sees this session.
        cached = aws.run("credential-process", "--profile", "alice", "--role-arn", role)
        assert json.loads(cached.stdout)["AccessKeyId"] == document["AccessKeyId"]
        cli = aws.run_command(
            [AWS_CLI, "sts", "get-caller-identity", "--query", "Arn", "--output", "text"],
            env=sdk_env(srv),
        )
        assert cli.returncode == 0, cli.stderr
        via_js = aws.run_command(js(node, "once"), env=sdk_env(srv))
        assert via_js.returncode == 0, via_js.stderr
        boto3 = aws.run_command(
            [
                sys.executable,
                "-c",
                "import boto3; print(boto3.client('sts').get_caller_identity())",
            ],
            env=sdk_env(srv),
        )
        assert boto3.returncode == 0, boto3.stderr
    assumed = "arn:aws:sts::123456789012:assumed-role/Deploy/alice"
    assert cli.stdout.strip() == assumed
    assert json_lines(via_js.stdout)[0] == {"arn": assumed, "key": document["AccessKeyId"]}
    assert assumed in boto3.stdout
    assert len(aws.gst_calls()) == 1
    assert len(aws.emulator.calls("AssumeRole")) == 1


@pytest.mark.parametrize("shell", ["bash", "fish"])
def test_serve_output_is_evaluated_by_the_shells(aws: AwsHome, shell: str) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    aws.run("credential-process", "--profile", "alice", "--token-code", aws.code())
    form = "sh" if shell == "bash" else "fish"
    process = subprocess.Popen(
        [MFA_SESSION, "serve", "--profile", "alice", "--format", form],
        env=aws.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    text = ""
    while "AWS_DEFAULT_REGION" not in text:
        line = process.stdout.readline()
        assert line, process.communicate()
        text += line
    # Variables that would win over the endpoint in the SDKs' chain are removed.
    stale = {
        "AWS_PROFILE": "nobody",
        "AWS_ACCESS_KEY_ID": "AKIASTALE",
        "AWS_SECRET_ACCESS_KEY": "x",
    }
    script = f"{text}\n{AWS_CLI} sts get-caller-identity --query Arn --output text"
    argv = ["bash", "-c", script] if shell == "bash" else ["fish", "--no-config", "-c", script]
    result = aws.run_command(argv, env=stale)
    process.send_signal(signal.SIGTERM if shell == "bash" else signal.SIGHUP)  # both stop it
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert stderr.rstrip().endswith("mfa-session: stopped")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == aws.user.arn
    assert len(aws.gst_calls()) == 1


def test_many_concurrent_clients_share_one_sts_call_per_level(
    aws: AwsHome, role: str, node: str
) -> None:
    counter = counting_mfa_process(aws)
    # Sessions of a little over a minute, so that the one the server made first soon has
    # no more than STALE_FLOOR s left: then it is no fallback, and once the cache is
    # cleared every client needs the new sessions.
    aws.emulator.cap_lifetime("GetSessionToken", STALE_FLOOR + 3)
    aws.emulator.cap_lifetime("AssumeRole", STALE_FLOOR + 3)
    with serving(aws, "--profile", "alice", "--role-arn", role, "--min-remaining", "2") as srv:
        assert runs(counter) == 1
        first_role = next(s for s in aws.emulator.sessions() if s.role is not None)
        while first_role.expires_at - time.time() >= STALE_FLOOR + 1:  # 2 s after it was made
            time.sleep(0.05)
        assert aws.run("clear", "--all").returncode == 0  # a cold cache for the crowd
        boto3_crowd = textwrap.dedent(
            """
            import json, threading, boto3
            barrier = threading.Barrier(8)
            keys = []
            def one():
                session = boto3.Session()
                client = session.client("sts")  # resolves credentials: the first request
                barrier.wait()
                keys.append(session.get_credentials().get_frozen_credentials().access_key)
                client.get_caller_identity()
            threads = [threading.Thread(target=one) for _ in range(8)]
            for thread in threads: thread.start()
            for thread in threads: thread.join()
            print(json.dumps(keys))
            """
        )
        with ThreadedRun() as crowd:
            crowd.start(aws, [sys.executable, "-c", boto3_crowd], sdk_env(srv))
            crowd.start(aws, js(node, "concurrent", "8"), sdk_env(srv))
        python_result, js_result = crowd.results
    assert python_result.returncode == 0, python_result.stderr
    assert js_result.returncode == 0, js_result.stderr
    keys = set(json.loads(python_result.stdout))
    keys |= {str(line["key"]) for line in json_lines(js_result.stdout)}
    assert len(aws.gst_calls()) == 2  # the first session, then one for sixteen clients
    assert len(aws.emulator.calls("AssumeRole")) == 2
    assert runs(counter) == 2
    new_role_key = aws.emulator.sessions()[-1].access_key_id
    assert keys == {new_role_key}


class ThreadedRun:
    """Start several commands at once and collect their results."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.results: list[object] = []

    def start(self, aws: AwsHome, argv: list[str], env: dict[str, str]) -> None:
        index = len(self.results)
        self.results.append(None)

        def run() -> None:
            self.results[index] = aws.run_command(argv, env=env)

        thread = threading.Thread(target=run)
        thread.start()
        self.threads.append(thread)

    def __enter__(self) -> ThreadedRun:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for thread in self.threads:
            thread.join()


def test_javascript_keeps_working_across_the_end_of_its_keys(
    aws: AwsHome, role: str, node: str
) -> None:
    aws.emulator.cap_lifetime("AssumeRole", LIFETIME)
    with serving(
        aws, "--profile", "alice", "--role-arn", role, "--min-remaining", str(RENEW_AT),
        "--token-code", aws.code(),
    ) as srv:  # fmt: skip
        result = aws.run_command(
            js(node, "until-renewed", str(ROTATION_DEADLINE)), env=sdk_env(srv)
        )
    assert result.returncode == 0, result.stderr
    keys = {line["key"] for line in json_lines(result.stdout)}
    assert len(keys) >= 2
    identity_calls = sdk_identity_calls(aws)
    assert len(identity_calls) == len(json_lines(result.stdout))
    assert {call.outcome for call in identity_calls} == {"ok"}
    assert_used_keys_across_a_renewal(aws, identity_calls)
    assert len(aws.gst_calls()) == 1


def test_token_host_method_and_path_are_checked_and_counted(aws: AwsHome) -> None:
    with serving(aws, "--profile", "alice", "--token-code", aws.code(), debug=True) as srv:
        port = urlsplit(srv.url).port
        missing = request(srv.url, None)
        wrong = request(srv.url, srv.token[:-1] + ("x" if srv.token[-1] != "x" else "y"))
        wrong_again = request(srv.url, "Bearer " + srv.token)
        rebound = request(srv.url, srv.token, host=f"evil.example:{port}")
        browser = request(srv.url, srv.token, origin="https://evil.example")
        post = request(srv.url, srv.token, method="POST")
        other_path = request(srv.url, srv.token, path="/role-arn/arn:aws:iam::1:role/Admin")
        by_name = request(srv.url, srv.token, host=f"localhost:{port}")
        stderr_while_running = srv.stderr
    assert (missing[0], missing[1]["Code"]) == (401, "MissingToken")
    assert (wrong[0], wrong[1]["Code"]) == (403, "InvalidToken")
    assert (wrong_again[0], wrong_again[1]["Code"]) == (403, "InvalidToken")
    assert (rebound[0], rebound[1]["Code"]) == (403, "InvalidHost")
    assert (browser[0], browser[1]["Code"]) == (403, "BrowserRequest")
    assert (post[0], post[1]["Code"]) == (405, "MethodNotAllowed")
    assert (other_path[0], other_path[1]["Code"]) == (404, "NotFound")
    assert by_name[0] == 200
    assert "refused a request (MissingToken)" in stderr_while_running
    assert "refused a request (InvalidToken): the Authorization header is not" in (
        stderr_while_running
    )
    assert "; 2 so far" in stderr_while_running
    stderr = srv.stderr
    assert "InvalidToken 2" in stderr and "MissingToken 1" in stderr
    assert srv.token not in stderr
    assert str(by_name[1]["SecretAccessKey"]) not in stderr
    assert str(by_name[1]["Token"]) not in stderr
    assert_no_secrets(aws, stderr)
    assert len(aws.emulator.calls()) == 1  # no refused request reached STS


def test_no_code_source_mid_run_is_a_503_then_a_pause_not_a_loop(aws: AwsHome) -> None:
    # Handed out for 1-2 s; then renewing it needs a code (--token-code served the first
    # session only), and with RENEW_AT <= STALE_FLOOR s left it is no fallback either.
    aws.emulator.cap_lifetime("GetSessionToken", STALE_FLOOR + 3)
    with serving(
        aws, "--profile", "alice", "--min-remaining", str(RENEW_AT), "--token-code", aws.code(),
        debug=True,
    ) as srv:  # fmt: skip
        deadline = time.monotonic() + 20
        while True:  # until the session the server has runs out and no code can be had
            status, document, headers = request(srv.url, srv.token)
            if status != 200 and document["Code"] != "SessionPending":  # (a slow first try)
                break
            assert time.monotonic() < deadline
            time.sleep(0.2)
        again = [request(srv.url, srv.token) for _ in range(5)]
        cpu_before = _cpu_seconds(srv.process.pid)
        time.sleep(1)
        cpu_idle = _cpu_seconds(srv.process.pid) - cpu_before
        stderr = srv.stderr
    assert status == 503
    assert document["Code"] == "SessionUnavailable"
    assert "no way to get an MFA code" in str(document["Message"])
    assert int(headers["Retry-After"]) >= 1
    assert [answer[0] for answer in again] == [503] * 5
    # One failed attempt for all those requests: the next waits for the pause to end.
    assert stderr.count("no session: no way to get an MFA code") == 1
    assert cpu_idle < 0.2
    assert len(aws.gst_calls()) == 1


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["serve", "--listen", "0.0.0.0"], "--listen 0.0.0.0 is not a loopback address"),
        (["serve", "--listen", "192.0.2.2"], "--allow-non-loopback"),
        (["exec", "--server", "--listen", "::", "--", "true"], "not a loopback address"),
        (["serve", "--listen", "my-host"], "--listen wants an IP address"),
        (["serve", "--port", "70000"], "--port must be between 0 and 65535"),
        (["serve", "--port", "http"], "argument --port: invalid int value"),
        (["serve", "--format", "xml"], "argument --format: invalid choice"),
        (["exec", "--port", "8080", "--", "true"], "go with --server"),
    ],
)
def test_usage_errors_exit_2_before_any_sts_call(
    aws: AwsHome, argv: list[str], fragment: str
) -> None:
    result = aws.run(*argv[:1], "--profile", "alice", *argv[1:])
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("mfa-session: error: ")
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert aws.emulator.calls() == []


def test_a_non_loopback_address_needs_the_flag_and_gets_a_warning(aws: AwsHome) -> None:
    with serving(
        aws, "--profile", "alice", "--listen", "0.0.0.0", "--allow-non-loopback",
        "--token-code", aws.code(),
    ) as srv:  # fmt: skip
        assert urlsplit(srv.url).hostname == "127.0.0.1"
        assert request(srv.url, srv.token)[0] == 200
        stderr = srv.stderr
    assert "warning: the credential server listens on 0.0.0.0" in stderr
    assert "any host that reaches it with the token" in stderr


def test_a_port_in_use_is_a_clean_error_before_any_code_is_spent(aws: AwsHome) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = aws.run("serve", "--profile", "alice", "--port", port, "--token-code", aws.code())
    assert_clean_error(result, f"cannot listen on 127.0.0.1 port {port}")
    assert aws.emulator.calls() == []


def test_serve_without_a_code_source_fails_cleanly(aws: AwsHome) -> None:
    result = aws.run("serve", "--profile", "alice")
    assert_clean_error(result, "no way to get an MFA code")


def test_serve_for_an_unknown_profile_fails_cleanly(aws: AwsHome) -> None:
    result = aws.run("serve", "--profile", "nobody")
    assert_clean_error(result, "'nobody'")


def test_wrong_code_at_serve_is_clean_and_secret_free(aws: AwsHome) -> None:
    wrong = aws.code(step_offset=7)
    result = aws.run("serve", "--profile", "alice", "--token-code", wrong)
    assert_clean_error(result, "rejected the MFA code")
    assert_no_secrets(aws, result.stderr, codes=(wrong,))
