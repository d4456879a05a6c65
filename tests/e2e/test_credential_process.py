"""credential-process end to end: the installed command, the real AWS CLI and boto3,
against the strict STS emulator."""

from __future__ import annotations

import json
import stat
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest

from tests.conftest import AWS_CLI, AwsHome, Result, read_session_file, wait_for_fresh_step


def assert_process_json(result: Result) -> dict[str, object]:
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["Version"] == 1
    assert str(document["AccessKeyId"]).startswith("ASIA")
    assert document["SecretAccessKey"] and document["SessionToken"]
    expiration = datetime.strptime(str(document["Expiration"]), "%Y-%m-%dT%H:%M:%SZ")
    assert expiration.replace(tzinfo=timezone.utc) > datetime.now(timezone.utc)
    return document


def assert_clean_error(result: Result, *fragments: str, progress: bool = False) -> None:
    """One 'mfa-session: error:' line (plus an optional hint), exit 1, no traceback;
    nothing on stdout unless ``progress`` (steps done before the failure may be there)."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines and lines[0].startswith("mfa-session: error: "), result.stderr
    assert all(line.startswith(("mfa-session:", "hint:")) for line in lines), result.stderr
    assert "Traceback" not in result.stderr
    assert progress or result.stdout == ""
    for fragment in fragments:
        assert fragment in result.stderr


def assert_no_secrets(aws: AwsHome, *outputs: str, codes: tuple[str, ...] = ()) -> None:
    for output in outputs:
        assert aws.user.secret_access_key not in output
        assert aws.device.seed not in output
        for code in codes:
            assert code not in output


def test_token_code_then_cache_hit_from_another_process(aws: AwsHome) -> None:
    wait_for_fresh_step()
    code = aws.code()
    first = aws.run("credential-process", "--profile", "alice", "--token-code", code)
    document = assert_process_json(first)
    again = aws.run("credential-process", "--profile", "alice")
    assert json.loads(again.stdout) == document
    calls = aws.gst_calls()
    assert [call.outcome for call in calls] == ["ok"]
    assert calls[0].duration == 43200
    assert_no_secrets(aws, first.stderr, again.stderr, codes=(code,))


def test_python_dash_m_works(aws: AwsHome) -> None:
    result = aws.run_command(
        [
            sys.executable,
            "-m",
            "mfa_session",
            "credential-process",
            "--profile",
            "alice",
            "--token-code",
            aws.code(),
        ]
    )
    assert_process_json(result)


def test_aws_cli_and_boto3_use_one_session_from_the_keyring_seed(aws: AwsHome) -> None:
    aws.store_seed()
    identity = aws.run_command([AWS_CLI, "sts", "get-caller-identity", "--profile", "dev"])
    assert identity.returncode == 0, identity.stderr
    assert json.loads(identity.stdout)["Arn"] == aws.user.arn
    script = textwrap.dedent(
        """
        import boto3
        client = boto3.Session(profile_name="dev").client("sts")
        print(client.get_caller_identity()["Arn"])
        """
    )
    via_boto3 = aws.run_command([sys.executable, "-c", script])
    assert via_boto3.returncode == 0, via_boto3.stderr
    assert via_boto3.stdout.strip() == aws.user.arn
    assert len(aws.gst_calls()) == 1
    assert len(aws.emulator.calls("GetCallerIdentity")) == 2


def test_mfa_process_gives_the_code_with_the_recursion_marker(aws: AwsHome) -> None:
    marker_file = aws.root / "marker"
    aws.add_config(
        f"\n[profile bob]\nmfa_serial = {aws.device.serial}\n"
        f'mfa_process = echo "$MFA_SESSION_RESOLVING" > {marker_file}; '
        f"{sys.executable} -c \"import pyotp; print(pyotp.TOTP('{aws.device.seed}').now())\"\n"
    )
    with aws.credentials.open("a") as handle:
        handle.write(
            f"[bob]\naws_access_key_id = {aws.user.access_key_id}\n"
            f"aws_secret_access_key = {aws.user.secret_access_key}\n"
        )
    wait_for_fresh_step()
    result = aws.run("credential-process", "--profile", "bob")
    assert_process_json(result)
    assert marker_file.read_text().strip() == "bob"
    assert_no_secrets(aws, result.stderr)


def test_mfa_process_that_calls_mfa_session_fails_fast(aws: AwsHome) -> None:
    aws.write_config(
        f"[profile alice]\nmfa_serial = {aws.device.serial}\n"
        "mfa_process = mfa-session credential-process --profile alice\n"
    )
    started = time.monotonic()
    result = aws.run("credential-process", "--profile", "alice", timeout=30)
    assert time.monotonic() - started < 20
    assert_clean_error(result, "mfa_process")
    assert aws.gst_calls() == []


def test_profile_that_delegates_to_mfa_session_is_followed(aws: AwsHome) -> None:
    via_dev = assert_process_json(
        aws.run("credential-process", "--profile", "dev", "--token-code", aws.code())
    )
    via_alice = assert_process_json(aws.run("credential-process", "--profile", "alice"))
    assert via_dev == via_alice


def test_delegation_loop_is_reported_as_recursion(aws: AwsHome) -> None:
    aws.add_config(
        "\n[profile a]\ncredential_process = mfa-session credential-process --profile b\n"
        "[profile b]\ncredential_process = mfa-session credential-process --profile a\n"
    )
    result = aws.run("credential-process", "--profile", "a")
    assert_clean_error(result, "recurse: a -> b -> a")


def test_self_referencing_credential_process_profile_fails_fast_through_the_cli(
    aws: AwsHome,
) -> None:
    aws.add_config(
        "\n[profile loop]\ncredential_process = mfa-session credential-process --profile loop\n"
    )
    started = time.monotonic()
    result = aws.run_command(
        [AWS_CLI, "sts", "get-caller-identity", "--profile", "loop"], timeout=60
    )
    assert time.monotonic() - started < 30
    assert result.returncode != 0
    assert "recurse" in result.stderr
    assert aws.gst_calls() == []


@pytest.mark.parametrize("code", ["12345", "1234567", "abcdef", "12 345"])
def test_malformed_code_is_refused_before_any_sts_call(aws: AwsHome, code: str) -> None:
    result = aws.run("credential-process", "--profile", "alice", "--token-code", code)
    assert_clean_error(result, "six digits")
    assert aws.emulator.calls() == []
    assert_no_secrets(aws, result.stderr, codes=(code,))


def test_wrong_code_is_a_clear_error(aws: AwsHome) -> None:
    wrong = aws.code(step_offset=7)  # a real code of the device, far from now
    result = aws.run("credential-process", "--profile", "alice", "--token-code", wrong)
    assert_clean_error(result, "rejected the MFA code")
    assert [call.outcome for call in aws.gst_calls()] == ["AccessDenied"]
    assert_no_secrets(aws, result.stderr, codes=(wrong,))


def test_token_code_from_the_environment(aws: AwsHome) -> None:
    result = aws.run(
        "credential-process", "--profile", "alice", env={"MFA_SESSION_TOKEN_CODE": aws.code()}
    )
    assert_process_json(result)


def test_unknown_profile(aws: AwsHome) -> None:
    result = aws.run("credential-process", "--profile", "nobody")
    assert_clean_error(result, "'nobody'", "known profiles: alice, dev")


def test_profile_without_mfa_serial(aws: AwsHome) -> None:
    aws.write_config("[profile alice]\nregion = eu-west-1\n")
    result = aws.run("credential-process", "--profile", "alice", "--token-code", aws.code())
    assert_clean_error(result, "no mfa_serial")
    assert aws.emulator.calls() == []


def test_profile_without_keys(aws: AwsHome) -> None:
    aws.credentials.write_text("")
    result = aws.run("credential-process", "--profile", "alice", "--token-code", aws.code())
    assert_clean_error(result, "no long-term access keys")


def test_inactive_access_key(aws: AwsHome) -> None:
    aws.emulator.deactivate_key(aws.user)
    result = aws.run("credential-process", "--profile", "alice", "--token-code", aws.code())
    assert_clean_error(result, aws.user.access_key_id, "inactive")
    assert_no_secrets(aws, result.stderr)


def test_wrong_secret_key(aws: AwsHome) -> None:
    aws.credentials.write_text(
        f"[alice]\naws_access_key_id = {aws.user.access_key_id}\n"
        f"aws_secret_access_key = {'x' * 40}\n"
    )
    result = aws.run("credential-process", "--profile", "alice", "--token-code", aws.code())
    assert_clean_error(result, "secret access key")
    assert "x" * 40 not in result.stderr


def test_unreachable_endpoint(aws: AwsHome) -> None:
    result = aws.run(
        "credential-process",
        "--profile",
        "alice",
        "--token-code",
        aws.code(),
        env={"AWS_ENDPOINT_URL_STS": "http://127.0.0.1:9"},
    )
    assert_clean_error(result, "cannot reach STS at http://127.0.0.1:9")


def test_throttling_is_retried_then_reported(aws: AwsHome) -> None:
    aws.emulator.fail_next("GetSessionToken", "Throttling", "Rate exceeded", times=1)
    result = aws.run("credential-process", "--profile", "alice", "--token-code", aws.code())
    assert_process_json(result)
    aws.emulator.fail_next("GetSessionToken", "Throttling", "Rate exceeded", times=10)
    result = aws.run("clear", "--all")
    result = aws.run("credential-process", "--profile", "alice", "--token-code", aws.code(1))
    assert_clean_error(result, "throttling")


def test_duration_flag_and_profile_setting(aws: AwsHome) -> None:
    result = aws.run(
        "credential-process", "--profile", "alice", "--token-code", aws.code(), "--duration", "3600"
    )
    assert_process_json(result)
    aws.run("clear", "--all")
    aws.add_config(
        f"\n[profile carol]\nmfa_serial = {aws.device.serial}\nmfa_session_duration = 7200\n"
    )
    with aws.credentials.open("a") as handle:
        handle.write(
            f"[carol]\naws_access_key_id = {aws.user.access_key_id}\n"
            f"aws_secret_access_key = {aws.user.secret_access_key}\n"
        )
    result = aws.run("credential-process", "--profile", "carol", "--token-code", aws.code(1))
    assert_process_json(result)
    assert [call.duration for call in aws.gst_calls()] == [3600, 7200]


@pytest.mark.parametrize("duration", ["100", "200000", "soon"])
def test_bad_duration_is_refused_before_sts(aws: AwsHome, duration: str) -> None:
    result = aws.run(
        "credential-process",
        "--profile",
        "alice",
        "--token-code",
        aws.code(),
        "--duration",
        duration,
    )
    assert result.returncode in (1, 2)
    assert result.stderr.startswith("mfa-session: error: ")
    assert aws.emulator.calls() == []


def test_min_remaining_forces_a_new_session(aws: AwsHome) -> None:
    first = assert_process_json(
        aws.run(
            "credential-process",
            "--profile",
            "alice",
            "--token-code",
            aws.code(),
            "--duration",
            "3600",
        )
    )
    reused = assert_process_json(
        aws.run("credential-process", "--profile", "alice", "--min-remaining", "1500")
    )
    assert reused == first
    fresh = assert_process_json(
        aws.run(
            "credential-process",
            "--profile",
            "alice",
            "--token-code",
            aws.code(1),
            env={"MFA_SESSION_MIN_REMAINING": "7000"},
        )
    )
    assert fresh["AccessKeyId"] != first["AccessKeyId"]
    assert len(aws.gst_calls()) == 2


def test_cache_files_are_private_and_secret_free_expiry(aws: AwsHome) -> None:
    assert_process_json(
        aws.run("credential-process", "--profile", "alice", "--token-code", aws.code())
    )
    folder = aws.cache_dir
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    files = sorted(folder.iterdir())
    assert files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert not [path for path in files if path.name.endswith(".tmp")]
    (expiry,) = [
        path for path in files if path.name.startswith("session-") and path.suffix == ".expiry"
    ]
    epoch, profile, role = expiry.read_text().rstrip("\n").split("\t")
    assert (profile, role) == ("alice", "-")
    assert 43000 < int(epoch) - time.time() <= 43200


def test_corrupt_cache_file_is_replaced(aws: AwsHome) -> None:
    first = assert_process_json(
        aws.run("credential-process", "--profile", "alice", "--token-code", aws.code())
    )
    (session_file,) = aws.cache_dir.glob("session-*.json")
    truncated = session_file.read_bytes()[:60].decode(errors="replace")
    for garbage in ("", '{"format": 1, "profile": ', "[1, 2]", "\x00\xff", truncated):
        session_file.write_text(garbage)
        result = aws.run("credential-process", "--profile", "alice")
        assert_clean_error(result, "no way to get an MFA code")
    replaced = assert_process_json(
        aws.run("credential-process", "--profile", "alice", "--token-code", aws.code(1))
    )
    assert replaced != first
    assert read_session_file(session_file)["access_key_id"] == replaced["AccessKeyId"]


def test_group_writable_cache_folder_is_refused(aws: AwsHome) -> None:
    aws.cache_dir.mkdir(mode=0o700)
    aws.cache_dir.chmod(0o777)
    result = aws.run("credential-process", "--profile", "alice", "--token-code", aws.code())
    assert_clean_error(result, "writable by group or others")
    assert aws.emulator.calls() == []


@pytest.mark.skipif(
    not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() != 0,
    reason="needs root to give the folder to another user",
)
def test_cache_folder_of_another_user_is_refused(aws: AwsHome) -> None:
    import os

    aws.cache_dir.mkdir(mode=0o700)
    os.chown(aws.cache_dir, 4242, 4242)
    result = aws.run("credential-process", "--profile", "alice", "--token-code", aws.code())
    assert_clean_error(result, "belongs to another user")


def test_readable_cache_folder_of_ours_is_made_private(aws: AwsHome) -> None:
    aws.cache_dir.mkdir(mode=0o755)
    aws.cache_dir.chmod(0o755)
    assert_process_json(
        aws.run("credential-process", "--profile", "alice", "--token-code", aws.code())
    )
    assert stat.S_IMODE(aws.cache_dir.stat().st_mode) == 0o700


def test_no_code_source_without_terminal_or_display(aws: AwsHome) -> None:
    result = aws.run("credential-process", "--profile", "alice")
    assert_clean_error(result, "no way to get an MFA code", "mfa-session totp set --profile alice")
    assert aws.emulator.calls() == []


def test_gui_prompt_when_there_is_a_display_but_no_terminal(aws: AwsHome) -> None:
    bin_dir = aws.root / "bin"
    bin_dir.mkdir()
    argv_log = aws.root / "zenity-argv"
    zenity = bin_dir / "zenity"
    zenity.write_text(
        f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {argv_log}\n"
        f"exec {sys.executable} -c \"import pyotp; print(pyotp.TOTP('{aws.device.seed}').now())\"\n"
    )
    zenity.chmod(0o755)
    wait_for_fresh_step()
    result = aws.run(
        "credential-process",
        "--profile",
        "alice",
        env={"DISPLAY": ":99", "PATH": f"{bin_dir}:{aws.env['PATH']}"},
    )
    assert_process_json(result)
    assert "--entry" in argv_log.read_text()
    assert aws.device.serial in argv_log.read_text()


def test_debug_shows_a_traceback_but_no_secret(aws: AwsHome) -> None:
    code = aws.code(step_offset=9)
    result = aws.run("--debug", "credential-process", "--profile", "alice", "--token-code", code)
    assert result.returncode != 0
    assert "Traceback" in result.stderr
    assert "mfa-session: debug:" in result.stderr
    assert_no_secrets(aws, result.stderr, codes=(code,))


def test_config_file_locations_come_from_the_environment(aws: AwsHome) -> None:
    elsewhere = aws.root / "elsewhere"
    elsewhere.mkdir()
    aws.config.rename(elsewhere / "cfg")
    aws.credentials.rename(elsewhere / "creds")
    result = aws.run(
        "credential-process",
        "--profile",
        "alice",
        "--token-code",
        aws.code(),
        env={
            "AWS_CONFIG_FILE": str(elsewhere / "cfg"),
            "AWS_SHARED_CREDENTIALS_FILE": str(elsewhere / "creds"),
        },
    )
    assert_process_json(result)


def test_endpoint_url_in_the_profile_is_honoured(aws: AwsHome) -> None:
    del aws.env["AWS_ENDPOINT_URL_STS"]
    aws.write_config(
        f"[profile alice]\nmfa_serial = {aws.device.serial}\n"
        f"region = eu-west-1\nendpoint_url = {aws.emulator.url}\n"
    )
    result = aws.run("credential-process", "--profile", "alice", "--token-code", aws.code())
    assert_process_json(result)


def test_a_hit_right_after_an_edit_imports_no_sdk(aws: AwsHome) -> None:
    """Files this fresh are parsed in full (see test_hit.py for the remembered plan)."""
    assert_process_json(
        aws.run("credential-process", "--profile", "alice", "--token-code", aws.code())
    )
    result = aws.run_command(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "mfa_session",
            "credential-process",
            "--profile",
            "alice",
        ]
    )
    assert_process_json(result)
    imported = {
        line.split("|")[-1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "mfa_session.cache" in imported
    heavy = {
        "boto3",
        "botocore",
        "keyring",
        "pyotp",
        "filelock",
        "segno",
        "configupdater",
        "platformdirs",
        "click",
        "dataclasses",
        "typing",
        "logging",
        "pathlib",
        "subprocess",
    }
    assert not imported & heavy, imported & heavy


def test_twelve_processes_on_a_cold_cache_share_one_code_and_one_call(aws: AwsHome) -> None:
    counter = aws.root / "mfa-process-runs"
    aws.write_config(
        f"[profile alice]\nmfa_serial = {aws.device.serial}\nregion = eu-west-1\n"
        f"mfa_process = echo run >> {counter}; sleep 1; "
        f"{sys.executable} -c \"import pyotp; print(pyotp.TOTP('{aws.device.seed}').now())\"\n"
    )
    wait_for_fresh_step(margin=8)
    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(
            pool.map(lambda _: aws.run("credential-process", "--profile", "alice"), range(12))
        )
    documents = [assert_process_json(result) for result in results]
    assert all(document == documents[0] for document in documents)
    assert counter.read_text().count("run") == 1
    assert [call.outcome for call in aws.gst_calls()] == ["ok"]


@pytest.mark.slow
def test_spent_seed_code_waits_for_the_next_step(aws: AwsHome) -> None:
    aws.store_seed()
    wait_for_fresh_step(margin=10)
    assert_process_json(aws.run("credential-process", "--profile", "alice"))
    aws.run("clear", "--all")
    started = time.time()
    with ThreadPoolExecutor(max_workers=1) as pool:
        holder = pool.submit(aws.run, "credential-process", "--profile", "alice")
        aws.wait_for_lock_holder("for the next TOTP code")
        waiter = aws.run("credential-process", "--profile", "alice")
        result = holder.result()
    assert_process_json(result)
    assert "waiting" in result.stderr and "already used" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # no terminal: one line, no countdown
    assert time.time() - started > 1
    # Another process sees why it waits, then takes the holder's session from the cache.
    assert assert_process_json(waiter) == assert_process_json(result)
    assert "is waiting" in waiter.stderr and "s for the next TOTP code" in waiter.stderr
    assert [call.outcome for call in aws.gst_calls()] == ["ok", "ok"]
    assert_no_secrets(aws, result.stderr)


@pytest.mark.slow
def test_seed_code_spent_by_another_tool_is_retried_at_the_next_step(aws: AwsHome) -> None:
    aws.store_seed()
    wait_for_fresh_step(margin=10)
    stolen = aws.run_command(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import boto3, pyotp
        sts = boto3.client("sts", region_name="eu-west-1",
                           aws_access_key_id="{aws.user.access_key_id}",
                           aws_secret_access_key="{aws.user.secret_access_key}")
        sts.get_session_token(SerialNumber="{aws.device.serial}",
                              TokenCode=pyotp.TOTP("{aws.device.seed}").now())
        """),
        ]
    )
    assert stolen.returncode == 0, stolen.stderr
    result = aws.run("credential-process", "--profile", "alice")
    assert_process_json(result)
    assert "rejected" in result.stderr
    assert [call.outcome for call in aws.gst_calls()] == ["ok", "AccessDenied", "ok"]


def test_given_code_that_was_already_used_is_refused_without_a_call(aws: AwsHome) -> None:
    code = aws.code()
    assert_process_json(aws.run("credential-process", "--profile", "alice", "--token-code", code))
    aws.run("clear", "--all")
    result = aws.run("credential-process", "--profile", "alice", "--token-code", code)
    assert_clean_error(result, "already used")
    assert len(aws.gst_calls()) == 1


def test_no_keyring_backend_means_no_seed(aws: AwsHome) -> None:
    result = aws.run(
        "credential-process",
        "--profile",
        "alice",
        env={"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"},
    )
    assert_clean_error(result, "no way to get an MFA code")


def test_stdout_carries_nothing_but_the_json(aws: AwsHome) -> None:
    result = aws.run("credential-process", "--profile", "alice", "--token-code", aws.code())
    assert result.stdout.count("\n") == 1
    assert_process_json(result)


def test_usage_error_is_one_line_with_status_two(aws: AwsHome) -> None:
    result = aws.run("credential-process")
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        "mfa-session: error: the following arguments are required: --profile"
    )
    assert "Traceback" not in result.stderr
