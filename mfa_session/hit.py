"""The cache hit of `credential-process`, before every AWS CLI call and SDK process.

It reads the few argv forms of the command by hand, finds the profile's plan in
its record (plan_records) instead of parsing the AWS files, and prints the cached
credential_process line as stored: no argparse, configparser, json or datetime.
Anything unusual (another option, --debug, a missing or stale record, a session
with too little time left) returns False and the full path takes over, so this
module never reports an error itself.
"""

from __future__ import annotations

import os
import time

from mfa_session import environment
from mfa_session.cache import (
    DEFAULT_MIN_REMAINING,
    SESSION_MAGIC,
    CacheFolder,
    alias_line,
    alias_name,
    default_cache_dir,
)
from mfa_session.errors import CacheError
from mfa_session.plan_records import PlanRequest, load

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

_OPTIONS = (
    "--profile",
    "--role-arn",
    "--external-id",
    "--role-session-name",
    "--duration",
    "--min-remaining",
    "--token-code",
)


def parse(arguments: Sequence[str]) -> dict[str, str] | None:
    """``--option value`` and ``--option=value`` pairs, each once; None for anything else
    (an empty value too: the full path says what is wrong with it)."""
    options: dict[str, str] = {}
    index = 0
    while index < len(arguments):
        word = arguments[index]
        name, equals, value = word.partition("=")
        if name not in _OPTIONS or name in options:
            return None
        if not equals:
            index += 1
            if index == len(arguments):
                return None
            value = arguments[index]
        if not value:
            return None
        options[name] = value
        index += 1
    return options


def minimum_left(options: Mapping[str, str], environ: Mapping[str, str]) -> int | None:
    raw = options.get("--min-remaining", environ.get(environment.MIN_REMAINING) or "")
    if not raw:
        return DEFAULT_MIN_REMAINING
    return int(raw) if raw.isdigit() else None


def serve(arguments: Sequence[str], environ: Mapping[str, str], out: int = 1) -> bool:
    """Print the cached session and return True, or return False for the full path."""
    options = parse(arguments)
    if options is None or not options.get("--profile") or environ.get(environment.RESOLVING):
        return False
    least = minimum_left(options, environ)
    if least is None:
        return False
    from mfa_session.hardening import no_core_dumps

    no_core_dumps()
    config, credentials = environment.aws_files(environ)
    profile = options["--profile"]
    request = PlanRequest(
        config,
        credentials,
        profile,
        options.get("--role-arn"),
        options.get("--external-id"),
        options.get("--role-session-name"),
        options.get("--duration"),
    )
    try:
        folder = CacheFolder(default_cache_dir(environ), create=False)
    except CacheError:
        return False
    try:
        record = load(folder, request)
        if record is None or record.key is None:
            return False
        key = record.key
        data = folder.read(key.session_name())
        if data is None or not data.startswith(SESSION_MAGIC):
            return False
        parts = data[len(SESSION_MAGIC) :].split(b"\n", 2)
        if len(parts) != 3 or parts[0] != key.line().encode() or not parts[1].isdigit():
            return False
        expiry = int(parts[1])
        if expiry - time.time() <= min(least, record.duration // 2):
            return False
        caller = environ.get("AWS_PROFILE") or ""
        for alias in sorted({profile, caller} - {"", key.profile}):
            if alias != profile:
                other = load(folder, PlanRequest(config, credentials, alias))
                if other is None:
                    return False  # not known yet: the full path records it
                if other.signature != record.signature:
                    continue
            line = alias_line(alias, key, expiry)
            if folder.read(alias_name(alias)) != line:
                folder.try_write(alias_name(alias), line)
        view = memoryview(parts[2])
        while view:
            view = view[os.write(out, view) :]
        return True
    finally:
        folder.close()
