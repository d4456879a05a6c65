"""`clear`: forget cached sessions."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Mapping

from mfa_session.commands.common import default_profile
from mfa_session.errors import MfaSessionError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from mfa_session.commands.common import Subcommands


def add_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    clear = commands.add_parser(
        "clear",
        parents=[common],
        help="forget cached sessions",
        description="Forget cached sessions: a profile's (by default AWS_PROFILE's, else "
        "MFA_SESSION_PROFILE's, else AWS_DEFAULT_PROFILE's, else default's), every one, or "
        "those the config no longer leads to.",
    )
    which = clear.add_mutually_exclusive_group()
    which.add_argument(
        "--profile", help="forget the sessions this profile uses (those of its keys profile)"
    )
    which.add_argument("--all", action="store_true", help="forget every session")
    which.add_argument(
        "--stale",
        action="store_true",
        help="forget sessions of a device or key the config no longer names",
    )


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from mfa_session.cache import SessionCache
    from mfa_session.config import AwsFiles
    from mfa_session.keystore import Keystore

    cache = SessionCache.from_environ(environ)
    if args.stale:
        from mfa_session.commands.status import current_keys, is_stale

        current = current_keys(AwsFiles(environ, Keystore(environ, cache.folder, may_open=False)))
        doomed = [entry.key for entry in cache.entries() if is_stale(entry.key, current)]
        what, whose = "stale ", ""
    elif args.all:
        cache.folder.remove_temporaries(everything=True)  # a killed writer's, with secrets
        doomed = [entry.key for entry in cache.entries()]
        what, whose = "", ""
    else:
        profile = args.profile or default_profile(environ)
        # `clear --profile dev` means the sessions dev uses: those of its keys profile.
        with contextlib.suppress(MfaSessionError):
            keystore = Keystore(environ, cache.folder, may_open=False)
            profile = AwsFiles(environ, keystore).plan(profile).mfa.name
        doomed = [entry.key for entry in cache.entries() if entry.key.profile == profile]
        what, whose = "", f" of profile {profile!r}"
    for key in doomed:
        cache.remove(key)
    count = len(doomed)
    sys.stdout.write(f"cleared {count} {what}session{'s' if count != 1 else ''}{whose}\n")
    return 0
