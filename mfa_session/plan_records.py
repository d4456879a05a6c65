"""Remembered profile plans: what a cache hit needs from the AWS files, without parsing them.

Parsing ~/.aws/config costs ~27 µs per profile on every call; an Organization's
config has thousands. So after a full parse, each profile's outcome is written to a
secret-free record in the private cache folder: the cache key of its final level,
that level's duration, its signature (key profile and roles, for the prompt's
aliases) and the identity of every file it was read from (device, inode, size,
mtime and ctime in ns). A hit stats those files and trusts the record only when all
identities match: any write changes ctime. A file written in the last 2 s is not
recorded yet, since a second same-size edit in the same clock tick could keep every
field ("racy", as git calls it); until it settles, calls parse it in full.
"""

from __future__ import annotations

import os
import time

from mfa_session.cache import CacheFolder, SessionKey, digest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

MAGIC = "mfa-session plan 1"
PREFIX = "plan-"
MISSING = "-"
SETTLE_SECONDS = 2.0


class PlanRequest:
    """What a plan depends on besides the files' content: the files and the options."""

    __slots__ = ("fields",)

    def __init__(
        self,
        config_path: str,
        credentials_path: str,
        profile: str,
        role_arn: str | None = None,
        external_id: str | None = None,
        session_name: str | None = None,
        duration: str | None = None,
    ) -> None:
        self.fields = (
            config_path,
            credentials_path,
            profile,
            role_arn or "",
            external_id or "",
            session_name or "",
            duration or "",
        )

    def record_name(self) -> str:
        return f"{PREFIX}{digest(chr(0).join(self.fields))}"

    def line(self) -> str:
        return "\t".join(("request", *self.fields))


class PlanRecord:
    """A profile's plan as a hit needs it; ``key`` is None for a profile with no plan."""

    __slots__ = ("duration", "key", "signature")

    def __init__(self, key: SessionKey | None, duration: int, signature: str) -> None:
        self.key, self.duration, self.signature = key, duration, signature


def file_identity(path: str, now: float | None = None) -> str | None:
    """The file's identity, MISSING when absent, None while it is too fresh to trust."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return MISSING
    except OSError:
        return None
    if now is not None and max(info.st_mtime, info.st_ctime) > now - SETTLE_SECONDS:
        return None
    return stat_identity(info)


def stat_identity(info: os.stat_result) -> str:
    return f"{info.st_dev}:{info.st_ino}:{info.st_size}:{info.st_mtime_ns}:{info.st_ctime_ns}"


def signature_of(profile: str, roles: Sequence[str]) -> str:
    return " > ".join((profile, *roles))


def save(
    folder: CacheFolder,
    request: PlanRequest,
    files: Sequence[tuple[str, str]],
    record: PlanRecord,
) -> bool:
    """Write a record from files whose identities were taken before they were read;
    nothing when a name holds a tab or newline or a file is too fresh."""
    fresh = [file_identity(path, time.time()) for path, _ in files]
    if any(now != then for now, (_, then) in zip(fresh, files, strict=True)):
        return False  # changed since it was read, or not settled yet
    lines = [MAGIC, request.line()]
    lines += [f"file\t{path}\t{identity}" for path, identity in files]
    if record.key is None:
        lines.append("key")
    else:
        lines.append("\t".join(("key", *record.key.fields())))
    lines += [f"duration\t{record.duration}", f"signature\t{record.signature}"]
    text = "\n".join(lines) + "\n"
    if any("\n" in field or "\t" in field for field in request.fields) or text.count("\n") != len(
        lines
    ):
        return False
    return folder.try_write(request.record_name(), text.encode())


def load(folder: CacheFolder, request: PlanRequest) -> PlanRecord | None:
    """The record for this request when every file it came from is unchanged, else None."""
    data = folder.read(request.record_name())
    if data is None:
        return None
    try:
        lines = data.decode().split("\n")
    except UnicodeDecodeError:
        return None
    if len(lines) < 6 or lines[0] != MAGIC or lines[1] != request.line() or lines[-1] != "":
        return None
    key: SessionKey | None = None
    duration = signature = None
    checked: set[str] = set()
    for line in lines[2:-1]:
        kind, _, rest = line.partition("\t")
        if kind == "file":
            path, _, identity = rest.rpartition("\t")
            if file_identity(path) != identity:
                return None
            checked.add(path)
        elif kind == "key":
            fields = rest.split("\t") if rest else []
            if len(fields) == 4:
                key = SessionKey(fields[0], fields[1], fields[2], fields[3] or None)
            elif fields:
                return None
        elif kind == "duration" and rest.isdigit():
            duration = int(rest)
        elif kind == "signature":
            signature = rest
        else:
            return None
    if duration is None or signature is None or not checked.issuperset(request.fields[:2]):
        return None  # a record must vouch for both AWS files it names
    return PlanRecord(key, duration, signature)
