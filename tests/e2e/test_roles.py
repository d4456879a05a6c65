"""Roles on one MFA session: the AWS CLI, boto3 and mfa-session against the strict
emulator, counting calls to prove one code serves every role."""

from __future__ import annotations

import json
import sys
import textwrap
import time

import pytest

from tests.conftest import AWS_CLI, AwsHome
from tests.e2e.test_credential_process import assert_clean_error, assert_process_json
from tests.sts_emulator import Role

ADMIN_ACCOUNT = "210987654321"


@pytest.fixture
def roles(aws: AwsHome) -> dict[str, Role]:
    """Two MFA-protected roles in another account, and credential_process profiles for them."""
    admin = aws.emulator.add_role(
        account=ADMIN_ACCOUNT, name="Admin", require_mfa=True, max_session_duration=7200
    )
    reader = aws.emulator.add_role(account=ADMIN_ACCOUNT, name="Reader", require_mfa=True)
    aws.add_config(
        "\n[profile prod-admin]\n"
        f"credential_process = mfa-session credential-process --profile alice "
        f"--role-arn {admin.arn}\nregion = eu-west-1\n"
        "\n[profile prod-reader]\n"
        f"credential_process = mfa-session credential-process --profile alice "
        f"--role-arn {reader.arn}\nregion = eu-west-1\n"
    )
    return {"admin": admin, "reader": reader}


def caller_arn(aws: AwsHome, profile: str) -> str:
    result = aws.run_command(
        [
            AWS_CLI,
            "sts",
            "get-caller-identity",
            "--profile",
            profile,
            "--query",
            "Arn",
            "--output",
            "text",
        ]
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def outcomes(aws: AwsHome, action: str) -> list[str]:
    return [call.outcome for call in aws.emulator.calls(action)]


def test_one_mfa_code_serves_two_roles_through_the_aws_cli(
    aws: AwsHome, roles: dict[str, Role]
) -> None:
    aws.store_seed()
    for _ in range(2):
        assert caller_arn(aws, "prod-admin") == (
            f"arn:aws:sts::{ADMIN_ACCOUNT}:assumed-role/Admin/alice"
        )
        assert caller_arn(aws, "prod-reader") == (
            f"arn:aws:sts::{ADMIN_ACCOUNT}:assumed-role/Reader/alice"
        )
    assert outcomes(aws, "GetSessionToken") == ["ok"]
    assert outcomes(aws, "AssumeRole") == ["ok", "ok"]
    assert all(call.serial is None for call in aws.emulator.calls("AssumeRole"))
    status = json.loads(aws.run("status", "--json").stdout)
    assert sorted(str(row["role_arn"]) for row in status["sessions"]) == sorted(
        ["None", f"{roles['admin'].arn}", f"{roles['reader'].arn}"]
    )


def test_aws_style_role_profile_with_boto3(aws: AwsHome, roles: dict[str, Role]) -> None:
    aws.add_config(
        f"\n[profile admin]\nrole_arn = {roles['admin'].arn}\nsource_profile = alice\n"
        f"mfa_serial = {aws.device.serial}\nrole_session_name = ops-alice\n"
        "\n[profile admin-helper]\n"
        "credential_process = mfa-session credential-process --profile admin\n"
    )
    first = assert_process_json(
        aws.run("credential-process", "--profile", "admin", "--token-code", aws.code())
    )
    script = textwrap.dedent("""
        import boto3
        print(boto3.Session(profile_name="admin-helper").client(
            "sts", region_name="eu-west-1").get_caller_identity()["Arn"])
        """)
    result = aws.run_command([sys.executable, "-c", script])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (f"arn:aws:sts::{ADMIN_ACCOUNT}:assumed-role/Admin/ops-alice")
    again = assert_process_json(aws.run("credential-process", "--profile", "admin"))
    assert again == first
    assert outcomes(aws, "GetSessionToken") == ["ok"]
    assert outcomes(aws, "AssumeRole") == ["ok"]


def test_role_chain_of_two_profiles(aws: AwsHome, roles: dict[str, Role]) -> None:
    aws.add_config(
        f"\n[profile hop1]\nrole_arn = {roles['admin'].arn}\nsource_profile = alice\n"
        f"\n[profile hop2]\nrole_arn = {roles['reader'].arn}\nsource_profile = hop1\n"
    )
    assert_process_json(
        aws.run("credential-process", "--profile", "hop2", "--token-code", aws.code())
    )
    assert outcomes(aws, "GetSessionToken") == ["ok"]
    assert outcomes(aws, "AssumeRole") == ["ok", "ok"]


def test_long_role_session_takes_its_own_code(aws: AwsHome, roles: dict[str, Role]) -> None:
    admin = roles["admin"].arn
    assert_process_json(
        aws.run("credential-process", "--profile", "alice", "--token-code", aws.code())
    )
    result = aws.run(
        "credential-process",
        "--profile",
        "alice",
        "--role-arn",
        admin,
        "--duration",
        "7200",
        "--token-code",
        aws.code(1),
    )
    document = assert_process_json(result)
    assert "caps role chaining at 1 hour" in result.stderr
    (call,) = aws.emulator.calls("AssumeRole")
    assert (call.serial, call.duration, call.access_key_id) == (
        aws.device.serial,
        7200,
        aws.user.access_key_id,
    )
    assert 7100 < _seconds_left(str(document["Expiration"])) <= 7200
    assert outcomes(aws, "GetSessionToken") == ["ok"]


def test_duration_over_the_roles_maximum(aws: AwsHome, roles: dict[str, Role]) -> None:
    result = aws.run(
        "credential-process",
        "--profile",
        "alice",
        "--role-arn",
        roles["reader"].arn,
        "--duration",
        "5400",
        "--token-code",
        aws.code(),
    )
    assert result.returncode == 1
    notice, error, hint = result.stderr.strip().splitlines()
    assert "caps role chaining at 1 hour" in notice  # said before the call
    assert error.startswith("mfa-session: error: role ")
    assert "does not allow sessions that long" in error
    assert hint.startswith("hint: ")


def test_chained_role_over_an_hour_is_refused_before_any_call(
    aws: AwsHome, roles: dict[str, Role]
) -> None:
    aws.add_config(
        f"\n[profile hop1]\nrole_arn = {roles['admin'].arn}\nsource_profile = alice\n"
        f"\n[profile hop2]\nrole_arn = {roles['reader'].arn}\nsource_profile = hop1\n"
        "duration_seconds = 7200\n"
    )
    result = aws.run("credential-process", "--profile", "hop2", "--token-code", aws.code())
    assert_clean_error(result, "caps at 1 hour")
    assert aws.emulator.calls() == []


def test_unknown_role_is_denied_clearly(aws: AwsHome) -> None:
    result = aws.run(
        "credential-process",
        "--profile",
        "alice",
        "--role-arn",
        "arn:aws:iam::210987654321:role/Nope",
        "--token-code",
        aws.code(),
    )
    assert_clean_error(result, "AWS denied assuming role arn:aws:iam::210987654321:role/Nope")
    assert outcomes(aws, "GetSessionToken") == ["ok"]


def test_external_id(aws: AwsHome) -> None:
    vendor = aws.emulator.add_role(
        account=ADMIN_ACCOUNT, name="Vendor", require_mfa=True, external_id="s3cret-ext"
    )
    denied = aws.run(
        "credential-process",
        "--profile",
        "alice",
        "--role-arn",
        vendor.arn,
        "--external-id",
        "wrong",
        "--token-code",
        aws.code(),
    )
    assert_clean_error(denied, "external id")
    allowed = aws.run(
        "credential-process",
        "--profile",
        "alice",
        "--role-arn",
        vendor.arn,
        "--external-id",
        "s3cret-ext",
    )
    assert_process_json(allowed)


def test_role_session_name_option(aws: AwsHome, roles: dict[str, Role]) -> None:
    result = aws.run(
        "exec",
        "--profile",
        "alice",
        "--role-arn",
        roles["reader"].arn,
        "--role-session-name",
        "ticket-42",
        "--token-code",
        aws.code(),
        "--",
        AWS_CLI,
        "sts",
        "get-caller-identity",
        "--query",
        "Arn",
        "--output",
        "text",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("assumed-role/Reader/ticket-42")


def test_role_options_without_a_role(aws: AwsHome) -> None:
    result = aws.run("credential-process", "--profile", "alice", "--external-id", "x")
    assert result.returncode == 2
    assert "need a role" in result.stderr


def test_cached_role_session_outlives_a_forgotten_mfa_session(
    aws: AwsHome, roles: dict[str, Role]
) -> None:
    first = assert_process_json(
        aws.run(
            "credential-process",
            "--profile",
            "alice",
            "--role-arn",
            roles["admin"].arn,
            "--token-code",
            aws.code(),
        )
    )
    for path in aws.cache_dir.glob("session-*"):
        if "\t-\n" in path.read_text() or '"role_arn": null' in path.read_text():
            path.unlink()
    again = assert_process_json(
        aws.run("credential-process", "--profile", "alice", "--role-arn", roles["admin"].arn)
    )
    assert again == first


def test_second_device_on_the_role_profile_is_used_directly(
    aws: AwsHome, roles: dict[str, Role]
) -> None:
    second = aws.emulator.add_mfa_device(aws.user, name="alice-yubikey")
    aws.add_config(
        f"\n[profile admin]\nrole_arn = {roles['admin'].arn}\nsource_profile = alice\n"
        f"mfa_serial = {second.serial}\n"
    )
    code = aws.code_for(second)
    assert_process_json(aws.run("credential-process", "--profile", "admin", "--token-code", code))
    (call,) = aws.emulator.calls("AssumeRole")
    assert call.serial == second.serial
    assert aws.gst_calls() == []


def test_source_without_serial_uses_the_role_profiles(aws: AwsHome, roles: dict[str, Role]) -> None:
    aws.write_config(
        "[profile alice]\nregion = eu-west-1\n"
        f"\n[profile admin]\nrole_arn = {roles['admin'].arn}\nsource_profile = alice\n"
        f"mfa_serial = {aws.device.serial}\n"
    )
    assert_process_json(
        aws.run("credential-process", "--profile", "admin", "--token-code", aws.code())
    )
    assert [call.serial for call in aws.gst_calls()] == [aws.device.serial]
    assert outcomes(aws, "AssumeRole") == ["ok"]


def test_source_profile_cycle_and_missing_source(aws: AwsHome) -> None:
    aws.add_config(
        "\n[profile a]\nrole_arn = arn:aws:iam::1:role/A\nsource_profile = b\n"
        "\n[profile b]\nrole_arn = arn:aws:iam::1:role/B\nsource_profile = a\n"
        "\n[profile c]\nrole_arn = arn:aws:iam::1:role/C\nsource_profile = gone\n"
    )
    started = time.monotonic()
    cycle = aws.run("credential-process", "--profile", "a")
    assert time.monotonic() - started < 10
    assert_clean_error(cycle, "source_profile cycle: a -> b -> a")
    missing = aws.run("credential-process", "--profile", "c")
    assert_clean_error(missing, "names source profile 'gone', which does not exist")


def _seconds_left(expiration: str) -> float:
    from datetime import datetime, timezone

    moment = datetime.strptime(expiration, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return (moment - datetime.now(timezone.utc)).total_seconds()
