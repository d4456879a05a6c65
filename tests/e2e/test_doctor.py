"""`doctor` against the emulator: every check can fail, and says how to fix it."""

from __future__ import annotations

import json
import time

from tests.conftest import AwsHome
from tests.sts_emulator import StsEmulator


def doctor(
    aws: AwsHome, *args: str, env: dict[str, str] | None = None
) -> tuple[int, dict[str, list[dict[str, str]]]]:
    result = aws.run("doctor", "--json", *args, env=env)
    assert "Traceback" not in result.stderr
    document = json.loads(result.stdout)
    assert document["ok"] is (result.returncode == 0)
    return result.returncode, document


def statuses(document: dict[str, list[dict[str, str]]]) -> dict[str, str]:
    return {check["check"]: check["status"] for check in document["checks"]}


def test_all_good(aws: AwsHome) -> None:
    aws.store_seed()
    status, document = doctor(aws, "--profile", "alice")
    assert status == 0, document
    found = statuses(document)
    assert found["clock"] == "ok"
    assert found["code source (alice)"] == "ok"
    assert found["cache folder"] == "ok"
    assert found["credential_process (dev)"] == "ok"


def test_human_output_names_the_fix(aws: AwsHome) -> None:
    result = aws.run("doctor", "--profile", "alice")
    assert result.returncode == 1
    assert "FAIL  code source (alice): no code source" in result.stdout
    assert "fix: run 'mfa-session totp set --profile alice'" in result.stdout


def test_clock_skew_is_reported(aws: AwsHome) -> None:
    aws.store_seed()
    with StsEmulator(clock=lambda: time.time() - 120) as skewed:
        status, document = doctor(
            aws, "--profile", "alice", env={"AWS_ENDPOINT_URL_STS": skewed.url}
        )
    assert status == 1
    (clock,) = [check for check in document["checks"] if check["check"] == "clock"]
    assert clock["status"] == "fail"
    assert "ahead of STS" in clock["message"]


def test_offline_is_said(aws: AwsHome) -> None:
    aws.store_seed()
    status, document = doctor(
        aws, "--profile", "alice", env={"AWS_ENDPOINT_URL_STS": "http://127.0.0.1:9"}
    )
    assert status == 0
    (clock,) = [check for check in document["checks"] if check["check"] == "clock"]
    assert clock["status"] == "skip" and "offline" in clock["message"]


def test_profile_problems(aws: AwsHome) -> None:
    aws.add_config(
        "\n[profile typo]\nmfa_serial = arn:aws:iam::12345:mfa/x\n"
        "\n[profile both]\nrole_arn = arn:aws:iam::1:role/R\nsource_profile = alice\n"
        "credential_process = mfa-session credential-process --profile alice\n"
        "\n[profile broken]\nmfa_process = exit 3\nmfa_serial = arn:aws:iam::123456789012:mfa/b\n"
        "\n[profile lost]\ncredential_process = /nowhere/mfa-session credential-process "
        "--profile alice\n"
    )
    with aws.credentials.open("a") as handle:
        for name in ("typo", "broken"):
            handle.write(
                f"[{name}]\naws_access_key_id = {aws.user.access_key_id}\n"
                f"aws_secret_access_key = {aws.user.secret_access_key}\n"
            )
    status, document = doctor(aws, "--offline")
    assert status == 1
    checks = document["checks"]
    by_message = {check["message"]: check for check in checks}
    assert any("is not an MFA device ARN" in message for message in by_message)
    assert any(
        c["status"] == "warn" and "both role_arn and credential_process" in c["message"]
        for c in checks
    )
    assert any(
        c["check"] == "code source (broken)" and "exit status 3" in c["message"] for c in checks
    )
    assert any(c["check"] == "credential_process (lost)" and c["status"] == "fail" for c in checks)
    assert_every_failure_has_a_fix(checks)


def test_missing_profile_and_unsafe_cache(aws: AwsHome) -> None:
    aws.cache_dir.mkdir(mode=0o700)
    aws.cache_dir.chmod(0o777)
    status, document = doctor(aws, "--profile", "nobody", "--offline")
    assert status == 1
    found = statuses(document)
    assert found["profile nobody"] == "fail"
    assert found["cache folder"] == "fail"
    assert_every_failure_has_a_fix(document["checks"])


def assert_every_failure_has_a_fix(checks: list[dict[str, str]]) -> None:
    for check in checks:
        if check["status"] == "fail":
            assert check["fix"], check
