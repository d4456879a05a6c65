"""The on-disk session cache: safe folder, atomic files, one lock per MFA device.

Reads take no lock (files are replaced atomically), so a cache hit costs one
stat of the folder and one small file read. This module is on the cache-hit
path: plain classes and os.path, no dataclasses, pathlib or platformdirs import
(each costs more than the hit itself).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
import zlib
from collections.abc import Iterator, Mapping

from mfa_session import environment
from mfa_session.credentials import Credentials, format_utc, parse_utc
from mfa_session.errors import CacheError

FORMAT = 1
APP_NAME = "mfa-session"
LOCK_TIMEOUT_SECONDS = 300.0
_SESSION_PREFIX = "session-"
_ALIAS_PREFIX = "alias-"


class SessionKey:
    """What makes two sessions interchangeable: rotated keys or a new device never match."""

    __slots__ = ("access_key_id", "mfa_serial", "profile", "role_arn")

    def __init__(
        self, profile: str, access_key_id: str, mfa_serial: str, role_arn: str | None = None
    ) -> None:
        self.profile = profile
        self.access_key_id = access_key_id
        self.mfa_serial = mfa_serial
        self.role_arn = role_arn

    def _fields(self) -> tuple[str, str, str, str]:
        return (self.profile, self.access_key_id, self.mfa_serial, self.role_arn or "")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SessionKey) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return f"SessionKey{self._fields()!r}"

    def digest(self) -> str:
        """A stable file name. Not a security boundary: the file's content is checked
        against the whole key, so a collision only costs a cache miss. zlib instead of
        hashlib saves the ~3 ms OpenSSL import on every cache hit."""
        return _digest("\0".join((str(FORMAT), *self._fields())))


class CacheEntry:
    __slots__ = ("credentials", "key")

    def __init__(self, key: SessionKey, credentials: Credentials) -> None:
        self.key = key
        self.credentials = credentials


class AcceptedCode:
    """The last code STS accepted for a device: AWS never accepts the same code twice."""

    __slots__ = ("code_digest", "step")

    def __init__(self, step: int, code_digest: str) -> None:
        self.step = step
        self.code_digest = code_digest


def default_cache_dir(environ: Mapping[str, str]) -> str:
    """MFA_SESSION_CACHE_DIR, else platformdirs' user cache dir for mfa-session."""
    override = environ.get(environment.CACHE_DIR)
    if override:
        return os.path.expanduser(override)
    if sys.platform.startswith("linux"):
        # platformdirs' XDG rule, inlined: importing platformdirs costs ~20 ms on
        # every AWS CLI call. tests/test_cache.py checks both agree.
        base = environ.get("XDG_CACHE_HOME", "").strip() or os.path.expanduser("~/.cache")
        return os.path.join(base, APP_NAME)
    import platformdirs

    return platformdirs.user_cache_dir(APP_NAME, appauthor=False)


def code_digest(serial: str, code: str) -> str:
    """A used code's fingerprint; a spent TOTP code is worthless, but we still never store it."""
    import hashlib  # miss path only

    return hashlib.sha256(f"{serial}\0{code}".encode()).hexdigest()


class SessionCache:
    """Sessions, their secret-free expiry files and per-device memory, in one private folder."""

    def __init__(self, root: str) -> None:
        self.root = root
        ensure_private_dir(root)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> SessionCache:
        return cls(default_cache_dir(environ))

    def _path(self, name: str) -> str:
        return os.path.join(self.root, name)

    def session_path(self, key: SessionKey) -> str:
        return self._path(f"{_SESSION_PREFIX}{key.digest()}.json")

    def expiry_path(self, key: SessionKey) -> str:
        return self._path(f"{_SESSION_PREFIX}{key.digest()}.expiry")

    def read(self, key: SessionKey) -> Credentials | None:
        """The cached session for key, or None when missing, corrupt or someone else's."""
        entry = _load_entry(self.session_path(key))
        if entry is None or entry.key != key:
            return None
        return entry.credentials

    def write(self, key: SessionKey, credentials: Credentials) -> None:
        document = {
            "format": FORMAT,
            "profile": key.profile,
            "source_access_key_id": key.access_key_id,
            "mfa_serial": key.mfa_serial,
            "role_arn": key.role_arn,
            "access_key_id": credentials.access_key_id,
            "secret_access_key": credentials.secret_access_key,
            "session_token": credentials.session_token,
            "expiration": format_utc(credentials.expiration),
        }
        atomic_write(self.session_path(key), json.dumps(document, indent=1) + "\n")
        # Secret-free, tab-separated, one line: the shell prompt reads it with `read`.
        epoch = int(credentials.expiration.timestamp())
        atomic_write(self.expiry_path(key), f"{epoch}\t{key.profile}\t{key.role_arn or '-'}\n")

    def note_alias(self, name: str, key: SessionKey, credentials: Credentials) -> None:
        """Record, secret-free, that profile `name` uses this session, for the shell prompt."""
        epoch = int(credentials.expiration.timestamp())
        line = f"{epoch}\t{name}\t{key.role_arn or '-'}\t{key.digest()}\n"
        path = self._path(f"{_ALIAS_PREFIX}{_digest(name)}.expiry")
        try:
            with open(path, encoding="utf-8") as handle:
                if handle.read() == line:
                    return  # the usual case on a cache hit: nothing to write
        except (OSError, ValueError):
            pass
        atomic_write(path, line)

    def entries(self) -> list[CacheEntry]:
        found = []
        for name in sorted(os.listdir(self.root)):
            if name.startswith(_SESSION_PREFIX) and name.endswith(".json"):
                entry = _load_entry(self._path(name))
                if entry is not None:
                    found.append(entry)
        return found

    def remove(self, key: SessionKey) -> None:
        """Forget a session, its expiry file and every alias pointing at it."""
        paths = [self.session_path(key), self.expiry_path(key)]
        digest = key.digest()
        for name in os.listdir(self.root):
            if name.startswith(_ALIAS_PREFIX) and name.endswith(".expiry"):
                try:
                    with open(self._path(name), encoding="utf-8") as handle:
                        fields = handle.read().rstrip("\n").split("\t")
                except (OSError, ValueError):
                    continue
                if fields[-1] == digest:
                    paths.append(self._path(name))
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    @contextlib.contextmanager
    def device_lock(self, serial: str) -> Iterator[None]:
        """Serialise everything that spends a code of this device, across processes."""
        import filelock  # miss path only

        path = self._path(f"device-{_digest(serial)}.lock")
        lock = filelock.FileLock(path, timeout=LOCK_TIMEOUT_SECONDS, mode=0o600)
        try:
            with lock:
                yield
        except filelock.Timeout:
            raise CacheError(
                f"another mfa-session has waited on {serial} for {LOCK_TIMEOUT_SECONDS:.0f} s",
                hint="finish or cancel the other prompt, then try again",
            ) from None

    def last_accepted(self, serial: str) -> AcceptedCode | None:
        document = _read_json(self._path(f"device-{_digest(serial)}.json"))
        if document is None or document.get("mfa_serial") != serial:
            return None
        step, digest = document.get("step"), document.get("code_digest")
        if not isinstance(step, int) or not isinstance(digest, str):
            return None
        return AcceptedCode(step, digest)

    def remember_accepted(self, serial: str, accepted: AcceptedCode) -> None:
        document = {
            "mfa_serial": serial,
            "step": accepted.step,
            "code_digest": accepted.code_digest,
        }
        atomic_write(self._path(f"device-{_digest(serial)}.json"), json.dumps(document))


def ensure_private_dir(path: str) -> None:
    """Create the folder 0700, or refuse one that another user could tamper with."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.stat(path)
    except OSError as exc:
        raise CacheError(f"cannot use cache folder {path}: {exc.strerror}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise CacheError(f"cache folder {path} is not a folder")
    getuid = getattr(os, "getuid", None)
    if getuid is not None and info.st_uid != getuid():
        raise CacheError(
            f"cache folder {path} belongs to another user (uid {info.st_uid})",
            hint=f"set {environment.CACHE_DIR} to a folder of your own",
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise CacheError(
            f"cache folder {path} is writable by group or others",
            hint=f"run 'chmod 700 {path}' or set {environment.CACHE_DIR} to a private folder",
        )
    if getuid is not None and info.st_mode & 0o077:
        os.chmod(path, 0o700)  # ours and not writable by others: just make it private


def atomic_write(path: str, text: str, mode: int = 0o600, newline: str | None = None) -> None:
    """Write a file (0600 unless told) so that readers see the old or the new content,
    never a part."""
    folder, name = os.path.split(path)
    temporary = os.path.join(folder, f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if mode != 0o600:
            os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "w", encoding="utf-8", newline=newline) as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _digest(text: str) -> str:
    data = text.encode()
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


def _read_json(path: str) -> dict[str, object] | None:
    """A JSON object from a file we own, or None for anything missing, foreign or broken."""
    try:
        with open(path, "rb") as handle:
            getuid = getattr(os, "getuid", None)
            if getuid is not None and os.fstat(handle.fileno()).st_uid != getuid():
                return None
            document = json.loads(handle.read())
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def _load_entry(path: str) -> CacheEntry | None:
    document = _read_json(path)
    if document is None or document.get("format") != FORMAT:
        return None
    try:
        role_arn = document["role_arn"]
        key = SessionKey(
            profile=_text(document["profile"]),
            access_key_id=_text(document["source_access_key_id"]),
            mfa_serial=_text(document["mfa_serial"]),
            role_arn=None if role_arn is None else _text(role_arn),
        )
        credentials = Credentials(
            access_key_id=_text(document["access_key_id"]),
            secret_access_key=_text(document["secret_access_key"]),
            session_token=_text(document["session_token"]),
            expiration=parse_utc(_text(document["expiration"])),
        )
    except (KeyError, TypeError, ValueError):
        return None
    return CacheEntry(key, credentials)


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError("expected a non-empty string")
    return value
