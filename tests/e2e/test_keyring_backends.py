"""Keys and seeds in real keyring services, through the installed command and the STS
emulator: a Secret Service (gnome-keyring) behind keyring's default backend, and the
headless recipe of docs/security.md#headless-machines (pass + gpg-agent, keyring-pass),
locked and unlocked, with and without a terminal."""

from __future__ import annotations

import io
import json
import subprocess
import time
from collections.abc import Callable

import pexpect

from tests.conftest import AWS_CLI, MFA_SESSION, AwsHome, Result
from tests.e2e.test_credential_process import assert_clean_error, assert_process_json
from tests.e2e.test_totp import codes_around_now
from tests.sts_emulator import Device, User

# The fixtures secret_service and pass_store (a plugin, so pytest rewrites its asserts).
pytest_plugins = ["tests.keyring_services"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from tests.keyring_services import PassStore, SecretService


def keys_only_in_the_keyring(aws: AwsHome, extra: str = "") -> None:
    """alice's keys in no file: a config with her profile and device, no credentials."""
    aws.credentials.unlink()
    aws.write_config(
        f"[profile alice]\nmfa_serial = {aws.device.serial}\nregion = eu-west-1\n" + extra
    )


def add_keys(aws: AwsHome, profile: str, user: User) -> Result:
    """`keys add` as a script would: two lines on stdin."""
    done = aws.run(
        "keys",
        "add",
        "--profile",
        profile,
        input=f"{user.access_key_id}\n{user.secret_access_key}\n",
    )
    assert done.returncode == 0, done.stderr
    assert user.secret_access_key not in done.stdout + done.stderr
    return done


def set_seed(aws: AwsHome, profile: str, device: Device) -> None:
    done = aws.run("totp", "set", "--profile", profile, input=device.seed + "\n")
    assert done.returncode == 0, done.stderr


def profile_rows(aws: AwsHome) -> dict[str, dict[str, str]]:
    done = aws.run("status", "--json", timeout=10)
    assert done.returncode == 0, done.stderr
    return {row["profile"]: row for row in json.loads(done.stdout)["profiles"]}


def test_secret_service_behind_the_default_backend(
    aws: AwsHome, secret_service: SecretService
) -> None:
    keys_only_in_the_keyring(aws)
    add_keys(aws, "alice", aws.user)
    entry = secret_service.stored("access-key:alice")  # in the Secret Service itself
    assert entry is not None and aws.user.access_key_id in entry

    first = aws.run("credential-process", "--profile", "alice", "--token-code", aws.code())
    session = assert_process_json(first)
    assert [call.access_key_id for call in aws.gst_calls()] == [aws.user.access_key_id]

    set_seed(aws, "alice", aws.device)
    assert secret_service.stored(aws.device.serial) == aws.device.seed
    code = aws.run("totp", "code", "--profile", "alice")
    assert code.returncode == 0 and code.stdout.strip() in codes_around_now(aws.device.seed)
    assert profile_rows(aws)["alice"]["keys_in"] == "keyring"
    assert aws.files_holding(aws.user.secret_access_key) == []
    assert aws.files_holding(aws.device.seed) == []

    secret_service.lock()
    hit = aws.run("credential-process", "--profile", "alice", timeout=10)
    assert assert_process_json(hit)["AccessKeyId"] == session["AccessKeyId"]
    assert profile_rows(aws)["alice"]["keys_in"] == "keyring"  # records only: no unlock
    assert len(aws.gst_calls()) == 1

    assert aws.run("clear", "--profile", "alice", timeout=10).returncode == 0
    started = time.monotonic()
    miss = aws.run("credential-process", "--profile", "alice", timeout=30)
    assert time.monotonic() - started < 5
    assert_clean_error(miss, "the keyring", "KeyringLocked")
    assert len(aws.gst_calls()) == 1


def test_pass_keeps_keys_and_seed_encrypted(aws: AwsHome, pass_store: PassStore) -> None:
    keys_only_in_the_keyring(aws)
    added = add_keys(aws, "alice", aws.user)
    assert "keyring_pass.PasswordStoreBackend" in added.stdout
    set_seed(aws, "alice", aws.device)
    assert pass_store.entry("access-key:alice").is_file()
    assert pass_store.entry(aws.device.serial).is_file()

    # No token code, no terminal: the keys and the code both come from pass.
    assert_process_json(aws.run("credential-process", "--profile", "alice"))
    assert [call.access_key_id for call in aws.gst_calls()] == [aws.user.access_key_id]
    assert profile_rows(aws)["alice"]["keys_in"] == "keyring"
    for secret in (aws.user.secret_access_key, aws.device.seed):
        assert aws.files_holding(secret) == []  # the .gpg files are encrypted


def test_pass_locked_asks_once_on_the_terminal_of_an_aws_cli_call(
    aws: AwsHome, pass_store: PassStore
) -> None:
    bob = aws.emulator.add_user("bob", account="123456789012")
    bobs_device = aws.emulator.add_mfa_device(bob)
    keys_only_in_the_keyring(
        aws,
        f"\n[profile bob]\nmfa_serial = {bobs_device.serial}\nregion = eu-west-1\n"
        + "".join(
            f"\n[profile {name}-cli]\ncredential_process = mfa-session credential-process "
            f"--profile {name}\nregion = eu-west-1\n"
            for name in ("alice", "bob")
        ),
    )
    for profile, user, device in (("alice", aws.user, aws.device), ("bob", bob, bobs_device)):
        add_keys(aws, profile, user)
        set_seed(aws, profile, device)
    pass_store.lock()  # a new login session: gpg-agent knows no passphrase

    def aws_cli(profile: str) -> tuple[Callable[[], str], pexpect.spawn]:
        """The AWS CLI on a terminal (a pty: its controlling terminal), and what it shows."""
        transcript = io.StringIO()
        child = pexpect.spawn(
            AWS_CLI,
            ["sts", "get-caller-identity", "--profile", profile, "--output", "text"],
            env={"TERM": "dumb", **aws.env},
            encoding="utf-8",
            timeout=30,
        )
        child.logfile_read = transcript
        return transcript.getvalue, child

    # The CLI captures mfa-session's pipes; pinentry asks on the terminal (GPG_TTY).
    transcript, child = aws_cli("alice-cli")
    child.expect("Passphrase:")
    child.sendline(pass_store.passphrase)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, transcript()
    assert aws.user.arn in transcript()
    assert transcript().count("Passphrase:") == 1  # keys and seed: one keyring call
    assert pass_store.passphrase not in transcript()  # pinentry does not echo it
    assert pass_store.unlocked()

    # Another miss (bob's session) right after: gpg-agent remembers, nobody is asked.
    transcript, child = aws_cli("bob-cli")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, transcript()
    assert bob.arn in transcript() and "Passphrase" not in transcript()
    assert len(aws.gst_calls()) == 2


def test_pass_locked_without_a_terminal_fails_cleanly_and_lets_go(
    aws: AwsHome, pass_store: PassStore
) -> None:
    keys_only_in_the_keyring(aws)
    add_keys(aws, "alice", aws.user)
    set_seed(aws, "alice", aws.device)
    pass_store.lock()

    timeout = 3
    started = time.monotonic()
    with subprocess.Popen(
        [MFA_SESSION, "credential-process", "--profile", "alice"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**aws.env, "MFA_SESSION_KEYRING_TIMEOUT": str(timeout)},
        cwd=aws.root,
        text=True,
        start_new_session=True,  # no controlling terminal
    ) as process:
        # Both pipes reach EOF: nothing the keyring started still holds them.
        stdout, stderr = process.communicate(timeout=timeout + 10)
    assert time.monotonic() - started < timeout + 2
    assert_clean_error(Result(process.returncode, stdout, stderr), "the keyring")
    assert aws.gst_calls() == []
    assert profile_rows(aws)["alice"]["keys_in"] == "keyring"  # status: records only
