"""`enroll`: the seed document's console steps against the emulator's IAM, then a
GetSessionToken with the new device; rollbacks; the root user's console-only path."""

from __future__ import annotations

import signal
import stat
import time

import pexpect
import pyotp
import pytest

from tests.conftest import MFA_SESSION, NO_KEYRING, AwsHome
from tests.e2e.test_credential_process import assert_clean_error, assert_process_json
from tests.sts_emulator import QR_CODE_PNG, StsEmulator, User

ACCOUNT = "123456789012"
BOB_CONFIG = """\
# my AWS setup
[default]
region = us-east-1

[profile bob]
# bob's IAM user: keys live in the credentials file
region = eu-west-1
output = json

# shared tooling, keep last
[profile tools]
role_arn = arn:aws:iam::123456789012:role/tools
source_profile = bob
"""
BOB_SERIAL = f"arn:aws:iam::{ACCOUNT}:mfa/bob"


@pytest.fixture
def bob(aws: AwsHome) -> User:
    """A new IAM user with keys and no MFA device yet, next to alice."""
    user = aws.emulator.add_user("bob", account=ACCOUNT)
    aws.credentials.write_text(
        aws.credentials.read_text() + f"\n[bob]\naws_access_key_id = {user.access_key_id}\n"
        f"aws_secret_access_key = {user.secret_access_key}\n"
    )
    aws.write_config(aws.config.read_text() + "\n" + BOB_CONFIG)
    aws.emulator.add_role(account=ACCOUNT, name="tools", trusted_users=[user])
    aws.use_file_keyring()
    return user


def devices_of(emulator: StsEmulator, name: str | None) -> list[str]:
    return [d.serial for d in emulator.virtual_devices() if d.user_name == name]


def unassigned(emulator: StsEmulator) -> list[str]:
    return devices_of(emulator, None)


def actions(emulator: StsEmulator) -> list[str]:
    return [call.action for call in emulator.calls() if call.action != "GetCallerIdentity"]


def test_enroll_then_a_session_with_the_new_device(aws: AwsHome, bob: User) -> None:
    before = aws.config.read_text()
    done = aws.run("enroll", "--profile", "bob")
    assert done.returncode == 0, done.stderr
    assert devices_of(aws.emulator, "bob") == [BOB_SERIAL]
    assert unassigned(aws.emulator) == []
    seed = next(d.seed for d in aws.emulator.virtual_devices() if d.serial == BOB_SERIAL)
    assert aws.stored_seed(BOB_SERIAL) == seed
    # The config changed by exactly one line, right after bob's last key; a backup was made.
    after = aws.config.read_text()
    line = f"mfa_serial = {BOB_SERIAL}\n"
    assert after == before.replace("output = json\n", "output = json\n" + line)
    backups = list(aws.config.parent.glob("config.*.bak"))
    assert len(backups) == 1 and backups[0].read_text() == before
    assert f"set mfa_serial of profile bob in {aws.config}" in done.stdout
    # The seed is nowhere but the keyring: not in output, argv, the cache or a file.
    assert seed not in done.stdout + done.stderr
    assert aws.files_holding(seed) == []
    # The two codes were used: the next session waits for a fresh step, then works.
    started = time.monotonic()
    session = aws.run("credential-process", "--profile", "tools")
    assert_process_json(session)
    assert time.monotonic() - started < 35
    assert [c.serial for c in aws.gst_calls()] == [BOB_SERIAL]  # type: ignore[attr-defined]
    assert [c.outcome for c in aws.emulator.calls("AssumeRole")] == ["ok"]


def test_a_second_device_needs_an_mfa_session_from_the_first(aws: AwsHome) -> None:
    """alice has a device: IAM refuses device changes without MFA, so enroll gets a
    session through the core with one code from the active device, then uses it."""
    aws.use_file_keyring()
    before = aws.config.read_text()
    done = aws.run(
        "enroll",
        "--profile",
        "alice",
        "--device-name",
        "alice-laptop",
        env={"MFA_SESSION_TOKEN_CODE": aws.code()},
    )
    assert done.returncode == 0, done.stderr
    new = f"arn:aws:iam::{ACCOUNT}:mfa/alice-laptop"
    assert sorted(devices_of(aws.emulator, "alice")) == sorted([aws.device.serial, new])
    assert [c.serial for c in aws.gst_calls()] == [aws.device.serial]  # type: ignore[attr-defined]
    assert f"it was {aws.device.serial}" in done.stdout
    assert aws.config.read_text() == before.replace(aws.device.serial, new)
    # The device changes were signed with the session, not the long-term key.
    changes = ("CreateVirtualMFADevice", "EnableMFADevice")
    signers = [c.access_key_id[:4] for c in aws.emulator.calls() if c.action in changes]
    assert signers == ["ASIA", "ASIA"]


def test_enroll_in_a_terminal_with_typed_codes_and_a_png(aws: AwsHome, bob: User) -> None:
    png = aws.root / "bob-qr.png"
    child = pexpect.spawn(
        MFA_SESSION,
        ["enroll", "--profile", "bob", "--no-store", "--qr-png", str(png)],
        env=aws.env,
        encoding="utf-8",
        dimensions=(60, 120),
    )
    child.expect("first code: ", timeout=30)
    shown = str(child.before)
    assert "scan this with your authenticator app" in shown and "\u2588" in shown
    # A typo is asked again; a wrong pair too: the QR code was already scanned.
    child.sendline("12345")
    child.expect("a code is six digits", timeout=30)
    child.expect("first code: ", timeout=30)
    child.sendline("000000")
    child.expect("next code", timeout=30)
    child.sendline("111111")
    child.expect("IAM rejected those codes; try 2 of 3", timeout=30)
    child.expect("first code: ", timeout=30)
    seed = next(d.seed for d in aws.emulator.virtual_devices() if d.serial == BOB_SERIAL)
    totp = pyotp.TOTP(seed)
    now = time.time()
    child.sendline(totp.at(now - 30))
    child.expect("next code", timeout=30)
    child.sendline(totp.at(now))
    child.expect(pexpect.EOF, timeout=30)
    child.close()
    assert child.exitstatus == 0, child.before
    assert devices_of(aws.emulator, "bob") == [BOB_SERIAL]
    assert aws.stored_seed(BOB_SERIAL) is None  # --no-store
    assert png.read_bytes() == QR_CODE_PNG
    assert stat.S_IMODE(png.stat().st_mode) == 0o600
    assert f"mfa_serial = {BOB_SERIAL}" in aws.config.read_text()


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_an_interrupt_at_the_code_prompt_rolls_back(aws: AwsHome, bob: User, how: str) -> None:
    before = aws.config.read_text()
    child = pexpect.spawn(
        MFA_SESSION, ["enroll", "--profile", "bob", "--no-store"], env=aws.env, encoding="utf-8"
    )
    child.expect("first code: ", timeout=30)
    assert unassigned(aws.emulator) == [BOB_SERIAL]
    if how == "ctrl-c":
        child.sendintr()
    else:
        child.kill(signal.SIGTERM)
    child.expect(pexpect.EOF, timeout=30)
    child.close()
    assert child.exitstatus == 130
    output = str(child.before)
    assert "enrollment interrupted; rolled back" in output and "Traceback" not in output
    assert aws.emulator.virtual_devices()[-1].serial != BOB_SERIAL
    assert unassigned(aws.emulator) == [] and devices_of(aws.emulator, "bob") == []
    assert aws.config.read_text() == before


@pytest.mark.parametrize(
    ("action", "code", "message", "fragment"),
    [
        (
            "EnableMFADevice",
            "InvalidAuthenticationCode",
            "Authentication code for device is not valid.",
            "IAM rejected the two MFA codes",
        ),
        ("EnableMFADevice", "AccessDenied", "User: bob is not authorized", "IAM denied"),
    ],
)
def test_a_failed_enable_deletes_the_device_and_the_seed(
    aws: AwsHome, bob: User, action: str, code: str, message: str, fragment: str
) -> None:
    before = aws.config.read_text()
    aws.emulator.fail_next(action, code, message, status=403)
    result = aws.run("enroll", "--profile", "bob")
    assert_clean_error(
        result, fragment, "rolled back", "was deleted", "removed from the keyring", progress=True
    )
    assert "DeleteVirtualMFADevice" in actions(aws.emulator)
    assert unassigned(aws.emulator) == [] and devices_of(aws.emulator, "bob") == []
    assert aws.stored_seed(BOB_SERIAL) is None
    assert aws.config.read_text() == before
    assert list(aws.config.parent.glob("config.*.bak")) == []


def test_a_lost_answer_to_enable_keeps_the_enabled_device(aws: AwsHome, bob: User) -> None:
    """IAM enabled the device but the answer was lost: rolling back would delete the
    seed of a working device, so enroll checks, keeps it and finishes."""
    aws.emulator.fail_next("EnableMFADevice", "ServiceUnavailable", "try later", 503, after=True)
    done = aws.run("enroll", "--profile", "bob")
    assert done.returncode == 0, done.stderr
    assert "had enabled" in done.stdout
    assert devices_of(aws.emulator, "bob") == [BOB_SERIAL]
    assert aws.stored_seed(BOB_SERIAL) is not None
    assert f"mfa_serial = {BOB_SERIAL}" in aws.config.read_text()
    assert len(aws.emulator.calls("EnableMFADevice")) == 1  # never retried


def test_a_lost_answer_to_create_deletes_what_it_made(aws: AwsHome, bob: User) -> None:
    aws.emulator.fail_next("CreateVirtualMFADevice", "InternalFailure", "oops", 500, after=True)
    result = aws.run("enroll", "--profile", "bob")
    assert_clean_error(
        result, "IAM failed in iam:CreateVirtualMFADevice", "was deleted", progress=True
    )
    assert len(aws.emulator.calls("CreateVirtualMFADevice")) == 1
    assert unassigned(aws.emulator) == []
    # Nothing is left in the way of the next try.
    assert aws.run("enroll", "--profile", "bob").returncode == 0


def test_when_the_device_cannot_be_deleted_its_seed_is_kept(aws: AwsHome, bob: User) -> None:
    aws.emulator.fail_next("EnableMFADevice", "AccessDenied", "User: bob is not authorized", 403)
    aws.emulator.fail_next("DeleteVirtualMFADevice", "AccessDenied", "not authorized", 403)
    result = aws.run("enroll", "--profile", "bob")
    assert_clean_error(
        result, "could not be deleted", "seed was kept", "delete-virtual-mfa-device", progress=True
    )
    assert unassigned(aws.emulator) == [BOB_SERIAL]
    assert aws.stored_seed(BOB_SERIAL) is not None


def test_access_denied_on_create_changes_nothing(aws: AwsHome, bob: User) -> None:
    aws.emulator.fail_next("CreateVirtualMFADevice", "AccessDenied", "not authorized", 403)
    result = aws.run("enroll", "--profile", "bob")
    assert_clean_error(result, "IAM denied iam:CreateVirtualMFADevice", "iam:EnableMFADevice")
    assert "DeleteVirtualMFADevice" not in actions(aws.emulator)
    assert unassigned(aws.emulator) == []


def test_a_taken_device_name_is_named(aws: AwsHome, bob: User) -> None:
    carol = aws.emulator.add_user("carol", account=ACCOUNT)
    aws.emulator.add_mfa_device(carol, name="bob")
    result = aws.run("enroll", "--profile", "bob")
    assert_clean_error(result, "named 'bob' already exists", "--device-name", progress=True)
    assert devices_of(aws.emulator, "bob") == []
    again = aws.run("enroll", "--profile", "bob", "--device-name", "bob-cli")
    assert again.returncode == 0, again.stderr
    assert devices_of(aws.emulator, "bob") == [f"arn:aws:iam::{ACCOUNT}:mfa/bob-cli"]


def test_the_root_user_is_guided_to_the_console(aws: AwsHome) -> None:
    root = aws.emulator.add_user("root", account="999988887777", root=True)
    aws.credentials.write_text(
        f"[owner]\naws_access_key_id = {root.access_key_id}\n"
        f"aws_secret_access_key = {root.secret_access_key}\n"
    )
    aws.use_file_keyring()
    result = aws.run("enroll", "--profile", "owner")
    assert result.returncode == 1
    assert "mfa-session: error: AWS lets only the console enable MFA for the root user" in (
        result.stderr
    )
    guidance = result.stdout
    for fragment in (
        "ROOT user of account 999988887777",
        "Show secret key",
        "mfa-session totp set --profile owner",
        "mfa-session totp code --profile owner",
        "mfa_serial = arn:aws:iam::999988887777:mfa/",
        "Root access keys should not exist",
    ):
        assert fragment in guidance
    assert actions(aws.emulator) == []  # nothing asked of IAM


def test_checks_that_fail_before_anything_is_created(aws: AwsHome, bob: User) -> None:
    aws.env["PYTHON_KEYRING_BACKEND"] = NO_KEYRING
    assert_clean_error(aws.run("enroll", "--profile", "bob"), "no OS keyring", "--no-store")
    aws.use_file_keyring()
    no_terminal = aws.run("enroll", "--profile", "bob", "--no-store")
    assert no_terminal.returncode == 2 and "--no-store needs a terminal" in no_terminal.stderr
    existing = aws.root / "qr.png"
    existing.write_bytes(b"mine")
    taken = aws.run("enroll", "--profile", "bob", "--qr-png", str(existing))
    assert taken.returncode == 2 and "already exists" in taken.stderr
    assert existing.read_bytes() == b"mine"
    assert_clean_error(aws.run("enroll", "--profile", "tools"), "no long-term access keys", "bob")
    aws.cache_dir.mkdir(mode=0o700, exist_ok=True)
    aws.cache_dir.chmod(0o777)
    assert_clean_error(aws.run("enroll", "--profile", "bob"), "writable by group or others")
    aws.cache_dir.chmod(0o700)
    aws.config.write_text("stray line\n" + aws.config.read_text())
    assert_clean_error(aws.run("enroll", "--profile", "bob"), "cannot parse")
    assert aws.emulator.calls() == []


def test_a_user_with_all_eight_devices_is_told_before_creating(aws: AwsHome, bob: User) -> None:
    for number in range(8):
        aws.emulator.add_mfa_device(bob, name=f"bob-{number}")
    result = aws.run("enroll", "--profile", "bob")
    assert_clean_error(result, "already has the 8 MFA devices")
    assert "CreateVirtualMFADevice" not in actions(aws.emulator)
