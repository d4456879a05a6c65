"""`status`: cached sessions, and each MFA profile's device and code source."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping

from mfa_session.commands.common import format_left, print_table
from mfa_session.errors import MfaSessionError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from mfa_session.commands.common import Subcommands


def add_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    status = commands.add_parser(
        "status",
        parents=[common],
        help="list cached sessions and each profile's code source",
        description="List cached sessions, and for each MFA profile the device and where "
        "its next code comes from.",
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from mfa_session.cache import SessionCache

    sessions = []
    for entry in SessionCache.from_environ(environ).entries():
        credentials = entry.credentials
        sessions.append(
            {
                "profile": entry.key.profile,
                "role_arn": entry.key.role_arn,
                "mfa_serial": entry.key.mfa_serial,
                "expiration": credentials.expiration_iso,
                "seconds_left": max(0, credentials.seconds_left()),
            }
        )
    sessions.sort(key=lambda row: (str(row["profile"]), str(row["role_arn"] or "")))
    profiles = _code_sources(environ)
    if args.json:
        sys.stdout.write(json.dumps({"sessions": sessions, "profiles": profiles}, indent=2) + "\n")
        return 0
    if sessions:
        print_table(
            ("PROFILE", "ROLE", "EXPIRES (UTC)", "LEFT"),
            [
                (
                    str(row["profile"]),
                    str(row["role_arn"] or "-"),
                    str(row["expiration"]),
                    format_left(int(str(row["seconds_left"]))),
                )
                for row in sessions
            ],
        )
    else:
        sys.stdout.write("no cached sessions\n")
    if profiles:
        sys.stdout.write("\n")
        print_table(
            ("PROFILE", "MFA DEVICE", "CODE FROM"),
            [(row["profile"], row["mfa_serial"], row["code_source"]) for row in profiles],
        )
    return 0


def _code_sources(environ: Mapping[str, str]) -> list[dict[str, str]]:
    """Each profile that leads to an MFA session, its device and where its code comes from."""
    from mfa_session.codes import planned_source
    from mfa_session.config import AwsFiles

    try:
        files = AwsFiles(environ)
    except MfaSessionError:
        return []  # `doctor` says what is wrong with the files
    rows = []
    for name in files.names():
        try:
            mfa = files.plan(name).mfa
        except MfaSessionError:
            continue
        source = planned_source(mfa.mfa_serial, mfa.profile.mfa_process, environ)
        rows.append({"profile": name, "mfa_serial": mfa.mfa_serial, "code_source": source})
    return rows
