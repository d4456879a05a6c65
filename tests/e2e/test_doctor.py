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
    assert found["STS (alice)"] == "ok"
    assert found["clock"] == "ok"
    assert found["code source (alice)"] == "ok"
    assert found["cache folder"] == "ok"
    assert found["keyring"] == "ok"
    assert found["credential_process (dev)"] == "ok"
    assert found["keys (alice)"] == "warn"  # plaintext keys: a warning, not a failure
    assert [c["call"] for c in calls(aws)] == ["GetCallerIdentity"]  # one call, no MFA


def calls(aws: AwsHome) -> list[dict[str, str]]:
    return [{"call": call.action} for call in aws.emulator.calls()]


def test_each_finding_once_per_key_profile(aws: AwsHome) -> None:
    aws.store_seed()
    aws.add_config(
        "\n[profile prod]\ncredential_process = mfa-session credential-process "
        "--profile alice --role-arn arn:aws:iam::210987654321:role/Admin\n"
    )
    result = aws.run("doctor")
    assert result.returncode == 0, result.stdout
    for check in ("code source (alice)", "keys (alice)", "STS (alice)"):
        assert result.stdout.count(f" {check}: ") == 1, result.stdout
    assert len(aws.emulator.calls("GetCallerIdentity")) == 1


def test_human_output_names_the_fix_and_no_keyring_means_no_totp_set(aws: AwsHome) -> None:
    result = aws.run("doctor", "--profile", "alice")
    assert result.returncode == 1
    assert "FAIL  code source (alice): no code source" in result.stdout
    assert "totp set" not in result.stdout  # it would fail: there is no keyring
    assert "fix: set mfa_process in the profile" in result.stdout
    assert "WARN  keyring: no keyring backend works here" in result.stdout
    # The recipe for this machine: pass, gpg and keyring-pass are installed (CI installs
    # them), so it skips those steps; there is no password store in this HOME yet.
    assert "keyring_pass.PasswordStoreBackend" in result.stdout
    assert "pass init" in result.stdout
    assert "apt-get install" not in result.stdout and "[headless]" not in result.stdout
    assert "fix: move it into the keyring: mfa-session keys import --profile alice" in (
        result.stdout
    )


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


def test_unreachable_sts_and_rejected_keys_fail(aws: AwsHome) -> None:
    aws.store_seed()
    status, document = doctor(
        aws, "--profile", "alice", env={"AWS_ENDPOINT_URL_STS": "http://127.0.0.1:9"}
    )
    assert status == 1
    (sts,) = [c for c in document["checks"] if c["check"] == "STS (alice)"]
    assert sts["status"] == "fail" and "cannot reach STS at http://127.0.0.1:9" in sts["message"]
    aws.emulator.deactivate_key(aws.user)
    status, document = doctor(aws, "--profile", "alice")
    assert status == 1
    (sts,) = [c for c in document["checks"] if c["check"] == "STS (alice)"]
    assert "refused access key" in sts["message"] and "InvalidClientTokenId" in sts["message"]
    assert_every_failure_has_a_fix(document["checks"])


def test_offline_sends_nothing_and_never_opens_the_keyring(aws: AwsHome) -> None:
    aws.use_failing_keyring("Hanging")
    aws.env["MFA_SESSION_KEYRING_TIMEOUT"] = "30"
    started = time.monotonic()
    status, document = doctor(aws, "--profile", "alice", "--offline")
    assert time.monotonic() - started < 10
    found = statuses(document)
    assert found["STS (alice)"] == "skip" and found["keyring"] == "skip"
    assert aws.emulator.calls() == []
    assert status == 0, document


def test_missing_mfa_serial_suggests_enroll(aws: AwsHome) -> None:
    aws.write_config("[profile alice]\nregion = eu-west-1\n")
    status, document = doctor(aws, "--profile", "alice", "--offline")
    assert status == 1
    (profile,) = [c for c in document["checks"] if c["check"] == "profile alice"]
    assert "mfa-session enroll --profile alice" in str(profile["fix"])


def test_key_age_from_iam_and_the_one_factor_warning(aws: AwsHome) -> None:
    aws.store_seed()
    assert aws.run("keys", "import", "--profile", "alice").returncode == 0
    assert aws.run("credential-process", "--profile", "alice").returncode == 0  # cached
    aws.emulator.set_key_create_date(aws.user.access_key_id, time.time() - 100 * 86400)
    status, document = doctor(aws, "--profile", "alice")
    found = {c["check"]: c for c in document["checks"]}
    assert found["keys (alice)"]["status"] == "ok"
    assert "100 days old" in found["key age (alice)"]["message"]
    assert "keys rotate --profile alice" in str(found["key age (alice)"]["fix"])
    assert found["one factor (alice)"]["status"] == "warn"
    assert "one-factor-in-disguise" in str(found["one factor (alice)"]["fix"])
    assert status == 0
    # The age is remembered: status shows it without asking IAM again.
    listed = len(aws.emulator.calls("ListAccessKeys"))
    assert "100 days old" in aws.run("status").stdout
    assert len(aws.emulator.calls("ListAccessKeys")) == listed


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


def test_a_silent_iam_keeps_to_the_sts_budget(aws: AwsHome) -> None:
    """With a cached MFA session doctor asks IAM for the key's age; IAM hanging costs no
    more than MFA_SESSION_STS_TIMEOUT, and the age is just unknown."""
    aws.store_seed()
    code = aws.code()
    assert aws.run("credential-process", "--profile", "alice", "--token-code", code).returncode == 0
    aws.emulator.sabotage_next("ListAccessKeys", "hang", times=5)
    started = time.monotonic()
    status, document = doctor(aws, "--profile", "alice", env={"MFA_SESSION_STS_TIMEOUT": "2"})
    assert time.monotonic() - started < 12  # IAM alone would take its fixed 30 s
    assert status == 0, document
    assert statuses(document)["STS (alice)"] == "ok"
    assert [c["call"] for c in calls(aws)].count("ListAccessKeys") >= 1


def test_offline_with_no_keyring_configured_does_not_suggest_totp_set(aws: AwsHome) -> None:
    """PYTHON_KEYRING_BACKEND names keyring's 'fail' backend: doctor --offline sees that
    without opening anything, and suggests what works instead of `totp set`."""
    assert aws.env["PYTHON_KEYRING_BACKEND"] == "keyring.backends.fail.Keyring"
    status, document = doctor(aws, "--profile", "alice", "--offline")
    found = {check["check"]: check for check in document["checks"]}
    assert found["keyring"]["status"] == "warn"
    assert "totp set" not in json.dumps(document)
    assert found["code source (alice)"]["fix"] == (
        "set mfa_process in the profile (there is no keyring for a seed)"
    )
    assert status == 1 and aws.emulator.calls() == []
