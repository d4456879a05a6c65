"""`totp set|code|remove` and `status`, against a real keyring backend (keyrings.alt's
file) and the STS emulator: a stored seed means credential-process needs no prompt."""

from __future__ import annotations

import json
import time

import pexpect
import pyotp
import pytest

from tests.conftest import MFA_SESSION, NO_KEYRING, AwsHome
from tests.e2e.test_credential_process import assert_clean_error, assert_process_json


def codes_around_now(seed: str) -> set[str]:
    totp = pyotp.TOTP(seed)
    now = time.time()
    return {totp.at(now - 30), totp.at(now), totp.at(now + 30)}


def test_set_from_stdin_then_sessions_with_no_prompt(aws: AwsHome) -> None:
    aws.use_file_keyring()
    done = aws.run("totp", "set", "--profile", "alice", input=aws.device.seed.lower() + "\n")
    assert done.returncode == 0, done.stderr
    assert aws.device.serial in done.stdout and "keyrings.alt" in done.stdout
    assert aws.stored_seed() == aws.device.seed
    # `dev` runs mfa-session for alice: the same device, so the same seed.
    code = aws.run("totp", "code", "--profile", "dev")
    assert code.returncode == 0 and code.stdout.strip() in codes_around_now(aws.device.seed)
    # No terminal (a new session), no token code: only the keyring can answer.
    first = aws.run("credential-process", "--profile", "dev")
    assert_process_json(first)
    assert len(aws.gst_calls()) == 1
    for output in (done.stdout, done.stderr, code.stderr, first.stderr):
        assert aws.device.seed not in output.upper()
    assert aws.files_holding(aws.device.seed) == []


def test_an_otpauth_uri_is_stored_as_given(aws: AwsHome) -> None:
    aws.use_file_keyring()
    uri = pyotp.TOTP(aws.device.seed).provisioning_uri(name="alice", issuer_name="AWS")
    assert aws.run("totp", "set", "--profile", "alice", input=uri).returncode == 0
    assert aws.stored_seed() == uri
    code = aws.run("totp", "code", "--profile", "alice").stdout.strip()
    assert code in codes_around_now(aws.device.seed)


def test_set_at_a_hidden_prompt(aws: AwsHome) -> None:
    aws.use_file_keyring()
    child = pexpect.spawn(
        MFA_SESSION, ["totp", "set", "--profile", "alice"], env=aws.env, encoding="utf-8"
    )
    child.expect("TOTP seed .*hidden.*: ", timeout=30)
    child.sendline(aws.device.seed)
    child.expect(pexpect.EOF, timeout=30)
    child.close()
    assert child.exitstatus == 0, child.before
    assert aws.device.seed not in str(child.before)  # not echoed
    assert "stored the TOTP seed" in str(child.before)
    assert aws.stored_seed() == aws.device.seed


def test_replace_remove_and_what_is_left(aws: AwsHome) -> None:
    aws.use_file_keyring()
    other = pyotp.random_base32()
    aws.run("totp", "set", "--profile", "alice", input=other)
    replaced = aws.run("totp", "set", "--profile", "alice", input=aws.device.seed)
    assert "replaced the stored TOTP seed" in replaced.stdout
    assert aws.stored_seed() == aws.device.seed
    removed = aws.run("totp", "remove", "--profile", "alice")
    assert removed.returncode == 0 and "removed" in removed.stdout
    assert aws.stored_seed() is None
    assert_clean_error(aws.run("totp", "remove", "--profile", "alice"), "no TOTP seed is stored")
    assert_clean_error(
        aws.run("totp", "code", "--profile", "alice"),
        "no TOTP seed is stored",
        "mfa-session totp set --profile alice",
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("definitely-not-a-seed!", "not a valid TOTP seed"),
        ("my seed is JBSWY3DPEHPK3PXPK5QWC3DFMFZWG2LT", "more than a seed"),
        ("otpauth://hotp/AWS:alice?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&counter=0", "TOTP"),
        ("otpauth://totp/AWS:alice?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&digits=8", "8-digit"),
        ("", "no TOTP seed was given"),
    ],
)
def test_bad_seeds_are_refused_and_nothing_is_stored(
    aws: AwsHome, text: str, fragment: str
) -> None:
    aws.use_file_keyring()
    result = aws.run("totp", "set", "--profile", "alice", input=text)
    assert_clean_error(result, fragment)
    if text:
        assert text not in result.stderr
    assert aws.stored_seed() is None


def test_closed_or_binary_stdin_is_a_clean_error(aws: AwsHome) -> None:
    aws.use_file_keyring()
    closed = aws.run_command(["sh", "-c", f"{MFA_SESSION} totp set --profile alice <&-"])
    assert_clean_error(closed, "no TOTP seed was given")
    binary = aws.run_command(
        ["sh", "-c", f"printf '\\377\\376' | {MFA_SESSION} totp set --profile alice"],
        env={"PYTHONIOENCODING": "utf-8:strict"},
    )
    assert_clean_error(binary, "not text")
    assert aws.stored_seed() is None


def test_no_keyring_backend_says_how_to_get_one(aws: AwsHome) -> None:
    aws.env["PYTHON_KEYRING_BACKEND"] = NO_KEYRING
    result = aws.run("totp", "set", "--profile", "alice", input=aws.device.seed)
    assert_clean_error(result, "no OS keyring is available", "keyring-pass")
    assert aws.device.seed not in result.stderr
    assert_clean_error(aws.run("totp", "code", "--profile", "alice"), "no OS keyring")


def test_a_profile_without_a_device_is_refused(aws: AwsHome) -> None:
    aws.use_file_keyring()
    aws.add_config("\n[profile plain]\nregion = eu-west-1\n")
    result = aws.run("totp", "set", "--profile", "plain", input=aws.device.seed)
    assert result.returncode == 1 and "mfa-session: error:" in result.stderr
    assert_clean_error(aws.run("totp", "set", "--profile", "nobody", input="x"), "'nobody'")


def test_status_shows_each_profiles_code_source(aws: AwsHome) -> None:
    aws.use_file_keyring()
    aws.add_config("\n[profile scripted]\nmfa_serial = arn:aws:iam::123456789012:mfa/bot\n")
    aws.credentials.write_text(
        aws.credentials.read_text()
        + f"\n[scripted]\naws_access_key_id = {aws.user.access_key_id}\n"
        f"aws_secret_access_key = {aws.user.secret_access_key}\n"
    )
    aws.add_config("mfa_process = echo 123456\n")

    def sources() -> dict[str, str]:
        done = aws.run("status", "--json")
        assert done.returncode == 0, done.stderr
        document = json.loads(done.stdout)
        assert document["sessions"] == []
        return {row["profile"]: row["code_source"] for row in document["profiles"]}

    # status reads what the keyring holds from records, never the keyring itself.
    unknown = "keyring seed or prompt (not looked up yet)"
    assert sources() == {"alice": unknown, "dev": unknown, "scripted": "mfa_process"}
    aws.run("totp", "set", "--profile", "alice", input=aws.device.seed)
    assert sources() == {"alice": "keyring seed", "dev": "keyring seed", "scripted": "mfa_process"}
    table = aws.run("status").stdout
    assert "CODE FROM" in table and "keyring seed" in table and "no cached sessions" in table
    aws.run("totp", "remove", "--profile", "dev")
    assert sources()["alice"] == "prompt"
