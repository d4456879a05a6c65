"""The cache folder, its files and the per-device memory (real files, no STS)."""

from __future__ import annotations

import os
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import platformdirs
import pytest

from mfa_session.cache import (
    AcceptedCode,
    SessionCache,
    SessionKey,
    atomic_write,
    default_cache_dir,
)
from mfa_session.credentials import Credentials
from mfa_session.errors import CacheError
from mfa_session.lock import DeviceLock

KEY = SessionKey("alice", "AKIAEXAMPLE", "arn:aws:iam::1:mfa/alice")


def credentials(hours: float = 12) -> Credentials:
    expiry = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=hours)
    return Credentials("ASIAEXAMPLE", "secret", "token", expiry)


def test_round_trip_and_key_mismatch(tmp_path: Path) -> None:
    cache = SessionCache(str(tmp_path / "c"))
    written = credentials()
    cache.write(KEY, written)
    assert cache.read(KEY) == written
    rotated = SessionKey("alice", "AKIAOTHER", KEY.mfa_serial)
    assert cache.read(rotated) is None
    assert cache.read(SessionKey("alice", KEY.access_key_id, "arn:other")) is None


def test_foreign_file_under_our_name_is_ignored(tmp_path: Path) -> None:
    cache = SessionCache(str(tmp_path))
    other = SessionKey("bob", "AKIAB", "arn:b")
    cache.write(other, credentials())
    os.replace(cache.session_path(other), cache.session_path(KEY))
    assert cache.read(KEY) is None


def test_default_cache_dir_agrees_with_platformdirs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for xdg in ("", str(tmp_path / "xdg")):
        monkeypatch.setenv("XDG_CACHE_HOME", xdg)
        expected = platformdirs.user_cache_dir("mfa-session", appauthor=False)
        assert default_cache_dir(dict(os.environ)) == expected


def test_override_wins() -> None:
    assert default_cache_dir({"MFA_SESSION_CACHE_DIR": "/x/y"}) == "/x/y"


def test_world_writable_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "open"
    folder.mkdir()
    folder.chmod(0o777)
    with pytest.raises(CacheError, match="writable by group or others"):
        SessionCache(str(folder))


def test_a_file_where_the_folder_should_be(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(CacheError):
        SessionCache(str(tmp_path / "f"))


def test_atomic_write_is_private_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "file"
    atomic_write(str(target), "one")
    atomic_write(str(target), "two")
    assert target.read_text() == "two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [path.name for path in tmp_path.iterdir()] == ["file"]


def test_entries_skip_broken_files(tmp_path: Path) -> None:
    cache = SessionCache(str(tmp_path))
    cache.write(KEY, credentials())
    (tmp_path / "session-broken.json").write_text("{not json")
    (tmp_path / "session-list.json").write_text("[]")
    assert [entry.key for entry in cache.entries()] == [KEY]
    cache.remove(KEY)
    assert cache.entries() == []
    assert not list(tmp_path.glob("*.expiry"))


def test_device_memory(tmp_path: Path) -> None:
    cache = SessionCache(str(tmp_path))
    assert cache.last_accepted(KEY.mfa_serial) is None
    cache.remember_accepted(KEY.mfa_serial, AcceptedCode(123, "abc"))
    remembered = cache.last_accepted(KEY.mfa_serial)
    assert remembered is not None and (remembered.step, remembered.code_digest) == (123, "abc")
    assert cache.last_accepted("arn:other") is None


def test_device_lock_and_its_state_file_are_private(tmp_path: Path) -> None:
    cache = SessionCache(str(tmp_path))
    with DeviceLock(cache.folder, KEY.mfa_serial, print) as lock:
        lock.doing("testing", 1)
        (lock_file,) = tmp_path.glob("device-*.lock")
        (state_file,) = tmp_path.glob("device-*.state")
        for path in (lock_file, state_file):
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0
        assert "\tbusy\ttesting\t" in state_file.read_text()
    assert "\tdone\t" in state_file.read_text()


def test_repr_hides_secrets() -> None:
    text = repr(credentials())
    assert "secret" not in text and "token" not in text
