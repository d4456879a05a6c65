"""Reading ~/.aws files the way botocore does (pure logic, no STS)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mfa_session.config import AwsFiles, is_own_command, parse_duration, profile_of_section
from mfa_session.errors import ConfigError


def files(tmp_path: Path, config: str, credentials: str = "") -> AwsFiles:
    (tmp_path / "config").write_text(config)
    (tmp_path / "credentials").write_text(credentials)
    return AwsFiles(
        {
            "AWS_CONFIG_FILE": str(tmp_path / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
        }
    )


KEYS = "aws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = s3cr3t-value\n"


def test_profile_merges_config_and_credentials(tmp_path: Path) -> None:
    aws = files(
        tmp_path, "[profile alice]\nmfa_serial = arn:aws:iam::1:mfa/a\n", f"[alice]\n{KEYS}"
    )
    mfa = aws.plan("alice").mfa
    assert mfa.mfa_serial == "arn:aws:iam::1:mfa/a"
    assert mfa.keys.access_key_id == "AKIAEXAMPLE"
    assert "s3cr3t" not in repr(mfa.keys) and "s3cr3t" not in repr(mfa.profile)


def test_default_section_and_credentials_win_for_keys(tmp_path: Path) -> None:
    aws = files(
        tmp_path,
        "[default]\nmfa_serial = arn:x\naws_access_key_id = AKIAOLD\naws_secret_access_key = old\n",
        f"[default]\n{KEYS}",
    )
    assert aws.plan("default").mfa.keys.access_key_id == "AKIAEXAMPLE"


def test_unknown_profile_lists_the_known_ones(tmp_path: Path) -> None:
    aws = files(tmp_path, "[profile a]\n[profile b]\n[sso-session x]\n")
    with pytest.raises(ConfigError) as caught:
        aws.profile("c")
    assert caught.value.hint == "known profiles: a, b"


def test_missing_files_mean_no_profiles(tmp_path: Path) -> None:
    aws = AwsFiles({"AWS_CONFIG_FILE": str(tmp_path / "no"), "AWS_SHARED_CREDENTIALS_FILE": ""})
    assert aws.names() == [] or "default" not in aws.names()


def test_parse_error_never_quotes_the_line(tmp_path: Path) -> None:
    aws_config = "[profile a]\nthis line holds s3cr3t-value without equals\n"
    with pytest.raises(ConfigError) as caught:
        files(tmp_path, aws_config)
    assert "line 2" in caught.value.message
    assert "s3cr3t" not in caught.value.message


def test_text_before_any_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="outside any"):
        files(tmp_path, "aws_secret_access_key = s3cr3t\n")


def test_source_profile_supplies_keys_and_serial(tmp_path: Path) -> None:
    aws = files(
        tmp_path,
        "[profile base]\nmfa_serial = arn:base\n[profile role]\nsource_profile = base\n"
        "role_arn = arn:aws:iam::2:role/R\n",
        f"[base]\n{KEYS}",
    )
    mfa = aws.plan("role").mfa
    assert (mfa.name, mfa.mfa_serial) == ("base", "arn:base")


def test_source_profile_cycle_is_named(tmp_path: Path) -> None:
    aws = files(
        tmp_path,
        "[profile a]\nrole_arn = arn:aws:iam::1:role/A\nsource_profile = b\n"
        "[profile b]\nrole_arn = arn:aws:iam::1:role/B\nsource_profile = a\n",
    )
    with pytest.raises(ConfigError, match="cycle: a -> b -> a"):
        aws.plan("a")


def test_own_credential_process_is_recursion(tmp_path: Path) -> None:
    aws = files(
        tmp_path,
        "[profile dev]\ncredential_process = mfa-session credential-process --profile dev\n",
    )
    with pytest.raises(ConfigError, match="recurse"):
        aws.plan("dev")


def test_temporary_keys_are_refused(tmp_path: Path) -> None:
    aws = files(
        tmp_path, "[profile a]\nmfa_serial = arn:x\n", f"[a]\n{KEYS}aws_session_token = abc\n"
    )
    with pytest.raises(ConfigError, match="temporary credentials"):
        aws.plan("a")


@pytest.mark.parametrize(
    ("command", "own"),
    [
        ("mfa-session credential-process --profile a", True),
        ("/home/u/.local/bin/mfa-session credential-process --profile a", True),
        ("python3 -m mfa_session credential-process --profile a", True),
        ('"C:\\Tools\\mfa-session.exe" credential-process', True),
        ("aws-vault export --format=json a", False),
        ("my-mfa-session-wrapper", False),
    ],
)
def test_is_own_command(command: str, own: bool) -> None:
    assert is_own_command(command) is own


@pytest.mark.parametrize("raw", ["899", "129601", "-1", "12h"])
def test_duration_bounds(raw: str) -> None:
    with pytest.raises(ConfigError):
        parse_duration(raw, "--duration")


def test_duration_accepts_the_bounds() -> None:
    assert parse_duration("900", "x") == 900
    assert parse_duration(129600, "x") == 129600


@pytest.mark.parametrize(
    ("section", "profile"),
    [
        ("default", "default"),
        ("profile alice", "alice"),
        ("profile   alice  ", "alice"),
        ('profile "alice smith"', "alice smith"),
        ("profile 'x'", "x"),
        ("profile a b", None),
        ("profiles alice", None),
        ("sso-session corp", None),
        ('profile "unclosed', None),
    ],
)
def test_sections_name_profiles_as_botocore_reads_them(section: str, profile: str | None) -> None:
    assert profile_of_section(section) == profile


def test_a_quoted_profile_name_is_found(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text('[profile "alice smith"]\nmfa_serial = arn:aws:iam::1:mfa/a\n')
    files = AwsFiles({"AWS_CONFIG_FILE": str(config), "HOME": str(tmp_path)})
    assert "alice smith" in files.names()
