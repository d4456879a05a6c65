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
    clear = commands.add_parser("clear", parents=[common], help="forget cached sessions")
    which = clear.add_mutually_exclusive_group()
    which.add_argument("--profile", help="forget this profile's sessions (default: AWS_PROFILE)")
    which.add_argument("--all", action="store_true", help="forget every session")


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from mfa_session.cache import SessionCache

    cache = SessionCache.from_environ(environ)
    profile = None if args.all else (args.profile or default_profile(environ))
    if profile is not None:
        from mfa_session.config import AwsFiles

        # `clear --profile dev` means the key profile that dev's sessions come from.
        with contextlib.suppress(MfaSessionError):
            profile = AwsFiles(environ).plan(profile).mfa.name
    removed = 0
    if profile is None:
        cache.folder.remove_temporaries(everything=True)  # a killed writer's, with secrets
    for entry in cache.entries():
        if profile is None or entry.key.profile == profile:
            cache.remove(entry.key)
            removed += 1
    what = "every profile" if profile is None else f"profile {profile!r}"
    sys.stdout.write(f"cleared {removed} session{'s' if removed != 1 else ''} of {what}\n")
    return 0
