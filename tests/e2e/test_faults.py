"""Faults are part of the spec: broken and silent STS answers, a hung keyring or
mfa_process, waiters behind a failing or dead lock holder, full and read-only disks,
a swapped cache folder, core dumps. Each ends in one clear line, in bounded time,
with nothing lost and no secret shown."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pexpect
import pytest

from tests.conftest import MFA_SESSION, AwsHome, Result, read_session_file
from tests.e2e.test_credential_process import (
    assert_clean_error,
    assert_no_secrets,
    assert_process_json,
)
from tests.e2e.test_enroll import BOB_SERIAL, bob, unassigned  # noqa: F401 - a fixture
from tests.sts_emulator import User


def issued_secrets(aws: AwsHome) -> list[str]:
    """Every secret the emulator ever handed out, and the user's own."""
    found = [aws.user.secret_access_key, aws.device.seed]
    for session in aws.emulator.sessions():
        found += [session.secret_access_key, session.session_token]
    return found


def assert_nothing_secret(aws: AwsHome, *outputs: str) -> None:
    for output in outputs:
        for value in issued_secrets(aws):
            assert value not in output


def assert_waiter_failed(result: Result, *fragments: str) -> None:
    """A process that waited on the lock: progress lines, then one error line, exit 1."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines and all(line.startswith(("mfa-session:", "hint:")) for line in lines), lines
    errors = [line for line in lines if line.startswith("mfa-session: error: ")]
    assert len(errors) == 1, lines
    assert "Traceback" not in result.stderr and result.stdout == ""
    for fragment in fragments:
        assert fragment in result.stderr


def no_sessions(aws: AwsHome) -> bool:
    return not list(aws.cache_dir.glob("session-*"))


# ------------------------------------------------------------------ answers that lie


@pytest.mark.parametrize("kind", ["truncate", "malformed", "missing-field"])
def test_an_unreadable_answer_is_one_line_and_shows_no_secret(aws: AwsHome, kind: str) -> None:
    aws.emulator.sabotage_next("GetSessionToken", kind)
    result = aws.run("credential-process", "--profile", "alice", "--token-code", aws.code())
    assert_clean_error(result, "STS sent an answer that could not be read (GetSessionToken)")
    assert [call.outcome for call in aws.gst_calls()] == [kind]
    assert_nothing_secret(aws, result.stderr)
    assert no_sessions(aws)
    # --debug shows where, scrubbed the same way: no body, no botocore text.
    aws.emulator.sabotage_next("GetSessionToken", kind)
    result = aws.run(
        "--debug", "credential-process", "--profile", "alice", "--token-code", aws.code(1)
    )
    assert result.returncode == 1 and "Traceback" in result.stderr
    assert "could not be read (GetSessionToken)" in result.stderr
    assert "<Credentials>" not in result.stderr
    assert "Unable to parse" not in result.stderr  # botocore's text, which quotes the body
    assert_nothing_secret(aws, result.stderr)
    assert no_sessions(aws)


def test_an_already_expired_session_is_refused_and_never_cached(aws: AwsHome) -> None:
    aws.emulator.sabotage_next("GetSessionToken", "expired")
    code = aws.code()
    result = aws.run("credential-process", "--profile", "alice", "--token-code", code)
    assert_clean_error(result, "that ended, by this computer's clock", "check this computer's")
    assert_nothing_secret(aws, result.stderr)
    assert no_sessions(aws)
    # And no SDK got it to try: the AWS CLI fails at once, with one call made.
    aws.emulator.sabotage_next("GetSessionToken", "expired")
    cli = aws.run_command(
        [
            str(Path(sys.executable).parent / "aws"),
            "sts",
            "get-caller-identity",
            "--profile",
            "dev",
        ],
        env={"MFA_SESSION_TOKEN_CODE": aws.code(1)},
    )
    assert cli.returncode != 0
    assert [call.outcome for call in aws.gst_calls()] == ["expired", "expired"]
    assert_nothing_secret(aws, cli.stdout, cli.stderr)


def test_sts_failing_on_its_side_is_retried_then_one_line_and_the_code_is_kept(
    aws: AwsHome,
) -> None:
    code = aws.code()
    aws.emulator.fail_next("GetSessionToken", "InternalFailure", "internal error", 500, times=3)
    result = aws.run("credential-process", "--profile", "alice", "--token-code", code)
    assert_clean_error(result, "STS failed on its side (InternalFailure)", "try again in a minute")
    assert [call.outcome for call in aws.gst_calls()] == ["InternalFailure"] * 3  # retried
    assert no_sessions(aws)
    # STS never took the code: the same code still works, and one 500 is just retried.
    aws.emulator.fail_next("GetSessionToken", "InternalFailure", "internal error", 500)
    assert_process_json(aws.run("credential-process", "--profile", "alice", "--token-code", code))
    assert [call.outcome for call in aws.gst_calls()][3:] == ["InternalFailure", "ok"]


def test_a_lost_answer_is_said_and_its_spent_code_is_not_tried_again(aws: AwsHome) -> None:
    """STS made the session and the connection dropped: botocore's retry repeats the
    code, which STS refuses; the error says what happened, and the code counts as used."""
    code = aws.code()
    aws.emulator.sabotage_next("GetSessionToken", "drop")
    result = aws.run("credential-process", "--profile", "alice", "--token-code", code)
    assert_clean_error(result, "on a retry: the first attempt may have used it", "next one")
    assert [call.outcome for call in aws.gst_calls()] == ["drop", "AccessDenied"]
    assert_nothing_secret(aws, result.stderr)
    assert no_sessions(aws)
    again = aws.run("credential-process", "--profile", "alice", "--token-code", code)
    assert_clean_error(again, "already used")
    assert len(aws.gst_calls()) == 2


def role_session(aws: AwsHome, role_arn: str) -> Result:
    """alice's role session, the MFA session under it made with the current code."""
    return aws.run(
        "credential-process",
        "--profile",
        "alice",
        "--role-arn",
        role_arn,
        "--token-code",
        aws.code(),
    )


@pytest.mark.parametrize("action", ["GetSessionToken", "AssumeRole"])
def test_a_session_ending_within_a_minute_is_refused(aws: AwsHome, action: str) -> None:
    """Less than a minute left (not past): a clock ahead, or a proxy that rewrote it."""
    role = aws.emulator.add_role(name="Admin", trusted_users=[aws.user])
    aws.emulator.cap_lifetime(action, 30)
    result = role_session(aws, role.arn)
    assert_clean_error(result, f"STS sent a session ({action}) that ends in ", "clock")
    assert_nothing_secret(aws, result.stderr)
    if action == "GetSessionToken":
        assert no_sessions(aws)
    else:  # the MFA session under it was sound, and is kept
        assert len(list(aws.cache_dir.glob("session-*.json"))) == 1


def test_an_unreadable_role_answer(aws: AwsHome) -> None:
    role = aws.emulator.add_role(name="Admin", trusted_users=[aws.user])
    aws.emulator.sabotage_next("AssumeRole", "malformed")
    result = role_session(aws, role.arn)
    assert_clean_error(result, "STS sent an answer that could not be read (AssumeRole)")
    assert_nothing_secret(aws, result.stderr)
    # The MFA session itself was fine and is kept: the role comes without a new code.
    again = aws.run("credential-process", "--profile", "alice", "--role-arn", role.arn)
    assert_process_json(again)
    assert len(aws.gst_calls()) == 1


def test_an_unreadable_iam_answer_during_enroll_keeps_the_seed_secret(
    aws: AwsHome,
    bob: User,  # noqa: F811 - the fixture
) -> None:
    aws.emulator.sabotage_next("CreateVirtualMFADevice", "truncate")
    result = aws.run("enroll", "--profile", "bob", "--no-qr")
    assert result.returncode == 1
    assert "IAM sent an answer that could not be read (CreateVirtualMFADevice)" in result.stderr
    seeds = [device.seed for device in aws.emulator.virtual_devices()]
    for seed in seeds:
        assert seed not in result.stdout + result.stderr
    assert unassigned(aws.emulator) == []  # the device the lost answer made is gone again


# ------------------------------------------------------------------ STS that is silent


def timed_session(aws: AwsHome, env: dict[str, str]) -> tuple[Result, float]:
    """alice's session with the current code, and the seconds it took."""
    started = time.monotonic()
    result = aws.run(
        "credential-process", "--profile", "alice", "--token-code", aws.code(), env=env
    )
    return result, time.monotonic() - started


@pytest.mark.parametrize(
    "retries",
    [{}, {"AWS_RETRY_MODE": "legacy"}, {"AWS_MAX_ATTEMPTS": "6"}],
    ids=["standard", "legacy", "six-attempts"],
)
def test_silent_sts_is_given_up_within_the_budget(aws: AwsHome, retries: dict[str, str]) -> None:
    """The budget holds whatever retries the user configured: fewer attempts, not more time."""
    aws.emulator.sabotage_next("GetSessionToken", "hang", times=10)
    result, elapsed = timed_session(aws, {"MFA_SESSION_STS_TIMEOUT": "6", **retries})
    assert_clean_error(result, f"cannot reach STS at {aws.emulator.url}: no answer in time")
    assert elapsed < 6 + 4, elapsed
    assert 1 <= len(aws.gst_calls()) <= 3


def test_an_answer_that_trickles_in_is_given_up_within_the_budget(aws: AwsHome) -> None:
    """Each byte comes within any read timeout, so only a deadline on the whole call ends
    it: a proxy that passes answers on a byte at a time must not hold a call for minutes."""
    aws.emulator.sabotage_next("GetSessionToken", "drip", times=3)
    result, elapsed = timed_session(aws, {"MFA_SESSION_STS_TIMEOUT": "3"})
    assert_clean_error(result, f"cannot reach STS at {aws.emulator.url}: no answer in time")
    assert elapsed < 3 + 4, elapsed
    assert_nothing_secret(aws, result.stderr)
    assert no_sessions(aws)


def test_twelve_processes_behind_a_silent_sts_all_end_within_45_s(aws: AwsHome) -> None:
    """The holder gives up after the default 30 s; the waiters fail at once with its reason
    instead of each waiting 30 s more (or 300 s for the lock)."""
    aws.use_file_keyring()
    aws.store_seed()
    aws.emulator.sabotage_next("GetSessionToken", "hang", times=50)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(
            pool.map(
                lambda _: aws.run("credential-process", "--profile", "alice", timeout=60),
                range(12),
            )
        )
    elapsed = time.monotonic() - started
    assert elapsed < 45, elapsed
    holders = [r for r in results if "another mfa-session" not in r.stderr]
    waiters = [r for r in results if "another mfa-session" in r.stderr]
    assert len(holders) == 1 and len(waiters) == 11, [r.stderr for r in results]
    assert_clean_error(holders[0], f"cannot reach STS at {aws.emulator.url}")
    for waiter in waiters:
        assert_waiter_failed(waiter, "could not get a session", "cannot reach STS")
    assert any("is waiting for STS (GetSessionToken)" in w.stderr for w in waiters)
    assert len(aws.gst_calls()) <= 3  # the holder's attempts only


def test_fifty_cold_starts_make_one_call(aws: AwsHome) -> None:
    aws.use_file_keyring()
    aws.store_seed()
    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(
            pool.map(
                lambda _: aws.run("credential-process", "--profile", "alice", timeout=120),
                range(50),
            )
        )
    documents = [assert_process_json(result) for result in results]
    assert all(document == documents[0] for document in documents)
    assert [call.outcome for call in aws.gst_calls()] == ["ok"]


class Waiter:
    """credential-process for alice without a terminal, started while another process
    holds the device lock, and known to be waiting on it (it said so) before it returns."""

    def __init__(self, aws: AwsHome, *args: str) -> None:
        self.process = subprocess.Popen(
            [MFA_SESSION, "credential-process", "--profile", "alice", *args],
            env=aws.env,
            cwd=aws.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.process.stderr is not None
        ready, _, _ = select.select([self.process.stderr], [], [], 20)
        assert ready, "the waiter said nothing within 20 s"
        self.said = self.process.stderr.readline()
        assert "waiting: another mfa-session" in self.said, self.said

    def communicate(self, timeout: float) -> tuple[str, str]:
        """Its stdout and its whole stderr, the line read already included."""
        stdout, stderr = self.process.communicate(timeout=timeout)
        return stdout, self.said + stderr

    @property
    def returncode(self) -> int | None:
        return self.process.returncode


def test_a_waiter_takes_over_when_the_holder_dies(aws: AwsHome) -> None:
    holder = aws.spawn("credential-process", "--profile", "alice", timeout=30)
    holder.expect_exact(f"MFA code for {aws.device.serial}")
    waiter = Waiter(aws, "--token-code", aws.code())
    os.kill(holder.pid, signal.SIGKILL)
    started = time.monotonic()
    stdout, stderr = waiter.communicate(timeout=30)
    assert time.monotonic() - started < 5
    assert waiter.returncode == 0, stderr
    assert_process_json(Result(0, stdout, stderr))
    assert f"(pid {holder.pid}) is asking for a code on its terminal" in stderr


def test_a_holders_failure_with_a_role_is_not_a_waiters_failure(aws: AwsHome) -> None:
    """The holder makes the MFA session, then fails on its role: a waiter that wants only
    the MFA session finds it in the cache instead of taking the role's failure."""
    role = aws.emulator.add_role(name="Deploy").arn
    aws.emulator.sabotage_next("AssumeRole", "hang", times=10)
    aws.env["MFA_SESSION_STS_TIMEOUT"] = "3"
    holder = aws.spawn("credential-process", "--profile", "alice", "--role-arn", role)
    holder.expect_exact(f"MFA code for {aws.device.serial}")
    waiter = Waiter(aws)  # no code source of its own
    holder.sendline(aws.code())
    holder.expect(pexpect.EOF)
    assert "cannot reach STS" in (holder.before or "")
    stdout, stderr = waiter.communicate(timeout=30)
    assert waiter.returncode == 0, stderr
    document = assert_process_json(Result(0, stdout, stderr))
    assert document["AccessKeyId"] == aws.emulator.sessions()[0].access_key_id
    assert len(aws.gst_calls()) == 1


def test_a_holders_own_code_failure_lets_a_waiter_use_its_own(aws: AwsHome) -> None:
    """STS rejected every code typed at the holder's prompt: that is the holder's own
    failure, so a waiter given a code makes the session instead of failing with it."""
    holder = aws.spawn("credential-process", "--profile", "alice")
    holder.expect_exact(f"MFA code for {aws.device.serial}")
    waiter = Waiter(aws, "--token-code", aws.code())
    for _ in range(3):  # the prompt's tries, each with a code long expired
        holder.sendline(aws.code(-10))
    holder.expect(pexpect.EOF)
    holder.close()
    assert holder.exitstatus == 1
    stdout, stderr = waiter.communicate(timeout=30)
    assert waiter.returncode == 0, stderr
    assert_process_json(Result(0, stdout, stderr))
    assert [call.outcome for call in aws.gst_calls()] == ["AccessDenied"] * 3 + ["ok"]


def test_a_holders_keyring_failure_is_every_waiters(aws: AwsHome) -> None:
    """A keyring that fails fails the waiters too (they would read the same one): at
    once, with the holder's reason, and no second attempt at it."""
    aws.use_failing_keyring("Hanging")
    aws.env["MFA_SESSION_KEYRING_TIMEOUT"] = "5"  # time for the waiter to line up
    holder = subprocess.Popen(
        [MFA_SESSION, "credential-process", "--profile", "alice"],
        env=aws.env,
        cwd=aws.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    aws.wait_for_lock_holder("reading the keyring")
    waiter = Waiter(aws)
    _, holder_stderr = holder.communicate(timeout=30)
    started = time.monotonic()
    _, stderr = waiter.communicate(timeout=30)
    assert time.monotonic() - started < 2  # not another 5 s keyring wait
    assert "did not answer within 5 s" in holder_stderr
    assert_waiter_failed(
        Result(waiter.returncode, "", stderr), "could not get a session", "did not answer within"
    )


# ------------------------------------------------------------------ keyring and mfa_process


def test_a_hanging_keyring_is_bounded_and_named(aws: AwsHome) -> None:
    aws.use_failing_keyring("Hanging")
    aws.env["MFA_SESSION_KEYRING_TIMEOUT"] = "2"
    started = time.monotonic()
    result = aws.run("credential-process", "--profile", "alice")
    assert time.monotonic() - started < 8
    assert_clean_error(
        result, "the keyring did not answer within 2 s", "MFA_SESSION_KEYRING_TIMEOUT"
    )
    # With a terminal, the person is told and asked for the code instead.
    child = aws.spawn("credential-process", "--profile", "alice", timeout=20)
    child.expect_exact(
        "the keyring did not answer within 2 s (is it locked?); asking for the code instead"
    )
    child.expect_exact(f"MFA code for {aws.device.serial}")
    child.sendline(aws.code())
    child.expect_exact('"Version": 1')
    child.expect(pexpect.EOF)


def test_a_failing_keyring_is_named_not_mistaken_for_a_missing_seed(aws: AwsHome) -> None:
    aws.use_failing_keyring("Raising")
    result = aws.run("credential-process", "--profile", "alice")
    assert_clean_error(
        result,
        "the keyring (tests.keyring_backends.Raising) failed: KeyringLocked: "
        "Failed to unlock the collection!",
    )
    assert "totp set" not in result.stderr
    # A backend whose error quotes what it was given still shows no seed.
    aws.use_failing_keyring("RaisingOnWrite")
    stored = aws.run("totp", "set", "--profile", "alice", input=aws.device.seed)
    assert_clean_error(stored, "RaisingOnWrite) failed: KeyringLocked", "[redacted]")
    assert aws.device.seed not in stored.stderr


def test_a_hung_mfa_process_is_ended_with_its_whole_group(aws: AwsHome) -> None:
    pid_file = aws.root / "sleeper.pid"
    aws.write_config(
        f"[profile alice]\nmfa_serial = {aws.device.serial}\nregion = eu-west-1\n"
        f"mfa_process = sleep 300 & echo $! > {pid_file}; wait\n"
    )
    started = time.monotonic()
    result = aws.run(
        "credential-process",
        "--profile",
        "alice",
        env={"MFA_SESSION_MFA_PROCESS_TIMEOUT": "2"},
    )
    assert time.monotonic() - started < 10
    assert_clean_error(result, "printed no code within 2 s", "with everything it started")
    sleeper = int(pid_file.read_text())
    assert not process_alive(sleeper), "the mfa_process's child outlived it"


def process_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def test_an_mfa_process_may_ask_on_the_terminal(aws: AwsHome) -> None:
    """It runs in its own process group, which gets the terminal while it runs."""
    aws.write_config(
        f"[profile alice]\nmfa_serial = {aws.device.serial}\nregion = eu-west-1\n"
        "mfa_process = printf 'token code? ' > /dev/tty; read code < /dev/tty; echo $code\n"
    )
    child = aws.spawn("credential-process", "--profile", "alice", timeout=20)
    child.expect_exact("token code? ")
    child.sendline(aws.code())
    child.expect_exact('"Version": 1')
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


# ------------------------------------------------------------------ disks that say no


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs: a real ENOSPC (CI runs as root, so chmod would not stop a write)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert mounted.returncode == 0, f"these tests need mount (root): {mounted.stderr}"
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> None:
    descriptor = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(descriptor, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(descriptor)
    # Small files too, until not even an empty one fits.
    for index in range(100000):
        try:
            (disk / f"f{index}").write_bytes(b"x" * 64)
        except OSError:
            break


def test_a_full_disk_still_serves_a_cached_session(aws: AwsHome, small_disk: Path) -> None:
    aws.env["MFA_SESSION_CACHE_DIR"] = str(small_disk / "cache")
    first = assert_process_json(
        aws.run("credential-process", "--profile", "alice", "--token-code", aws.code())
    )
    fill(small_disk)
    for profile, environment in (("dev", {}), ("alice", {"AWS_PROFILE": "dev"})):
        served = aws.run("credential-process", "--profile", profile, env=environment)
        assert assert_process_json(served) == first
        assert served.stderr == ""
    exported = aws.run("export", "--profile", "dev", "--format", "json")
    assert exported.returncode == 0, exported.stderr


def test_a_full_disk_on_a_miss_still_returns_the_new_session(
    aws: AwsHome, small_disk: Path
) -> None:
    aws.env["MFA_SESSION_CACHE_DIR"] = str(small_disk / "cache")
    (small_disk / "cache").mkdir(mode=0o700)
    fill(small_disk)
    result = aws.run("credential-process", "--profile", "alice", "--token-code", aws.code())
    document = assert_process_json(result)
    assert "could not save the session" in result.stderr
    assert "No space left on device" in result.stderr
    assert document["SecretAccessKey"] not in result.stderr
    assert [call.outcome for call in aws.gst_calls()] == ["ok"]


def test_a_read_only_cache_folder_serves_hits_and_misses(aws: AwsHome) -> None:
    first = assert_process_json(
        aws.run("credential-process", "--profile", "alice", "--token-code", aws.code())
    )
    cache = str(aws.cache_dir)
    subprocess.run(["mount", "--bind", cache, cache], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", cache], check=True)
        hit = aws.run("credential-process", "--profile", "dev")
        assert assert_process_json(hit) == first
        role = aws.emulator.add_role(name="ReadOnly", trusted_users=[aws.user])
        miss = aws.run("credential-process", "--profile", "alice", "--role-arn", role.arn)
        assert_process_json(miss)
        assert "could not save the session" in miss.stderr
        assert "without the device lock" in miss.stderr
    finally:
        subprocess.run(["umount", "-l", cache], check=False)


def test_a_killed_writers_temp_file_is_removed(aws: AwsHome) -> None:
    assert_process_json(
        aws.run("credential-process", "--profile", "alice", "--token-code", aws.code())
    )
    dead = aws.cache_dir / f".session-0.json.{dead_pid()}.00ff00ff.tmp"
    dead.write_text("live secrets of a writer that was killed")
    live = aws.cache_dir / f".session-1.json.{os.getpid()}.00ff00ff.tmp"
    live.write_text("a write still in progress")
    role = aws.emulator.add_role(name="Any", trusted_users=[aws.user])
    assert_process_json(aws.run("credential-process", "--profile", "alice", "--role-arn", role.arn))
    assert not dead.exists() and live.exists()
    cleared = aws.run("clear", "--all")
    assert cleared.returncode == 0
    assert not live.exists()


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


# ------------------------------------------------------------------ the cache folder


def test_missing_parents_are_made_private_even_under_umask_000(aws: AwsHome) -> None:
    cache = aws.root / "shared" / "a" / "b" / "cache"
    for environment in ({"MFA_SESSION_CACHE_DIR": str(cache)}, {"MFA_SESSION_CACHE_DIR": ""}):
        result = aws.run_command(
            [
                "sh",
                "-c",
                f'umask 000; exec "{MFA_SESSION}" credential-process --profile alice '
                f"--token-code {aws.code(len(aws.gst_calls()))}",
            ],
            env=environment,
        )
        assert_process_json(result)
    for folder in (
        aws.root / "shared",
        aws.root / "shared" / "a",
        aws.root / "shared" / "a" / "b",
        cache,
        aws.root / ".cache",
        aws.root / ".cache" / "mfa-session",
    ):
        assert folder.stat().st_mode & 0o777 == 0o700, folder


def test_a_folder_swapped_for_a_symlink_after_the_check_gets_nothing(aws: AwsHome) -> None:
    """The cache folder under a world-writable parent; while mfa_process runs (after the
    folder was checked), another user moves it away and puts a link to their own folder."""
    shared = aws.root / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    cache = shared / "cache"
    attacker = shared / "attacker"
    attacker.mkdir()
    os.chown(attacker, 65534, 65534)
    code = aws.code()
    aws.env["MFA_SESSION_CACHE_DIR"] = str(cache)
    aws.write_config(
        f"[profile alice]\nmfa_serial = {aws.device.serial}\nregion = eu-west-1\n"
        f"mfa_process = mv {cache} {shared}/moved && ln -s {attacker} {cache} && echo {code}\n"
    )
    assert_process_json(aws.run("credential-process", "--profile", "alice"))
    assert cache.is_symlink()
    assert list(attacker.iterdir()) == []
    (session,) = (shared / "moved").glob("session-*.json")
    assert read_session_file(session)["profile"] == "alice"


# ------------------------------------------------------------------ core dumps and options


def test_no_core_dump_holds_a_secret(aws: AwsHome) -> None:
    aws.write_config(
        f"[profile alice]\nmfa_serial = {aws.device.serial}\nregion = eu-west-1\n"
        "mfa_process = sleep 30\n"
    )
    workdir = aws.root / "dumps"
    workdir.mkdir()

    def crash(argv: list[str]) -> tuple[list[Path], str]:
        """Abort the process while its child runs: the core files it left, its core limit."""
        process = subprocess.Popen(
            ["sh", "-c", 'ulimit -c unlimited; exec "$@"', "sh", *argv],
            env=aws.env,
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not children_of(process.pid):
            time.sleep(0.1)
        limit = next(
            line.split()[4]
            for line in Path(f"/proc/{process.pid}/limits").read_text().splitlines()
            if line.startswith("Max core file size")
        )
        os.kill(process.pid, signal.SIGABRT)
        process.wait(timeout=10)
        return list(workdir.glob("core*")), limit

    # The same setup dumps core for a plain Python process: the check can fail.
    control, control_limit = crash(
        [sys.executable, "-c", "import subprocess; subprocess.run(['sleep', '30'])"]
    )
    assert control and control_limit == "unlimited"
    for path in control:
        path.unlink()
    cores, limit = crash([MFA_SESSION, "credential-process", "--profile", "alice"])
    assert cores == [] and limit == "0"


def test_the_processes_that_hold_secrets_are_not_dumpable(aws: AwsHome) -> None:
    """PR_SET_DUMPABLE 0, as the kernel reports it back: in mfa-session and in the keyring
    worker that reads the seed (it also stops same-user ptrace and core_pattern pipes)."""
    aws.use_file_keyring()
    aws.store_seed()
    result = aws.run("--debug", "credential-process", "--profile", "alice")
    assert_process_json(result)
    assert "mfa-session: debug: core dumps off; dumpable flag: 0\n" in result.stderr
    assert "): dumpable flag: 0\n" in result.stderr.split("keyring worker (", 1)[1]


def children_of(pid: int) -> list[str]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return path.read_text().split() if path.exists() else []


def test_a_bad_role_arn_names_the_option(aws: AwsHome) -> None:
    result = aws.run("credential-process", "--profile", "alice", "--role-arn", "Admin")
    assert result.returncode == 2
    assert "--role-arn 'Admin' is not a role ARN" in result.stderr
    assert "profile '--role-arn'" not in result.stderr
    unknown = "arn:aws:iam::210987654321:role/Nobody"
    result = aws.run(
        "credential-process",
        "--profile",
        "alice",
        "--role-arn",
        unknown,
        "--token-code",
        aws.code(),
    )
    assert_clean_error(result, "AWS denied assuming role", "check --role-arn and --external-id")
    assert_no_secrets(aws, result.stderr)


def test_commands_get_the_users_core_limit_back(aws: AwsHome) -> None:
    """mfa-session itself dumps no core; the command it runs is the user's business."""
    script = "import resource; print(resource.getrlimit(resource.RLIMIT_CORE)[0])"
    limited = ["sh", "-c", 'ulimit -c 12345; exec "$@"', "sh"]
    control = aws.run_command([*limited, sys.executable, "-c", script])
    assert control.returncode == 0 and int(control.stdout) > 0
    for server in ((), ("--server",)):
        done = aws.run_command(
            [
                *limited,
                MFA_SESSION,
                "exec",
                *server,
                "--profile",
                "alice",
                "--token-code",
                aws.code(len(aws.gst_calls())),
                "--",
                sys.executable,
                "-c",
                script,
            ]
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == control.stdout, server


@pytest.mark.parametrize(
    "text",
    [
        "[alice]\naws_access_key_id = {key_id}\naws_secret_access_key {secret}\n",
        "aws_secret_access_key = {secret}\n[alice]\naws_access_key_id = {key_id}\n",
    ],
    ids=["no-equals-sign", "above-the-first-section"],
)
def test_a_broken_credentials_file_is_named_without_its_secret_even_with_debug(
    aws: AwsHome, text: str
) -> None:
    """configparser's own error quotes the bad line: it is never chained into --debug."""
    aws.credentials.write_text(
        text.format(key_id=aws.user.access_key_id, secret=aws.user.secret_access_key)
    )
    for debug in ([], ["--debug"]):
        result = aws.run(*debug, "credential-process", "--profile", "alice")
        assert result.returncode == 1
        assert f"cannot parse {aws.credentials}: line" in result.stderr
        assert aws.user.secret_access_key not in result.stderr + result.stdout
        assert ("Traceback" in result.stderr) == bool(debug)


@pytest.mark.parametrize(
    "uri",
    [
        "otpauth://totp/AWS:alice?secret={head}\n{tail}&issuer=AWS",  # wrapped when pasted
        "otpauth://totp/AWS:alice?secret={head}\r\n{tail}&issuer=AWS",  # from a Windows copy
    ],
    ids=["wrapped", "wrapped-crlf"],
)
def test_a_keyring_error_quoting_an_odd_seed_uri_shows_no_seed(aws: AwsHome, uri: str) -> None:
    """The backend's error quotes what it was given; whitespace in it (flattened for the
    one-line error) must not let the seed slip past the filter."""
    aws.use_failing_keyring("RaisingOnWrite")
    seed = aws.device.seed
    text = uri.format(head=seed[:20], tail=seed[20:])
    for debug in ([], ["--debug"]):
        result = aws.run(*debug, "totp", "set", "--profile", "alice", input=text + "\n")
        assert result.returncode == 1
        assert "the keyring (tests.keyring_backends.RaisingOnWrite) failed" in result.stderr
        for part in (seed[:20], seed[20:], seed):
            assert part not in result.stdout + result.stderr


def test_a_secret_given_as_the_key_id_is_never_shown_or_written(aws: AwsHome) -> None:
    """The two values swapped in ~/.aws/credentials: the 'key id' is the secret, and it
    must not be printed as an id, put in a cache key or a record, or sent to STS."""
    secret = aws.user.secret_access_key
    aws.credentials.write_text(
        f"[alice]\naws_access_key_id = {secret}\naws_secret_access_key = {aws.user.access_key_id}\n"
    )
    code = aws.code()
    outputs = []
    for args in (
        ["credential-process", "--profile", "alice", "--token-code", code],
        ["--debug", "credential-process", "--profile", "alice", "--token-code", code],
        ["status"],
        ["status", "--json"],
        ["doctor", "--json"],
        ["export", "--profile", "alice", "--token-code", code],
        ["keys", "import", "--profile", "alice"],
    ):
        result = aws.run(*args)
        outputs += [result.stdout, result.stderr]
        assert secret not in result.stdout + result.stderr, args
    assert any("looks like a secret access key, not a key id" in text for text in outputs)
    assert aws.emulator.calls() == []
    assert aws.files_holding(secret) == [aws.credentials]


def test_a_mistyped_option_does_not_echo_the_code_given_with_it(aws: AwsHome) -> None:
    code = aws.code()
    for args in (["--tokencode", code], [f"--tokencode={code}"], ["--token", "code", code]):
        result = aws.run("export", "--profile", "alice", *args)
        assert result.returncode == 2
        assert "unrecognized arguments: " in result.stderr and "not shown" in result.stderr
        assert code not in result.stdout + result.stderr, args
