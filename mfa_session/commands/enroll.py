"""`enroll`: create and enable a virtual MFA device from the terminal."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from mfa_session.commands.common import PROFILE_HELP, add_profile_option, default_profile

TYPE_CHECKING = False
if TYPE_CHECKING:
    from mfa_session.commands.common import Subcommands


def add_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    enroll = commands.add_parser(
        "enroll",
        parents=[common],
        help="create and enable a virtual MFA device from the terminal",
        description="Create a virtual MFA device with IAM, show its QR code, keep its seed "
        "in the keyring, enable it with two consecutive codes and set mfa_serial in the "
        "profile. Anything created is deleted again if a step fails.",
    )
    add_profile_option(enroll, f"the profile with the IAM user's keys ({PROFILE_HELP})")
    enroll.add_argument("--device-name", help="the device's name in IAM (default: user name)")
    enroll.add_argument(
        "--no-store",
        dest="store",
        action="store_false",
        help="do not keep the seed: scan the QR code and type two codes from your app",
    )
    enroll.add_argument(
        "--no-qr", dest="show_qr", action="store_false", help="do not show the QR code"
    )
    enroll.add_argument("--qr-png", metavar="PATH", help="also save the QR code (a new 0600 file)")


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from mfa_session.enroll import EnrollOptions, enroll

    options = EnrollOptions(
        profile=args.profile or default_profile(environ),
        device_name=args.device_name,
        store=args.store,
        show_qr=args.show_qr,
        qr_png=args.qr_png,
    )
    enroll(options, environ, say=lambda message: print(message, flush=True))
    return 0
