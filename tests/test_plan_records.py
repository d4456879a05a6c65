"""Remembered plans: when a record may be written, and when one may be trusted."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mfa_session.cache import CacheFolder, SessionKey
from mfa_session.plan_records import (
    SETTLE_SECONDS,
    PlanRecord,
    PlanRequest,
    file_identity,
    load,
    save,
)

KEY = SessionKey("alice", "AKIAEXAMPLE", "arn:aws:iam::123456789012:mfa/alice", None)
ROLE_KEY = SessionKey(
    "alice", "AKIAEXAMPLE", "arn:aws:iam::123456789012:mfa/alice", "arn:aws:iam::1:role/R"
)


SHORT_SETTLE = 0.3  # the other tests need files that settled, not the real 2 s wait


@pytest.fixture
def short_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mfa_session.plan_records.SETTLE_SECONDS", SHORT_SETTLE)


@pytest.fixture
def world(tmp_path: Path) -> tuple[CacheFolder, Path, Path]:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    config, credentials = tmp_path / "config", tmp_path / "credentials"
    config.write_text("[profile alice]\nmfa_serial = x\n")
    credentials.write_text("[alice]\n")
    return CacheFolder(str(cache)), config, credentials


def settle(*paths: Path) -> None:
    """Files last written a minute ago, and their ctime (which utime itself moves to now)
    past the shortened settle time."""
    past = time.time() - 60
    for path in paths:
        os.utime(path, (past, past))
    time.sleep(SHORT_SETTLE + 0.1)


def request_for(config: Path, credentials: Path, role: str | None = None) -> PlanRequest:
    return PlanRequest(str(config), str(credentials), "alice", role_arn=role)


def identities(*paths: Path) -> list[tuple[str, str]]:
    return [(str(path), file_identity(str(path)) or "") for path in paths]


def test_a_file_written_within_the_settle_time_is_not_remembered(
    world: tuple[CacheFolder, Path, Path],
) -> None:
    folder, config, credentials = world
    request = request_for(config, credentials)
    record = PlanRecord(KEY, 43200, "alice")
    assert SETTLE_SECONDS == 2.0
    assert file_identity(str(config), time.time()) is None  # just written: too fresh
    assert save(folder, request, identities(config, credentials), record) is False
    assert load(folder, request) is None


def test_a_settled_file_is_remembered_and_trusted_until_it_changes(
    world: tuple[CacheFolder, Path, Path], short_settle: None
) -> None:
    folder, config, credentials = world
    settle(config, credentials)
    request = request_for(config, credentials)
    assert save(folder, request, identities(config, credentials), PlanRecord(KEY, 900, "alice"))
    loaded = load(folder, request)
    assert loaded is not None and loaded.key == KEY and loaded.duration == 900
    # Same size, same mtime (set back): ctime still moves, so the record is not trusted.
    stat = config.stat()
    config.write_text(config.read_text().replace("x", "y"))
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert load(folder, request) is None


def test_a_file_changed_between_its_read_and_the_save_is_not_remembered(
    world: tuple[CacheFolder, Path, Path], short_settle: None
) -> None:
    folder, config, credentials = world
    settle(config, credentials)
    read_at = identities(config, credentials)  # taken before the parse
    config.write_text(config.read_text() + "region = eu-west-1\n")  # an edit meanwhile
    settle(config)
    request = request_for(config, credentials)
    assert save(folder, request, read_at, PlanRecord(KEY, 900, "alice")) is False


def test_a_record_of_another_request_or_without_its_files_is_not_trusted(
    world: tuple[CacheFolder, Path, Path], short_settle: None
) -> None:
    folder, config, credentials = world
    settle(config, credentials)
    plain, role = request_for(config, credentials), request_for(config, credentials, "R")
    files = identities(config, credentials)
    assert save(folder, role, files, PlanRecord(ROLE_KEY, 3600, "alice > R"))
    assert save(folder, plain, files, PlanRecord(KEY, 43200, "alice"))
    cache = Path(folder.path)
    role_text = (cache / role.record_name()).read_bytes()
    plain_text = (cache / plain.record_name()).read_bytes()
    # The role's record under the plain request's name: another request, a miss.
    (cache / plain.record_name()).write_bytes(role_text)
    assert load(folder, plain) is None
    # The plain record without its file lines vouches for nothing.
    stripped = b"".join(
        line for line in plain_text.splitlines(keepends=True) if not line.startswith(b"file\t")
    )
    (cache / plain.record_name()).write_bytes(stripped)
    assert load(folder, plain) is None
    (cache / plain.record_name()).write_bytes(plain_text)
    assert load(folder, plain) is not None  # the check itself: the intact record is trusted
