"""`exec` and `export` end to end: real processes, real shells, the real AWS CLI."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest

from tests.conftest import AWS_CLI, MFA_SESSION, AwsHome, read_session_file
from tests.e2e.test_credential_process import assert_clean_error, assert_no_secrets

PRINT_ENV = [sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"]


@pytest.fixture
def logged_in(aws: AwsHome) -> AwsHome:
    """alice with a cached session, so no test below needs another code."""
    result = aws.run("credential-process", "--profile", "alice", "--token-code", aws.code())
    assert result.returncode == 0, result.stderr
    return aws


def session_file(aws: AwsHome) -> dict[str, str]:
    (path,) = aws.cache_dir.glob("session-*.json")
    return read_session_file(path)


def test_exec_environment(logged_in: AwsHome) -> None:
    stale = {
        "AWS_PROFILE": "alice",
        "AWS_DEFAULT_PROFILE": "other",
        "AWS_ACCESS_KEY_ID": "AKIASTALE",
        "AWS_SECRET_ACCESS_KEY": "stale",
        "AWS_SECURITY_TOKEN": "stale",
        "AWS_ROLE_ARN": "arn:aws:iam::1:role/x",
        "AWS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
    }
    result = logged_in.run("exec", "--", *PRINT_ENV, env=stale)
    assert result.returncode == 0, result.stderr
    child = json.loads(result.stdout)
    cached = session_file(logged_in)
    assert child["AWS_ACCESS_KEY_ID"] == cached["access_key_id"]
    assert child["AWS_SECRET_ACCESS_KEY"] == cached["secret_access_key"]
    assert child["AWS_SESSION_TOKEN"] == cached["session_token"]
    assert child["AWS_CREDENTIAL_EXPIRATION"] == cached["expiration"]
    assert child["AWS_REGION"] == child["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert child["MFA_SESSION_PROFILE"] == "alice"
    expiry = datetime.strptime(cached["expiration"], "%Y-%m-%dT%H:%M:%SZ")
    assert int(child["MFA_SESSION_EXPIRATION"]) == int(
        expiry.replace(tzinfo=timezone.utc).timestamp()
    )
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SECURITY_TOKEN", "AWS_ROLE_ARN"):
        assert name not in child
    assert child["AWS_CA_BUNDLE"] == stale["AWS_CA_BUNDLE"]  # not a key: kept


def test_exec_runs_the_real_aws_cli(logged_in: AwsHome) -> None:
    result = logged_in.run(
        "exec", "--profile", "alice", "--", AWS_CLI, "sts", "get-caller-identity"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["Arn"] == logged_in.user.arn
    assert len(logged_in.gst_calls()) == 1


def test_exec_through_an_sdk_profile_name(logged_in: AwsHome) -> None:
    result = logged_in.run("exec", "--", *PRINT_ENV, env={"AWS_PROFILE": "dev"})
    assert result.returncode == 0, result.stderr
    child = json.loads(result.stdout)
    assert child["MFA_SESSION_PROFILE"] == "dev"
    assert child["AWS_ACCESS_KEY_ID"] == session_file(logged_in)["access_key_id"]


def test_exec_passes_the_exit_status_through(logged_in: AwsHome) -> None:
    assert logged_in.run("exec", "--profile", "alice", "--", "sh", "-c", "exit 7").returncode == 7


def test_exec_replaces_itself_so_signals_reach_the_command(logged_in: AwsHome) -> None:
    ready = logged_in.root / "ready"
    script = (
        "import os, signal, sys, time\n"
        f"open({str(ready)!r}, 'w').write(str(os.getpid()))\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(42))\n"
        "time.sleep(60)\n"
    )
    process = subprocess.Popen(
        [MFA_SESSION, "exec", "--profile", "alice", "--", sys.executable, "-c", script],
        env=logged_in.env,
    )
    deadline = time.monotonic() + 30
    while not ready.exists() or not ready.read_text():
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.05)
    assert int(ready.read_text()) == process.pid  # execvp: same process, no wrapper
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 42


def test_exec_without_a_command_starts_the_users_shell(logged_in: AwsHome) -> None:
    result = logged_in.run(
        "exec",
        "--profile",
        "alice",
        env={"SHELL": "/bin/sh"},
        input='echo "in $MFA_SESSION_PROFILE"\n',
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "in alice"


def test_missing_command_exits_127(logged_in: AwsHome) -> None:
    result = logged_in.run("exec", "--profile", "alice", "--", "no-such-command-here")
    assert result.returncode == 127
    assert result.stderr.strip() == "mfa-session: error: command not found: no-such-command-here"


def test_nested_exec_of_another_profile_is_refused(logged_in: AwsHome) -> None:
    inner = f"{MFA_SESSION} exec --profile dev -- true"
    result = logged_in.run("exec", "--profile", "alice", "--", "sh", "-c", inner)
    assert result.returncode == 1
    assert "already runs under 'mfa-session exec' for profile 'alice'" in result.stderr
    same = logged_in.run(
        "exec", "--profile", "alice", "--", "sh", "-c", f"{MFA_SESSION} exec -- true"
    )
    assert same.returncode == 0, same.stderr


def test_credential_process_and_export_work_inside_exec(logged_in: AwsHome) -> None:
    inner = (
        f"{MFA_SESSION} credential-process --profile alice && "
        f"{MFA_SESSION} export --format json && "
        f"{AWS_CLI} sts get-caller-identity --profile dev"
    )
    result = logged_in.run("exec", "--profile", "alice", "--", "sh", "-c", inner)
    assert result.returncode == 0, result.stderr
    decoder = json.JSONDecoder()
    documents, text = [], result.stdout.strip()
    while text:
        document, end = decoder.raw_decode(text)
        documents.append(document)
        text = text[end:].strip()
    assert documents[0] == documents[1]
    assert documents[2]["Arn"] == logged_in.user.arn
    assert len(logged_in.gst_calls()) == 1


def test_exec_profile_failure_is_one_line(aws: AwsHome) -> None:
    result = aws.run("exec", "--profile", "nobody", "--", "true")
    assert_clean_error(result, "'nobody'")


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_export_sh_evaluated_by_a_posix_shell(logged_in: AwsHome, shell: str) -> None:
    if shutil.which(shell) is None:
        pytest.fail(f"{shell} is not installed (.ci/run installs it)")
    script = (
        f'export AWS_PROFILE=stale; eval "$({MFA_SESSION} export --profile alice)"; '
        f"{AWS_CLI} sts get-caller-identity --query Arn --output text; "
        'echo "profile=${AWS_PROFILE:-unset}"'
    )
    result = logged_in.run_command([shell, "-c", script])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [logged_in.user.arn, "profile=unset"]


def test_export_fish_sourced_by_fish(logged_in: AwsHome) -> None:
    if shutil.which("fish") is None:
        pytest.fail("fish is not installed (.ci/run installs it)")
    script = (
        f"set -gx AWS_PROFILE stale; {MFA_SESSION} export --format fish --profile alice "
        f"| source; {AWS_CLI} sts get-caller-identity --query Arn --output text; "
        "set -q AWS_PROFILE; and echo set; or echo unset"
    )
    result = logged_in.run_command(["fish", "--no-config", "-c", script])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [logged_in.user.arn, "unset"]


def test_export_json_and_dotenv(logged_in: AwsHome) -> None:
    cached = session_file(logged_in)
    as_json = json.loads(logged_in.run("export", "--profile", "alice", "--format", "json").stdout)
    assert as_json["AccessKeyId"] == cached["access_key_id"]
    assert as_json["Version"] == 1
    dotenv = logged_in.run("export", "--profile", "alice", "--format", "dotenv").stdout
    pairs = dict(line.split("=", 1) for line in dotenv.splitlines())
    assert pairs["AWS_SESSION_TOKEN"] == cached["session_token"]
    assert pairs["AWS_REGION"] == "eu-west-1"


def test_export_powershell_quotes(logged_in: AwsHome) -> None:
    text = logged_in.run("export", "--profile", "alice", "--format", "powershell").stdout
    cached = session_file(logged_in)
    assert f"$env:AWS_SESSION_TOKEN = '{cached['session_token']}'" in text.splitlines()
    assert "Remove-Item Env:AWS_PROFILE -ErrorAction SilentlyContinue" in text.splitlines()


def test_unknown_format_and_shell_are_usage_errors(aws: AwsHome) -> None:
    for argv in (["export", "--format", "xml"], ["init", "tcsh"]):
        result = aws.run(*argv)
        assert result.returncode == 2
        assert result.stderr.startswith("mfa-session: error: argument ")
        assert "invalid choice" in result.stderr
        assert "Traceback" not in result.stderr


def test_export_defaults_to_aws_profile(logged_in: AwsHome) -> None:
    result = logged_in.run("export", "--format", "json", env={"AWS_PROFILE": "alice"})
    assert result.returncode == 0, result.stderr
    assert_no_secrets(logged_in, result.stderr)


def test_sdk_caller_profile_is_noted_for_the_prompt(logged_in: AwsHome) -> None:
    result = logged_in.run_command(
        [AWS_CLI, "sts", "get-caller-identity"], env={"AWS_PROFILE": "dev"}
    )
    assert result.returncode == 0, result.stderr
    (alias,) = logged_in.cache_dir.glob("alias-*.expiry")
    epoch, name, role, digest = alias.read_text().rstrip("\n").split("\t")
    assert (name, role) == ("dev", "-")
    (session,) = logged_in.cache_dir.glob("session-*.expiry")
    assert session.name == f"session-{digest}.expiry"
    assert session.read_text().split("\t")[0] == epoch
    # An unrelated AWS_PROFILE in the caller's environment is not recorded.
    logged_in.run("credential-process", "--profile", "alice", env={"AWS_PROFILE": "alice"})
    logged_in.run("credential-process", "--profile", "alice", env={"AWS_PROFILE": "nope"})
    assert len(list(logged_in.cache_dir.glob("alias-*.expiry"))) == 1
    assert logged_in.run("clear", "--profile", "alice").returncode == 0
    assert list(logged_in.cache_dir.glob("*.expiry")) == []
