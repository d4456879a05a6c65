"""The cache hit reads remembered plans instead of the AWS files; correctness must not
move: every change to the files is seen by the very next call, and a broken or
foreign record is only a miss."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.conftest import MFA_SESSION, AwsHome, Result
from tests.e2e.test_credential_process import assert_clean_error, assert_process_json

HEAVY = {
    "argparse",
    "boto3",
    "botocore",
    "click",
    "collections",
    "configparser",
    "configupdater",
    "contextlib",
    "dataclasses",
    "datetime",
    "enum",
    "filelock",
    "functools",
    "gettext",
    "hashlib",
    "json",
    "keyring",
    "logging",
    "pathlib",
    "platformdirs",
    "pyotp",
    "re",
    "segno",
    "shlex",
    "subprocess",
    "typing",
}


@pytest.fixture
def cached(aws: AwsHome) -> dict[str, object]:
    """alice's session cached, the files settled and the plan remembered by one more call."""
    document = assert_process_json(
        aws.run("credential-process", "--profile", "alice", "--token-code", aws.code())
    )
    aws.settle()
    assert assert_process_json(aws.run("credential-process", "--profile", "alice")) == document
    assert aws.plan_records(), "the full path did not remember the plan"
    return document


def imported_by(aws: AwsHome, *args: str, env: dict[str, str] | None = None) -> set[str]:
    # As the AWS CLI runs it: the installed script (``-m`` would add runpy's imports).
    result = aws.run_command([sys.executable, "-X", "importtime", MFA_SESSION, *args], env=env)
    assert_process_json(result)
    return {
        line.split("|")[-1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }


def test_a_hit_imports_nothing_heavy(aws: AwsHome, cached: dict[str, object]) -> None:
    # The first call an SDK makes with AWS_PROFILE=dev remembers dev's plan; then it hits.
    aws.run("credential-process", "--profile", "alice", env={"AWS_PROFILE": "dev"})
    for args, env in (
        (("credential-process", "--profile", "alice"), None),
        (("credential-process", "--profile=alice", "--min-remaining", "60"), None),
        (("credential-process", "--profile", "alice"), {"AWS_PROFILE": "dev"}),
    ):
        imported = imported_by(aws, *args, env=env)
        assert "mfa_session.hit" in imported
        assert "mfa_session.config" not in imported  # the AWS files were not parsed
        assert not imported & HEAVY, imported & HEAVY


def test_a_hit_through_the_cli_profile_of_an_sdk(aws: AwsHome, cached: dict[str, object]) -> None:
    """An SDK with AWS_PROFILE=dev: the prompt's alias for dev is written by the hit too."""
    for alias in aws.cache_dir.glob("alias-*"):
        alias.unlink()
    hit = aws.run("credential-process", "--profile", "alice", env={"AWS_PROFILE": "dev"})
    assert assert_process_json(hit) == cached
    (alias,) = aws.cache_dir.glob("alias-*")
    assert alias.read_text().split("\t")[1] == "dev"


def miss(result: Result) -> None:
    """No code source here: a call that cannot use the cached session fails like this."""
    assert_clean_error(result, "no way to get an MFA code")


def same_size_edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text and len(old) == len(new)
    with open(path, "r+", encoding="utf-8") as handle:
        handle.write(text.replace(old, new))


def test_edits_within_the_same_second_and_size_are_seen_at_once(
    aws: AwsHome, cached: dict[str, object]
) -> None:
    key = aws.user.access_key_id
    rotated = key[:-1] + ("A" if key[-1] != "A" else "B")
    size = aws.credentials.stat().st_size
    same_size_edit(aws.credentials, key, rotated)  # a rotated key: a new cache key
    assert aws.credentials.stat().st_size == size
    miss(aws.run("credential-process", "--profile", "alice"))
    same_size_edit(aws.credentials, rotated, key)  # and back, within the same second
    assert assert_process_json(aws.run("credential-process", "--profile", "alice")) == cached
    serial = aws.device.serial
    other_device = serial[:-1] + ("x" if serial[-1] != "x" else "y")
    same_size_edit(aws.config, serial, other_device)  # a new mfa_serial
    miss(aws.run("credential-process", "--profile", "alice"))
    miss(aws.run("credential-process", "--profile", "dev"))


def test_other_files_named_by_the_environment_are_seen(
    aws: AwsHome, cached: dict[str, object]
) -> None:
    other = aws.root / "other-config"
    other.write_text(aws.config.read_text().replace(aws.device.serial, aws.device.serial + "2"))
    miss(aws.run("credential-process", "--profile", "alice", env={"AWS_CONFIG_FILE": str(other)}))
    moved = aws.root / "other-credentials"
    moved.write_text(aws.credentials.read_text())
    env = {"AWS_SHARED_CREDENTIALS_FILE": str(moved)}
    # The same keys in another file make the same session: served, by either path.
    assert assert_process_json(aws.run("credential-process", "--profile", "alice", env=env)) == (
        cached
    )
    aws.credentials.unlink()
    result = aws.run("credential-process", "--profile", "alice")
    assert_clean_error(result, "has no long-term access keys")


def test_a_file_replaced_by_an_editor_is_seen(aws: AwsHome, cached: dict[str, object]) -> None:
    replacement = aws.root / ".aws" / "config.new"
    replacement.write_text(aws.config.read_text().replace("mfa/alice", "mfa/alicf"))
    replacement.replace(aws.config)  # a new inode, as editors save
    miss(aws.run("credential-process", "--profile", "alice"))


def test_role_options_and_min_remaining_take_their_own_path(
    aws: AwsHome, cached: dict[str, object]
) -> None:
    role = aws.emulator.add_role(name="Admin", trusted_users=[aws.user])
    first = assert_process_json(
        aws.run("credential-process", "--profile", "alice", "--role-arn", role.arn)
    )
    assert first != cached  # the role, chained on the cached MFA session: no code needed
    again = aws.run("credential-process", "--profile", "alice", f"--role-arn={role.arn}")
    assert assert_process_json(again) == first
    assert len(aws.gst_calls()) == 1
    # The hit reads MFA_SESSION_MIN_REMAINING as the full path does, errors included.
    result = aws.run(
        "credential-process", "--profile", "alice", env={"MFA_SESSION_MIN_REMAINING": "soon"}
    )
    assert_clean_error(result, "MFA_SESSION_MIN_REMAINING must be a number of seconds")


@pytest.mark.parametrize("damage", ["garbage", "truncated", "foreign"])
def test_a_broken_or_foreign_record_is_a_miss_not_an_error(
    aws: AwsHome, cached: dict[str, object], damage: str
) -> None:
    for record in aws.plan_records():
        if damage == "garbage":
            record.write_bytes(b"\x00\xffnot a plan")
        elif damage == "truncated":
            record.write_bytes(record.read_bytes()[:40])
        else:
            os.chown(record, 65534, 65534)
    served = aws.run("credential-process", "--profile", "alice")
    assert assert_process_json(served) == cached
    assert served.stderr == ""


def test_records_are_private_and_hold_no_secret(aws: AwsHome, cached: dict[str, object]) -> None:
    aws.run("credential-process", "--profile", "alice", env={"AWS_PROFILE": "dev"})
    records = aws.plan_records()
    assert records
    for record in records:
        assert record.stat().st_mode & 0o777 == 0o600
        data = record.read_text()
        assert aws.user.secret_access_key not in data
        assert str(cached["SecretAccessKey"]) not in data
        assert str(cached["SessionToken"]) not in data


@pytest.mark.parametrize("option", ["--duration=", "--min-remaining=", "--role-arn="])
def test_an_empty_option_value_is_judged_as_the_full_path_judges_it(
    aws: AwsHome, cached: dict[str, object], option: str
) -> None:
    """The answer must not depend on whether the session happens to be cached."""
    hit = aws.run("credential-process", "--profile", "alice", option)
    full = aws.run("--debug", "credential-process", "--profile", "alice", option)
    assert (hit.returncode, hit.stdout) == (full.returncode, full.stdout), hit.stderr
    if option != "--role-arn=":  # an empty role is no role, cached or not
        assert hit.returncode in (1, 2) and hit.stderr.splitlines()[0] in full.stderr
