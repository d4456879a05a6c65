"""The newcomer's path: output that behaves in pipes, a bare command that helps, time
left written as the prompt writes it, stale sessions, visible waits, hints that name
the right profile, and a prompt that finds a session before the profile's first call."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pexpect

from tests.conftest import MFA_SESSION, AwsHome
from tests.e2e.test_credential_process import assert_clean_error, assert_process_json


def logged_in(aws: AwsHome) -> dict[str, object]:
    return assert_process_json(
        aws.run("credential-process", "--profile", "alice", "--token-code", aws.code())
    )


def test_a_closed_pipe_ends_quietly(aws: AwsHome) -> None:
    logged_in(aws)
    for command in (
        f"{MFA_SESSION} status | head -1",
        f"{MFA_SESSION} status --json | head -1",
        f"{MFA_SESSION} export --profile alice | head -1",
        f"{MFA_SESSION} --help | head -1",
    ):
        done = aws.run_command(["bash", "-c", f"set -o pipefail; {command}"])
        assert done.stderr == "", (command, done.stderr)
        assert done.stdout.count("\n") == 1
        assert done.returncode in (0, 141), (command, done.returncode)


def test_a_pipe_closed_before_the_first_write_ends_with_141_and_no_word(aws: AwsHome) -> None:
    """The reader is gone before anything is written (`| true`, a pager quit at once):
    every write fails, deterministically, and each command still ends quietly."""
    logged_in(aws)
    for args in (
        ["status"],
        ["status", "--json"],
        ["export", "--profile", "alice"],
        ["--help"],
        ["--version"],
        [],
        ["credential-process", "--profile", "alice"],
    ):
        reader, writer = os.pipe()
        os.close(reader)
        try:
            completed = subprocess.run(
                [MFA_SESSION, *args],
                env=aws.env,
                stdout=writer,
                stderr=subprocess.PIPE,
                text=True,
                timeout=60,
                check=False,
            )
        finally:
            os.close(writer)
        assert (completed.returncode, completed.stderr) == (141, ""), args


def test_bare_command_prints_the_overview(aws: AwsHome) -> None:
    done = aws.run()
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: mfa-session")
    for command in ("credential-process", "exec", "keys", "serve", "login", "doctor"):
        assert command in done.stdout
    assert done.stderr == ""


def test_status_writes_time_left_as_the_prompt_and_marks_stale_sessions(aws: AwsHome) -> None:
    logged_in(aws)
    status = aws.run("status")
    assert "11h59m" in status.stdout or "12h00m" in status.stdout
    document = json.loads(aws.run("status", "--json").stdout)
    assert [row["stale"] for row in document["sessions"]] == [False]
    # A new device in the config: the session of the old one is stale, and goes.
    aws.write_config(aws.config.read_text().replace("mfa/alice", "mfa/alice-new"))
    status = aws.run("status")
    assert "(stale)" in status.stdout and "clear --stale" in status.stdout
    cleared = aws.run("clear", "--stale")
    assert cleared.stdout == "cleared 1 stale session\n"
    assert "no cached sessions" in aws.run("status").stdout


def test_clear_says_how_many_without_every_profile(aws: AwsHome) -> None:
    logged_in(aws)
    assert aws.run("clear", "--all").stdout == "cleared 1 session\n"
    logged_in_again = aws.run(
        "credential-process", "--profile", "alice", "--token-code", aws.code(1)
    )
    assert_process_json(logged_in_again)
    # `clear --profile dev` clears what dev uses: alice's session.
    assert aws.run("clear", "--profile", "dev").stdout == "cleared 1 session of profile 'alice'\n"


def test_totp_code_on_a_terminal_says_how_long_it_lasts(aws: AwsHome) -> None:
    aws.store_seed()
    out = aws.root / "code.txt"
    child = pexpect.spawn(
        "bash",
        ["-c", f"{MFA_SESSION} totp code --profile alice > {out}"],
        env=aws.env,
        cwd=str(aws.root),
        encoding="utf-8",
        timeout=30,
    )
    child.expect(r"valid for (\d+) more seconds?")
    assert 1 <= int(child.match.group(1)) <= 30
    child.expect(pexpect.EOF)
    assert out.read_text().strip() in {aws.code(-1), aws.code(), aws.code(1)}
    assert len(out.read_text()) == 7  # six digits and a newline: nothing else on stdout


def test_exec_without_a_command_says_which_profile_and_how_to_leave(aws: AwsHome) -> None:
    logged_in(aws)
    shell = aws.root / "fake-shell"
    shell.write_text('#!/bin/sh\necho "in the shell as $MFA_SESSION_PROFILE"\n')
    shell.chmod(0o755)
    done = aws.run("exec", "--profile", "alice", env={"SHELL": str(shell)})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "in the shell as alice\n"
    assert f"starting {shell} with the session of profile alice" in done.stderr
    assert "type 'exit' to leave it" in done.stderr


def test_enroll_through_a_borrowing_profile_names_the_one_with_the_keys(aws: AwsHome) -> None:
    aws.use_file_keyring()
    result = aws.run("enroll", env={"AWS_PROFILE": "dev"})
    assert_clean_error(result, "profile 'dev' has no long-term access keys")
    assert "mfa-session enroll --profile alice" in result.stderr
    assert "[dev]" not in result.stderr


def test_the_prompt_finds_a_session_before_the_profiles_first_call(aws: AwsHome) -> None:
    """A new session notes every profile that leads to it: `export AWS_PROFILE=dev` shows
    dev's time left at once, with no AWS call made as dev."""
    done = aws.run("exec", "--profile", "alice", "--token-code", aws.code(), "--", "true")
    assert done.returncode == 0, done.stderr
    script = f'eval "$({MFA_SESSION} init bash)"; export AWS_PROFILE=dev; mfa_session_prompt'
    shown = aws.run_command(["bash", "--noprofile", "--norc", "-c", script])
    text = re.sub(r"\x1b\[[0-9;]*m|[\x01\x02]", "", shown.stdout)
    assert text in ("aws:dev 11h59m", "aws:dev 12h00m"), shown


def test_the_countdown_updates_in_place_on_a_terminal(aws: AwsHome) -> None:
    """mfa_process gives the code used last time: the wait for the next step is shown as
    a countdown rewritten in place (\\r), not as a line per second."""
    code = aws.code()
    logged_in_with = aws.run("credential-process", "--profile", "alice", "--token-code", code)
    assert_process_json(logged_in_with)
    aws.run("clear", "--all")
    aws.write_config(
        f"[profile alice]\nmfa_serial = {aws.device.serial}\nregion = eu-west-1\n"
        f"mfa_process = echo {code}\n"
    )
    left = 30 - time.time() % 30
    if left < 4:  # too little of the step left to see the countdown twice: the code
        time.sleep(left + 0.1)  # stays spent for two more steps, so wait for the next
    child = aws.spawn("credential-process", "--profile", "alice", timeout=40)
    child.expect(
        r"\r\x1b\[2Kmfa-session: mfa_process gave the code used last time; "
        r"the next code comes in +(\d+) s"
    )
    first = int(child.match.group(1))
    child.expect(r"\r\x1b\[2Kmfa-session: [^\r\n]*the next code comes in +(\d+) s")
    assert int(child.match.group(1)) < first
    child.terminate(force=True)  # the rest is the ordinary wait: not needed here
