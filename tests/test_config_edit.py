"""Writing mfa_serial into the config file: everything but the one line stays byte for byte."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from mfa_session.config_edit import ConfigEdit
from mfa_session.errors import ConfigError

SERIAL = "arn:aws:iam::123456789012:mfa/alice"
LINE = f"mfa_serial = {SERIAL}\n"

USER_CONFIG = """\
# Work accounts; keys are in ~/.aws/credentials.
[default]
region = us-east-1

[profile alice]
# my IAM user
region   = eu-west-1
output=json
s3 =
    max_concurrent_requests = 10

# The next profile is for the ops team.
[profile ops]
role_arn = arn:aws:iam::210987654321:role/ops
source_profile = alice
"""


def edit(tmp_path: Path, text: str | None, profile: str = "alice") -> tuple[Path, ConfigEdit]:
    path = tmp_path / "config"
    if text is not None:
        path.write_bytes(text.encode())
    return path, ConfigEdit(str(path), profile)


def test_new_key_goes_after_the_sections_last_key(tmp_path: Path) -> None:
    path, change = edit(tmp_path, USER_CONFIG)
    change.apply(SERIAL)
    after = path.read_bytes().decode()
    anchor = "    max_concurrent_requests = 10\n"
    assert after == USER_CONFIG.replace(anchor, anchor + LINE)


def test_an_existing_value_changes_in_place(tmp_path: Path) -> None:
    old = "mfa_serial = arn:aws:iam::1:mfa/old\n"
    before = USER_CONFIG.replace("output=json\n", old + "output=json\n")
    path, change = edit(tmp_path, before)
    assert change.previous == "arn:aws:iam::1:mfa/old"
    change.apply(SERIAL)
    assert path.read_text() == before.replace("arn:aws:iam::1:mfa/old", SERIAL)


def test_a_commented_out_key_is_left_alone(tmp_path: Path) -> None:
    before = "[profile alice]\n# mfa_serial = arn:aws:iam::1:mfa/old\nregion = eu-west-1\n"
    path, change = edit(tmp_path, before)
    assert change.previous is None
    change.apply(SERIAL)
    assert path.read_text() == before + LINE


def test_default_profile_and_missing_section(tmp_path: Path) -> None:
    path, change = edit(tmp_path, USER_CONFIG, profile="default")
    change.apply(SERIAL)
    region = "region = us-east-1\n"
    assert path.read_text() == USER_CONFIG.replace(region, region + LINE)
    # A profile that lives only in the credentials file gets its own section at the end.
    path, change = edit(tmp_path, USER_CONFIG, profile="bob")
    change.apply(SERIAL)
    assert path.read_text() == USER_CONFIG + f"\n[profile bob]\n{LINE}"


def test_no_final_newline_crlf_and_empty_files(tmp_path: Path) -> None:
    path, change = edit(tmp_path, "[profile alice]\nregion = x")
    change.apply(SERIAL)
    assert path.read_text() == f"[profile alice]\nregion = x\n{LINE}"
    crlf = "[profile alice]\r\nregion = x\r\n\r\n[profile b]\r\nregion = y\r\n"
    path, change = edit(tmp_path, crlf)
    change.apply(SERIAL)
    expected = crlf.replace("region = x\r\n", f"region = x\r\nmfa_serial = {SERIAL}\r\n")
    assert path.read_bytes() == expected.encode()
    path.unlink()
    path, change = edit(tmp_path, None)
    assert change.apply(SERIAL) is None  # nothing to back up
    assert path.read_text() == f"[profile alice]\n{LINE}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_backup_first_and_the_files_mode_kept(tmp_path: Path) -> None:
    path, change = edit(tmp_path, USER_CONFIG)
    path.chmod(0o640)
    backup = change.apply(SERIAL)
    assert backup is not None and Path(backup).read_text() == USER_CONFIG
    assert stat.S_IMODE(Path(backup).stat().st_mode) == 0o600  # private, whatever the umask
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_file_holding_a_secret_key_gets_no_backup(tmp_path: Path) -> None:
    """A backup would be a copy of the secret that nobody removes (keys import would
    take the key out of the config, not out of the backup)."""
    with_keys = USER_CONFIG + "aws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = s3cr3t\n"
    path, change = edit(tmp_path, with_keys)
    assert change.apply(SERIAL) is None
    assert [p.name for p in tmp_path.iterdir()] == ["config"]
    assert SERIAL in path.read_text() and "s3cr3t" in path.read_text()


def test_a_file_that_does_not_parse_is_refused_before_any_change(tmp_path: Path) -> None:
    broken = "region = outside-any-section\n[profile alice]\n"
    path = tmp_path / "config"
    path.write_text(broken)
    with pytest.raises(ConfigError, match="does not parse"):
        ConfigEdit(str(path), "alice")
    assert path.read_text() == broken


def test_sections_are_found_the_way_botocore_finds_them(tmp_path: Path) -> None:
    """`[profile  alice]` is alice to the AWS CLI: a second [profile alice] would hide it."""
    before = '[profile  "alice"]\nregion = eu-west-1\n\n[profile bob]\nregion = x\n'
    path, change = edit(tmp_path, before)
    change.apply(SERIAL)
    assert path.read_text() == before.replace("eu-west-1\n", "eu-west-1\n" + LINE)
    twice = "[profile alice]\nregion = a\n\n[profile  alice]\noutput = json\n"
    with pytest.raises(ConfigError, match="more than one section"):
        edit(tmp_path, twice)


def test_upper_case_key_in_a_crlf_file_and_a_comment_only_section(tmp_path: Path) -> None:
    crlf = "[profile alice]\r\nMFA_SERIAL = arn:aws:iam::1:mfa/old\r\nregion = x\r\n"
    path, change = edit(tmp_path, crlf)
    change.apply(SERIAL)
    assert path.read_bytes() == crlf.replace("arn:aws:iam::1:mfa/old", SERIAL).encode()
    comments = "[profile alice]\n# nothing yet\n\n# about bob\n[profile bob]\nregion = x\n"
    path, change = edit(tmp_path, comments)
    change.apply(SERIAL)
    assert path.read_text() == comments.replace("[profile alice]\n", "[profile alice]\n" + LINE)


def test_a_symlinked_config_is_edited_where_it_lives(tmp_path: Path) -> None:
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    target = dotfiles / "aws-config"
    target.write_text(USER_CONFIG)
    link = tmp_path / "config"
    link.symlink_to(target)
    ConfigEdit(str(link), "alice").apply(SERIAL)
    assert link.is_symlink()
    assert f"mfa_serial = {SERIAL}" in target.read_text()


def test_changes_made_while_enrolling_are_kept(tmp_path: Path) -> None:
    path, change = edit(tmp_path, USER_CONFIG)
    with path.open("a") as handle:
        handle.write("\n[profile later]\nregion = ap-south-1\n")
    change.apply(SERIAL)
    assert "[profile later]\nregion = ap-south-1\n" in path.read_text()
    assert f"mfa_serial = {SERIAL}" in path.read_text()
