"""The on-disk session cache: one private folder, atomic files, secret-free side files.

The folder is opened once and checked with fstat (yours, not writable by others);
every file operation then goes through that descriptor with O_NOFOLLOW, so swapping
the folder or a file for a symlink after the check changes nothing. Reads take no
lock: files are replaced atomically. This module is on the cache-hit path: plain
classes and os, no dataclasses, pathlib, json or platformdirs at import time.
"""

from __future__ import annotations

import os
import stat
import sys
import time
import zlib

from mfa_session import environment
from mfa_session.debug import debug
from mfa_session.errors import CacheError, sensitive

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from mfa_session.credentials import Credentials

APP_NAME = "mfa-session"
SESSION_MAGIC = b"mfa-session session 2\n"
SESSION_PREFIX = "session-"
ALIAS_PREFIX = "alias-"
DEVICE_PREFIX = "device-"
TEMPORARY_SUFFIX = ".tmp"
_STALE_TEMPORARY_SECONDS = 60
DEFAULT_MIN_REMAINING = 900  # botocore refreshes 15 minutes before expiry

_POSIX = hasattr(os, "O_DIRECTORY") and os.open in os.supports_dir_fd
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)
_READ_FLAGS = os.O_RDONLY | _NOFOLLOW | _CLOEXEC | _BINARY
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC | _BINARY


def digest(text: str) -> str:
    """A stable 16-hex-digit file name part. Not a security boundary: every file's
    content is checked against what was asked for, so a collision only costs a miss.
    zlib instead of hashlib saves the ~3 ms OpenSSL import on every cache hit."""
    data = text.encode()
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


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

    def fields(self) -> tuple[str, str, str, str]:
        return (self.profile, self.access_key_id, self.mfa_serial, self.role_arn or "")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SessionKey) and self.fields() == other.fields()

    def __hash__(self) -> int:
        return hash(self.fields())

    def __repr__(self) -> str:
        return f"SessionKey{self.fields()!r}"

    def line(self) -> str:
        """The key as the session file's second line: tab-separated, as the hit compares it."""
        return "\t".join(self.fields())

    def digest(self) -> str:
        return digest("\0".join(("2", *self.fields())))

    def session_name(self) -> str:
        return f"{SESSION_PREFIX}{self.digest()}.json"

    def expiry_name(self) -> str:
        return f"{SESSION_PREFIX}{self.digest()}.expiry"


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


def make_private_dirs(path: str) -> None:
    """Create every missing level of ``path`` with mode 0700 (os.makedirs would give the
    parents 0777 minus the umask, e.g. a world-writable ~/.cache under umask 000)."""
    missing = []
    current = os.path.abspath(path)
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for level in reversed(missing):
        try:
            os.mkdir(level, 0o700)
        except FileExistsError:
            pass  # made meanwhile by another process: the checks that follow still apply


class CacheFolder:
    """The private folder, opened once; every file operation goes through its descriptor."""

    def __init__(self, path: str, create: bool = True) -> None:
        self.path = path
        self._fd: int | None = None
        try:
            if create:
                make_private_dirs(path)
            if _POSIX:
                self._fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
                info = os.fstat(self._fd)
            else:
                info = os.stat(path)
        except OSError as exc:
            raise CacheError(f"cannot use cache folder {path}: {exc.strerror}") from None
        try:
            _check_private(path, info, self._fd)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.close()

    def _at(self, name: str) -> tuple[str, int | None]:
        return (name, self._fd) if self._fd is not None else (os.path.join(self.path, name), None)

    def file_path(self, name: str) -> str:
        return os.path.join(self.path, name)

    def bound_path(self, name: str) -> str:
        """A path for libraries that take paths (filelock) that still means this folder if
        it is swapped after the check: through the descriptor, where /proc shows it."""
        if self._fd is not None and os.path.isdir(f"/proc/self/fd/{self._fd}"):
            return f"/proc/self/fd/{self._fd}/{name}"
        return self.file_path(name)

    def read(self, name: str) -> bytes | None:
        """A file of ours in the folder, or None when missing, foreign, a link or unreadable."""
        path, folder = self._at(name)
        try:
            descriptor = os.open(path, _READ_FLAGS, dir_fd=folder)
        except OSError:
            return None
        try:
            info = os.fstat(descriptor)
            if not stat.S_ISREG(info.st_mode) or not _is_ours(info):
                return None
            chunks: list[bytes] = []
            while True:
                chunk = os.read(descriptor, 65536)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
        except OSError:
            return None
        finally:
            os.close(descriptor)

    def write(self, name: str, data: bytes) -> None:
        """Replace a file atomically (temp file, fsync, rename), 0600 from the start;
        raises OSError when the disk says no."""
        temporary = f".{name}.{os.getpid()}.{os.urandom(4).hex()}{TEMPORARY_SUFFIX}"
        temporary_path, folder = self._at(temporary)
        target_path, _ = self._at(name)
        descriptor = os.open(temporary_path, _CREATE_FLAGS, 0o600, dir_fd=folder)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(descriptor, view) :]
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            os.replace(temporary_path, target_path, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            self.remove(temporary)
            raise

    def try_write(self, name: str, data: bytes) -> bool:
        """Best effort, for secret-free side files: a full or read-only disk is not an error."""
        try:
            self.write(name, data)
        except OSError as exc:
            debug("could not write %s in the cache: %s", name, exc.strerror)
            return False
        return True

    def remove(self, name: str) -> bool:
        path, folder = self._at(name)
        try:
            os.unlink(path, dir_fd=folder)
        except FileNotFoundError:
            return False
        except OSError as exc:
            debug("could not remove %s from the cache: %s", name, exc.strerror)
            return False
        return True

    def names(self) -> list[str]:
        return sorted(os.listdir(self._fd if self._fd is not None else self.path))

    def remove_temporaries(self, everything: bool = False) -> int:
        """Temp files of writers that died mid-write (they may hold live secrets); with
        ``everything``, also those of writers still running (`clear --all`)."""
        removed = 0
        now = time.time()
        for name in self.names():
            if not (name.startswith(".") and name.endswith(TEMPORARY_SUFFIX)):
                continue
            if everything or _temporary_is_stale(self, name, now):
                removed += self.remove(name)
        return removed


def _temporary_is_stale(folder: CacheFolder, name: str, now: float) -> bool:
    path, descriptor = folder._at(name)
    try:
        info = os.stat(path, dir_fd=descriptor, follow_symlinks=False)
    except OSError:
        return False
    if now - info.st_mtime > _STALE_TEMPORARY_SECONDS:
        return True
    try:
        pid = int(name.rsplit(".", 3)[-3])
    except (ValueError, IndexError):
        return True
    return pid != os.getpid() and not _process_exists(pid)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process: alive
    return True


def _is_ours(info: os.stat_result) -> bool:
    getuid = getattr(os, "getuid", None)
    return getuid is None or info.st_uid == getuid()


def _check_private(path: str, info: os.stat_result, descriptor: int | None) -> None:
    """Refuse a folder another user could tamper with; make one that is ours private."""
    if not stat.S_ISDIR(info.st_mode):
        raise CacheError(f"cache folder {path} is not a folder")
    if not _is_ours(info):
        raise CacheError(
            f"cache folder {path} belongs to another user (uid {info.st_uid})",
            hint=f"set {environment.CACHE_DIR} to a folder of your own",
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise CacheError(
            f"cache folder {path} is writable by group or others",
            hint=f"run 'chmod 700 {path}' or set {environment.CACHE_DIR} to a private folder",
        )
    if descriptor is not None and info.st_mode & 0o077:
        os.fchmod(descriptor, 0o700)  # ours and not writable by others: just make it private


def encode_session(key: SessionKey, credentials: Credentials) -> bytes:
    """The session file: magic, key line, expiry epoch, then the credential_process JSON
    exactly as printed, so a cache hit prints it without importing json."""
    import json

    line = json.dumps(credentials.process_json(), separators=(", ", ": "))
    epoch = int(credentials.expiration.timestamp())
    return SESSION_MAGIC + f"{key.line()}\n{epoch}\n{line}\n".encode()


def decode_session(data: bytes | None) -> CacheEntry | None:
    """A cache entry from a session file, or None for anything foreign, old or broken."""
    if data is None or not data.startswith(SESSION_MAGIC):
        return None
    import json

    from mfa_session.credentials import Credentials, parse_utc

    try:
        key_line, _epoch, document_line = (
            data[len(SESSION_MAGIC) :].decode().rstrip("\n").split("\n")
        )
        fields = key_line.split("\t")
        document = json.loads(document_line)
        profile, key_id, serial, role = fields
        if not (profile and key_id and serial):
            return None
        key = SessionKey(profile, key_id, serial, role or None)
        credentials = Credentials(
            access_key_id=_text(document["AccessKeyId"]),
            secret_access_key=sensitive(_text(document["SecretAccessKey"])),
            session_token=sensitive(_text(document["SessionToken"])),
            expiration=parse_utc(_text(document["Expiration"])),
        )
    except (KeyError, TypeError, ValueError):
        return None
    return CacheEntry(key, credentials)


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError("expected a non-empty string")
    return value


def is_cacheable(key: SessionKey) -> bool:
    """Tabs or newlines in a name would break the line formats; such a key is never cached."""
    return not any("\t" in field or "\n" in field for field in key.fields())


class SessionCache:
    """Sessions, their secret-free expiry files and per-device memory, in one private folder."""

    def __init__(self, root: str | CacheFolder) -> None:
        self.folder = root if isinstance(root, CacheFolder) else CacheFolder(root)
        self.root = self.folder.path

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> SessionCache:
        return cls(default_cache_dir(environ))

    def session_path(self, key: SessionKey) -> str:
        return self.folder.file_path(key.session_name())

    def read(self, key: SessionKey) -> Credentials | None:
        """The cached session for key, or None when missing, corrupt or someone else's."""
        entry = decode_session(self.folder.read(key.session_name()))
        if entry is None or entry.key != key:
            return None
        return entry.credentials

    def write(self, key: SessionKey, credentials: Credentials) -> None:
        """Store a session (OSError when the disk says no), then its expiry file (best effort)."""
        if not is_cacheable(key):
            raise OSError(0, "a profile or role name holds a tab or newline")
        self.folder.remove_temporaries()
        self.folder.write(key.session_name(), encode_session(key, credentials))
        # Secret-free, tab-separated, one line: the shell prompt reads it with `read`.
        epoch = int(credentials.expiration.timestamp())
        line = f"{epoch}\t{key.profile}\t{key.role_arn or '-'}\n"
        self.folder.try_write(key.expiry_name(), line.encode())

    def note_alias(self, name: str, key: SessionKey, credentials: Credentials) -> None:
        """Record, secret-free, that profile ``name`` uses this session, for the shell prompt.
        Best effort: the prompt is a convenience, a full disk must not fail the call."""
        line = alias_line(name, key, int(credentials.expiration.timestamp()))
        alias = alias_name(name)
        if self.folder.read(alias) != line:  # the usual case on a hit: nothing to write
            self.folder.try_write(alias, line)

    def entries(self) -> list[CacheEntry]:
        found = []
        for name in self.folder.names():
            if name.startswith(SESSION_PREFIX) and name.endswith(".json"):
                entry = decode_session(self.folder.read(name))
                if entry is not None:
                    found.append(entry)
        return found

    def remove(self, key: SessionKey) -> None:
        """Forget a session, its expiry file and every alias pointing at it."""
        names = [key.session_name(), key.expiry_name()]
        session_digest = key.digest()
        for name in self.folder.names():
            if name.startswith(ALIAS_PREFIX) and name.endswith(".expiry"):
                data = self.folder.read(name)
                if data is not None and data.rstrip(b"\n").split(b"\t")[-1] == (
                    session_digest.encode()
                ):
                    names.append(name)
        for name in names:
            self.folder.remove(name)

    def last_accepted(self, serial: str) -> AcceptedCode | None:
        data = self.folder.read(device_name(serial, ".json"))
        if data is None:
            return None
        import json

        try:
            document = json.loads(data)
        except ValueError:
            return None
        if not isinstance(document, dict) or document.get("mfa_serial") != serial:
            return None
        step, code_hash = document.get("step"), document.get("code_digest")
        if not isinstance(step, int) or not isinstance(code_hash, str):
            return None
        return AcceptedCode(step, code_hash)

    def remember_accepted(self, serial: str, accepted: AcceptedCode) -> None:
        """Best effort: without it, a reused code is rejected by STS and we wait a step."""
        import json

        document = {
            "mfa_serial": serial,
            "step": accepted.step,
            "code_digest": accepted.code_digest,
        }
        self.folder.try_write(device_name(serial, ".json"), json.dumps(document).encode())


def alias_name(profile: str) -> str:
    return f"{ALIAS_PREFIX}{digest(profile)}.expiry"


def alias_line(profile: str, key: SessionKey, epoch: int) -> bytes:
    """An alias file: profile ``profile`` uses the session of ``key``, ending at ``epoch``."""
    return f"{epoch}\t{profile}\t{key.role_arn or '-'}\t{key.digest()}\n".encode()


def device_name(serial: str, suffix: str) -> str:
    return f"{DEVICE_PREFIX}{digest(serial)}{suffix}"


def atomic_write(path: str, text: str, mode: int = 0o600, newline: str | None = None) -> None:
    """Write a file outside the cache (0600 unless told) so that readers see the old or
    the new content, never a part."""
    folder, name = os.path.split(path)
    temporary = os.path.join(folder, f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    descriptor = os.open(temporary, _CREATE_FLAGS, 0o600)
    try:
        if mode != 0o600:
            os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "w", encoding="utf-8", newline=newline) as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
