"""`keys add|import|remove|rotate`: long-term keys out of plaintext, against the
emulator's IAM (two keys at most, MFA required, new keys that take a while to work)
and a real keyring backend (keyrings.alt's file, under the test's HOME)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pexpect
import pytest

from tests.conftest import MFA_SESSION, AwsHome, Result, wait_for_fresh_step
from tests.e2e.test_credential_process import (
    assert_clean_error,
    assert_no_secrets,
    assert_process_json,
)
from tests.sts_emulator import Device, User

CREDENTIALS = """\
# work and play
[default]
aws_access_key_id = AKIADEFAULTDEFAULT00
aws_secret_access_key = defaultdefaultdefaultdefaultdefaultdefaul

[alice]
# her IAM user
aws_access_key_id = {key_id}
aws_secret_access_key = {secret}
region = eu-west-1

[zed]
aws_access_key_id = AKIAZEDZEDZEDZEDZED0
aws_secret_access_key = zedzedzedzedzedzedzedzedzedzedzedzedzedz
"""


@pytest.fixture
def keyring(aws: AwsHome) -> AwsHome:
    """A real keyring backend, and alice's keys in the credentials file with neighbours."""
    aws.use_file_keyring()
    aws.credentials.write_text(
        CREDENTIALS.format(key_id=aws.user.access_key_id, secret=aws.user.secret_access_key)
    )
    return aws


def stored_keys(aws: AwsHome, profile: str = "alice") -> str | None:
    return aws.stored_seed(f"access-key:{profile}")  # any keyring entry, read the same way


def holders(aws: AwsHome, secret: str) -> list[Path]:
    """Files under HOME (cache and data folders included) holding the secret, except the
    keyring's own store."""
    return [path for path in aws.files_holding(secret) if path.name != "keyring_pass.cfg"]


def add_keys(aws: AwsHome, profile: str, user: User, *extra: str) -> Result:
    """`keys add` given the user's keys as two lines on stdin."""
    keys = f"{user.access_key_id}\n{user.secret_access_key}\n"
    return aws.run("keys", "add", "--profile", profile, *extra, input=keys)


def session(aws: AwsHome, *extra: str, code: str | None = None) -> Result:
    args = ["credential-process", "--profile", "alice", *extra]
    if code is not None:
        args += ["--token-code", code]
    return aws.run(*args)


# ------------------------------------------------------------------ import


def test_import_moves_the_keys_and_keeps_every_other_byte(keyring: AwsHome) -> None:
    aws = keyring
    before = aws.credentials.read_bytes()
    config_before = aws.config.read_text()
    result = aws.run("keys", "import", "--profile", "alice")
    assert result.returncode == 0, result.stderr
    assert f"moved access key {aws.user.access_key_id} of profile alice" in result.stdout
    expected = before.replace(
        f"aws_access_key_id = {aws.user.access_key_id}\n"
        f"aws_secret_access_key = {aws.user.secret_access_key}\n".encode(),
        b"",
    )
    assert aws.credentials.read_bytes() == expected
    assert aws.config.read_text() == config_before.replace(
        "region = eu-west-1\n", "region = eu-west-1\nmfa_session_keys = keyring\n", 1
    )
    assert aws.user.secret_access_key in (stored_keys(aws) or "")
    assert holders(aws, aws.user.secret_access_key) == []
    assert not list(aws.root.rglob("*.bak")) and not list(aws.root.rglob(".*.tmp"))
    # And every command works as before: a session with the keyring's keys.
    assert_process_json(session(aws, code=aws.code()))
    assert_process_json(aws.run("credential-process", "--profile", "dev"))


def test_import_keeps_crlf_and_drops_an_emptied_section(keyring: AwsHome) -> None:
    aws = keyring
    text = (
        "[other]\r\nx = 1\r\n\r\n[alice]\r\n"
        f"aws_access_key_id = {aws.user.access_key_id}\r\n"
        f"aws_secret_access_key={aws.user.secret_access_key}\r\n\r\n[last]\r\ny = 2\r\n"
    )
    aws.credentials.write_bytes(text.encode())
    result = aws.run("keys", "import", "--profile", "alice")
    assert result.returncode == 0, result.stderr
    assert aws.credentials.read_bytes() == b"[other]\r\nx = 1\r\n\r\n[last]\r\ny = 2\r\n"


def test_import_from_the_config_file_is_one_write(keyring: AwsHome) -> None:
    aws = keyring
    aws.credentials.unlink()
    aws.write_config(
        f"[profile alice]\nmfa_serial = {aws.device.serial}\n"
        f"aws_access_key_id = {aws.user.access_key_id}\n"
        f"aws_secret_access_key = {aws.user.secret_access_key}\nregion = eu-west-1\n"
    )
    result = aws.run("keys", "import", "--all")
    assert result.returncode == 0, result.stderr
    assert aws.config.read_text() == (
        f"[profile alice]\nmfa_serial = {aws.device.serial}\nregion = eu-west-1\n"
        "mfa_session_keys = keyring\n"
    )
    assert holders(aws, aws.user.secret_access_key) == []
    assert_process_json(session(aws, code=aws.code()))


def test_import_all_moves_every_profile(keyring: AwsHome) -> None:
    aws = keyring
    result = aws.run("keys", "import", "--all")
    assert result.returncode == 0, result.stderr
    for profile in ("default", "alice", "zed"):
        assert f"of profile {profile} from" in result.stdout
    assert "aws_secret_access_key" not in aws.credentials.read_text()
    assert aws.credentials.read_text().startswith("# work and play\n")


def test_keys_in_both_places_are_refused_until_import_runs_again(keyring: AwsHome) -> None:
    aws = keyring
    assert aws.run("keys", "import", "--profile", "alice").returncode == 0
    aws.credentials.write_text(  # pasted back by hand, say
        aws.credentials.read_text().replace(
            "[alice]\n",
            f"[alice]\naws_access_key_id = {aws.user.access_key_id}\n"
            f"aws_secret_access_key = {aws.user.secret_access_key}\n",
        )
    )
    result = session(aws, code=aws.code())
    assert_clean_error(result, "has keys in", "in the keyring", "keys import --profile alice")
    assert aws.run("keys", "import", "--profile", "alice").returncode == 0
    assert_process_json(session(aws, code=aws.code(1)))


# ------------------------------------------------------------------ add and remove


def fresh_profile(aws: AwsHome, name: str = "bob") -> tuple[User, Device]:
    """An IAM user with a device, named in the config, whose keys are in no file."""
    user = aws.emulator.add_user(name)
    device = aws.emulator.add_mfa_device(user)
    aws.add_config(f"\n[profile {name}]\nmfa_serial = {device.serial}\nregion = eu-west-1\n")
    return user, device


def test_add_reads_two_lines_checks_them_and_stores_them(keyring: AwsHome) -> None:
    aws = keyring
    bob, device = fresh_profile(aws)
    result = add_keys(aws, "bob", bob)
    assert result.returncode == 0, result.stderr
    assert f"stored access key {bob.access_key_id} of {bob.arn}" in result.stdout
    assert [
        call.action for call in aws.emulator.calls() if call.access_key_id == bob.access_key_id
    ] == ["GetCallerIdentity"]
    assert "mfa_session_keys = keyring" in aws.config.read_text()
    assert bob.secret_access_key not in result.stdout + result.stderr
    assert holders(aws, bob.secret_access_key) == []
    code = aws.code_for(device)
    assert_process_json(aws.run("credential-process", "--profile", "bob", "--token-code", code))


def test_add_creates_the_profile_when_the_config_has_none(keyring: AwsHome) -> None:
    aws = keyring
    carol = aws.emulator.add_user("carol")
    result = add_keys(aws, "carol", carol, "--offline")
    assert result.returncode == 0, result.stderr
    assert "[profile carol]\nmfa_session_keys = keyring\n" in aws.config.read_text()
    assert aws.emulator.calls("GetCallerIdentity") == []  # --offline: no call


@pytest.mark.parametrize(
    ("stdin", "fragment"),
    [
        ("", "give the access key id and the secret"),
        ("AKIAONLYTHEID0000000\n", "give the access key id and the secret"),
        ("ASIATEMPORARY0000000\n" + "s" * 40 + "\n", "temporary credentials"),
        ("akiawrongcase0000000\n" + "s" * 40 + "\n", "is not one"),
        ("AKIARIGHTSHAPE000000\nshort-secret\n", "40 characters"),
    ],
)
def test_add_refuses_what_is_not_a_key(keyring: AwsHome, stdin: str, fragment: str) -> None:
    aws = keyring
    fresh_profile(aws)
    result = aws.run("keys", "add", "--profile", "bob", input=stdin)
    assert result.returncode in (1, 2)
    assert fragment in result.stderr and "Traceback" not in result.stderr
    assert "short-secret" not in result.stderr
    assert stored_keys(aws, "bob") is None


def test_add_refuses_keys_aws_rejects_and_stores_nothing(keyring: AwsHome) -> None:
    aws = keyring
    bob, _ = fresh_profile(aws)
    wrong = "x" * 40
    result = aws.run("keys", "add", "--profile", "bob", input=f"{bob.access_key_id}\n{wrong}\n")
    assert_clean_error(result, "does not match its access key id")
    assert wrong not in result.stderr
    assert stored_keys(aws, "bob") is None
    assert "mfa_session_keys" not in aws.config.read_text()


def test_add_refuses_a_profile_with_keys_in_a_file_or_borrowing_them(keyring: AwsHome) -> None:
    aws = keyring
    keys = f"{aws.user.access_key_id}\n{aws.user.secret_access_key}\n"
    result = aws.run("keys", "add", "--profile", "alice", input=keys)
    assert_clean_error(result, "already has keys in", "keys import --profile alice")
    result = aws.run("keys", "add", "--profile", "dev", input=keys)
    assert result.returncode == 2
    assert "keys add --profile alice" in result.stderr


def test_add_with_no_keyring_backend_stores_nothing(aws: AwsHome) -> None:
    bob, _ = fresh_profile(aws)
    result = add_keys(aws, "bob", bob)
    assert_clean_error(result, "no OS keyring is available", "pipx inject mfa-session keyring-pass")
    assert "mfa_session_keys" not in aws.config.read_text()


def test_add_when_the_backend_fails_mid_write(aws: AwsHome) -> None:
    aws.use_failing_keyring("RaisingOnWrite")
    bob, _ = fresh_profile(aws)
    result = add_keys(aws, "bob", bob)
    assert_clean_error(result, "RaisingOnWrite) failed: KeyringLocked", "[redacted]")
    assert bob.secret_access_key not in result.stderr
    assert "mfa_session_keys" not in aws.config.read_text()


def test_remove_asks_on_a_terminal_and_needs_yes_without_one(keyring: AwsHome) -> None:
    aws = keyring
    assert aws.run("keys", "import", "--profile", "alice").returncode == 0
    result = aws.run("keys", "remove", "--profile", "alice")
    assert result.returncode == 2 and "--yes" in result.stderr
    child = aws.spawn("keys", "remove", "--profile", "alice", timeout=30)
    child.expect_exact(f"remove access key {aws.user.access_key_id} of profile alice")
    child.sendline("n")
    child.expect(pexpect.EOF)
    assert stored_keys(aws) is not None
    done = aws.run("keys", "remove", "--profile", "alice", "--yes")
    assert done.returncode == 0, done.stderr
    assert "still exists at AWS" in done.stdout
    assert stored_keys(aws) is None
    assert "mfa_session_keys" not in aws.config.read_text()
    assert_clean_error(session(aws, code=aws.code()), "has no long-term access keys")


# ------------------------------------------------------------------ rotate


def rotate(aws: AwsHome, *extra: str, code: str | None = None) -> Result:
    env = {"MFA_SESSION_TOKEN_CODE": code or aws.code()}
    return aws.run("keys", "rotate", "--profile", "alice", *extra, env=env)


def key_ids(aws: AwsHome) -> list[str]:
    return [key.access_key_id for key in aws.emulator.access_keys(aws.user)]


@pytest.mark.parametrize("where", ["keyring", "file"])
def test_rotate_puts_the_new_key_where_the_old_one_was(keyring: AwsHome, where: str) -> None:
    aws = keyring
    if where == "keyring":
        assert aws.run("keys", "import", "--profile", "alice").returncode == 0
    old = aws.user.access_key_id
    first = assert_process_json(session(aws, code=aws.code()))
    aws.emulator.key_activation_delay(2)
    credentials_before = aws.credentials.read_text()
    result = rotate(aws, code=aws.code(1))
    assert result.returncode == 0, result.stderr
    (new,) = key_ids(aws)
    assert new != old
    for line in ("created access key", "AWS accepts", f"deleted the old key {old}"):
        assert line in result.stdout
    assert "forgot 1 cached session" in result.stdout
    assert "waiting for AWS to accept the new key" in result.stderr  # no terminal: one line
    secret = new_secret(aws, where, new)
    assert secret not in result.stdout + result.stderr
    if where == "keyring":
        assert holders(aws, secret) == []
        assert aws.credentials.read_text() == credentials_before
    else:
        assert aws.credentials.read_text() == credentials_before.replace(old, new).replace(
            aws.user.secret_access_key, secret
        )
        assert holders(aws, secret) == [aws.credentials]
    # The old key's session is forgotten; the next one is made with the new key.
    again = assert_process_json(session(aws, code=aws.code(1)))
    assert again != first
    assert aws.gst_calls()[-1].access_key_id == new
    status = aws.run("status")
    assert "0 days old" in status.stdout


def assert_failed_after_progress(result: Result, *fragments: str) -> None:
    """Steps on stdout, the countdown's one line on stderr (no terminal), then one error."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith(("mfa-session:", "hint:")) for line in lines), lines
    assert [line for line in lines if line.startswith("mfa-session: error: ")] == [
        line for line in lines if "error" in line.split(":")[1]
    ]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def new_secret(aws: AwsHome, where: str, key_id: str) -> str:
    if where == "keyring":
        import json

        entry = json.loads(stored_keys(aws) or "{}")
        assert entry["AccessKeyId"] == key_id
        return str(entry["SecretAccessKey"])
    lines = aws.credentials.read_text().split("[alice]", 1)[1].splitlines()
    return next(line.split("=", 1)[1].strip() for line in lines if "secret" in line)


def test_a_second_key_blocks_rotation_and_is_named(keyring: AwsHome) -> None:
    aws = keyring
    other = aws.emulator.add_access_key(aws.user)
    result = rotate(aws)
    assert_clean_error(result, f"a second access key, {other.access_key_id}", "delete-access-key")
    assert len(key_ids(aws)) == 2 and aws.emulator.calls("CreateAccessKey") == []


def test_a_refused_create_changes_nothing(keyring: AwsHome) -> None:
    aws = keyring
    before = aws.credentials.read_bytes()
    aws.emulator.fail_next("CreateAccessKey", "ServiceFailure", "Service failed.", 500)
    result = rotate(aws)
    assert result.returncode == 1 and "CreateAccessKey" in result.stderr
    assert key_ids(aws) == [aws.user.access_key_id]
    assert aws.credentials.read_bytes() == before


def test_a_new_key_that_never_works_is_deleted_and_the_old_one_kept(keyring: AwsHome) -> None:
    aws = keyring
    before = aws.credentials.read_bytes()
    aws.emulator.key_activation_delay(600)
    started = time.monotonic()
    result = rotate(aws, "--wait", "3")
    assert time.monotonic() - started < 20
    assert_failed_after_progress(result, "did not accept the new key", "was deleted again")
    assert f"Your key {aws.user.access_key_id} is unchanged and works" in result.stderr
    assert key_ids(aws) == [aws.user.access_key_id]
    assert aws.credentials.read_bytes() == before
    assert_process_json(session(aws))  # the MFA session of the old key still serves


def test_a_keyring_that_fails_to_store_deletes_the_new_key(keyring: AwsHome) -> None:
    aws = keyring
    assert aws.run("keys", "import", "--profile", "alice").returncode == 0
    aws.use_failing_keyring("ReadOnlyFile")
    result = rotate(aws)
    assert_clean_error(result, "ReadOnlyFile) failed", "was deleted again", progress=True)
    assert key_ids(aws) == [aws.user.access_key_id]
    assert aws.user.access_key_id in (stored_keys(aws) or "")
    assert_process_json(session(aws))


def test_a_lost_create_answer_finds_the_key_it_made_and_deletes_it(keyring: AwsHome) -> None:
    """CreateAccessKey was carried out but its answer never came: the key exists at AWS
    all the same, and only a listing can find it."""
    aws = keyring
    before = aws.credentials.read_bytes()
    aws.emulator.fail_next("CreateAccessKey", "InternalFailure", "oops", 500, after=True)
    result = rotate(aws)
    assert_clean_error(result, "was deleted again", f"Your key {aws.user.access_key_id} is")
    assert [call.outcome for call in aws.emulator.calls("CreateAccessKey")] == ["InternalFailure"]
    assert len(aws.emulator.calls("DeleteAccessKey")) == 1
    assert key_ids(aws) == [aws.user.access_key_id]
    assert aws.credentials.read_bytes() == before


def test_a_keyring_that_cuts_the_new_key_gets_the_old_one_back(keyring: AwsHome) -> None:
    """The store took the new key but kept it cut short: the old key is put back (and
    read back) before the new one is deleted."""
    aws = keyring
    assert aws.run("keys", "import", "--profile", "alice").returncode == 0
    flag = aws.root / "cut-once"
    flag.touch()
    aws.use_failing_keyring("Cutting")
    aws.env["KEYRING_CUT_ONCE"] = str(flag)
    result = rotate(aws)
    assert_clean_error(result, "did not keep the keys as given", "was deleted again", progress=True)
    assert not flag.exists()  # the new key's write was the one cut
    assert key_ids(aws) == [aws.user.access_key_id]
    assert json.loads(stored_keys(aws) or "{}") == {
        "AccessKeyId": aws.user.access_key_id,
        "SecretAccessKey": aws.user.secret_access_key,
    }
    assert_process_json(session(aws))


def test_a_keyring_that_keeps_neither_key_whole_loses_no_key_at_aws(keyring: AwsHome) -> None:
    """Every write is cut: the old key cannot be put back, so neither key is deleted."""
    aws = keyring
    assert aws.run("keys", "import", "--profile", "alice").returncode == 0
    aws.use_failing_keyring("Cutting")
    result = rotate(aws)
    assert_clean_error(result, "could not be put back", "neither was deleted", progress=True)
    keys = key_ids(aws)
    assert len(keys) == 2 and aws.user.access_key_id in keys
    assert f"delete {keys[1]}" in result.stderr  # the hint names the new, unused key
    assert_no_secrets(aws, result.stdout, result.stderr)


def test_a_credentials_file_that_cannot_be_written_deletes_the_new_key(
    keyring: AwsHome,
) -> None:
    aws = keyring
    before = aws.credentials.read_bytes()
    folder = str(aws.credentials.parent)
    subprocess.run(["mount", "--bind", folder, folder], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", folder], check=True)
        result = rotate(aws)
    finally:
        subprocess.run(["umount", "-l", folder], check=False)
    assert_clean_error(result, "cannot write", "was deleted again", progress=True)
    assert key_ids(aws) == [aws.user.access_key_id]
    assert aws.credentials.read_bytes() == before


def test_an_old_key_that_cannot_be_deleted_is_named_with_what_to_run(keyring: AwsHome) -> None:
    aws = keyring
    aws.emulator.fail_next("DeleteAccessKey", "ServiceFailure", "Service failed.", 500)
    result = rotate(aws)
    assert_clean_error(
        result, "is stored and works", f"old key {aws.user.access_key_id}", progress=True
    )
    assert f"--access-key-id {aws.user.access_key_id}" in result.stderr
    assert len(key_ids(aws)) == 2
    assert aws.user.access_key_id not in aws.credentials.read_text()


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_rotation_deletes_the_new_key(keyring: AwsHome, signal_number: int) -> None:
    aws = keyring
    before = aws.credentials.read_bytes()
    aws.emulator.key_activation_delay(600)
    process = subprocess.Popen(
        [MFA_SESSION, "keys", "rotate", "--profile", "alice"],
        env={**aws.env, "MFA_SESSION_TOKEN_CODE": aws.code()},
        cwd=aws.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(key_ids(aws)) < 2:
        time.sleep(0.1)
    assert len(key_ids(aws)) == 2  # the new key exists; now interrupt the wait
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode in (1, 130), stderr
    assert "rotation stopped (interrupted); the new key" in stderr
    assert key_ids(aws) == [aws.user.access_key_id]
    assert aws.credentials.read_bytes() == before


@pytest.mark.slow
def test_rotation_that_needs_a_fresh_code_waits_for_the_next_step(keyring: AwsHome) -> None:
    """The session was made with this step's code: rotation must not reuse it."""
    aws = keyring
    aws.store_seed()
    wait_for_fresh_step(margin=15)  # the rotation must reach its code within this step
    assert_process_json(session(aws))  # spends this step's code
    assert aws.run("clear", "--all").returncode == 0
    started = time.time()
    step = int(started // 30)
    result = aws.run("keys", "rotate", "--profile", "alice", timeout=90)
    assert result.returncode == 0, result.stderr
    assert "already used" in result.stderr and "next code" in result.stderr
    assert [call.outcome for call in aws.gst_calls()] == ["ok", "ok"]
    assert int(aws.gst_calls()[-1].time // 30) > step
    assert len(key_ids(aws)) == 1


def test_status_and_the_hit_never_open_the_keyring(keyring: AwsHome) -> None:
    """With the keys in a keyring that hangs, status and a cache hit still answer."""
    aws = keyring
    assert aws.run("keys", "import", "--profile", "alice").returncode == 0
    first = assert_process_json(session(aws, code=aws.code()))
    aws.use_failing_keyring("Hanging")
    started = time.monotonic()
    assert assert_process_json(session(aws)) == first
    status = aws.run("status")
    assert status.returncode == 0, status.stderr
    assert "keyring (" + aws.user.access_key_id + ")" in status.stdout
    assert time.monotonic() - started < 10


def test_a_rejected_keyring_key_says_how_to_replace_it_there(keyring: AwsHome) -> None:
    aws = keyring
    assert aws.run("keys", "import", "--profile", "alice").returncode == 0
    aws.emulator.deactivate_key(aws.user)
    result = session(aws, code=aws.code())
    assert_clean_error(result, "AWS does not accept access key", "keys add --profile alice")
    assert "credentials file" not in result.stderr


def test_keys_and_seed_in_one_keyring_are_called_one_factor_either_way(
    keyring: AwsHome,
) -> None:
    """Whichever comes second (the seed after the keys, the keys after the seed), the
    person is told that one unlocked keyring now holds both factors."""
    aws = keyring
    imported = aws.run("keys", "import", "--profile", "alice")
    assert imported.returncode == 0, imported.stderr
    assert "both factors" not in imported.stdout + imported.stderr  # no seed yet
    seeded = aws.run("totp", "set", "--profile", "alice", input=aws.device.seed + "\n")
    assert seeded.returncode == 0, seeded.stderr
    assert "holds both factors" in seeded.stdout  # its report, where the rest of it goes
    assert aws.run("keys", "remove", "--profile", "alice", "--yes").returncode == 0
    added = add_keys(aws, "alice", aws.user)
    assert added.returncode == 0, added.stderr
    assert "holds both factors" in added.stdout
    assert_no_secrets(aws, seeded.stdout, seeded.stderr, added.stdout, added.stderr)
