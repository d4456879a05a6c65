"""`doctor`: check what mfa-session needs and say how to fix it."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping

TYPE_CHECKING = False
if TYPE_CHECKING:
    from mfa_session.commands.common import Subcommands


def add_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    doctor = commands.add_parser(
        "doctor",
        parents=[common],
        help="check config, keys, code source, cache and clock",
        description="Check what mfa-session needs and say how to fix what is wrong. "
        "Exit status 0 when nothing failed.",
    )
    doctor.add_argument("--profile", help="check this profile (default: every MFA profile)")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.add_argument(
        "--offline",
        action="store_true",
        help="send nothing to AWS (keys, STS and clock checks) and do not open the keyring",
    )


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from mfa_session import doctor

    findings = doctor.examine(environ, args.profile, online=not args.offline)
    failed = any(finding.status == doctor.FAIL for finding in findings)
    out = sys.stdout
    if args.json:
        document = {"ok": not failed, "checks": [finding.as_dict() for finding in findings]}
        out.write(json.dumps(document, indent=2) + "\n")
        return 1 if failed else 0
    for finding in findings:
        out.write(f"{finding.status.upper():<5} {finding.check}: {finding.message}\n")
        if finding.fix:
            label = "tip" if finding.status == doctor.OK else "fix"
            out.write(f"      {label}: {finding.fix}\n")
    out.write("all good\n" if not failed else "some checks failed\n")
    return 1 if failed else 0
