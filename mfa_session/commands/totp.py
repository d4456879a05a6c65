"""`totp set|code|remove`: a TOTP seed in the OS keyring, under the device's serial."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping

from mfa_session.commands.common import add_profile_option, default_profile

TYPE_CHECKING = False
if TYPE_CHECKING:
    from mfa_session.commands.common import Subcommands


def add_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    totp = commands.add_parser(
        "totp",
        parents=[common],
        help="keep a TOTP seed in the OS keyring: codes with no phone",
        description="Manage the TOTP seed of a profile's MFA device in the OS keyring "
        "(service mfa-session, user = the device's serial ARN).",
    )
    actions = totp.add_subparsers(dest="action", metavar="ACTION", parser_class=type(totp))
    actions.required = True
    for action, text in (
        ("set", "store a seed read from a hidden prompt or stdin (never from arguments)"),
        ("code", "print the current code"),
        ("remove", "delete the stored seed"),
    ):
        parser = actions.add_parser(action, parents=[common], help=text, description=text)
        add_profile_option(parser)


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from mfa_session import seeds
    from mfa_session.errors import CodeError

    out = sys.stdout
    profile = args.profile or default_profile(environ)
    serial = _mfa_serial_of(profile, environ)
    if args.action == "set":
        secret = seeds.read_seed_input()
        seeds.parse_seed(secret, "the seed")
        replaced = seeds.read_seed(serial, environ) is not None
        backend = seeds.store_seed(serial, secret, environ)
        verb = "replaced the stored" if replaced else "stored the"
        out.write(f"{verb} TOTP seed for {serial} in the keyring ({backend})\n")
        out.write(f"check it: 'mfa-session totp code --profile {profile}' shows your app's code\n")
        _one_factor_note(profile, environ)
        return 0
    if args.action == "remove":
        if not seeds.remove_seed(serial, environ):
            raise CodeError(
                f"no TOTP seed is stored for {serial} (profile {profile!r})",
                hint="nothing to remove; 'mfa-session status' shows each profile's code source",
            )
        out.write(f"removed the TOTP seed for {serial} from the keyring\n")
        return 0
    secret_text = seeds.read_seed(serial, environ)
    if not secret_text:
        raise CodeError(
            f"no TOTP seed is stored for {serial} (profile {profile!r})",
            hint=f"store one with 'mfa-session totp set --profile {profile}'",
        )
    totp = seeds.parse_seed(secret_text, f"the keyring seed for {serial}")
    out.write(f"{totp.now()}\n")
    out.flush()
    from mfa_session.codes import Terminal
    from mfa_session.totp import STEP_SECONDS

    terminal = Terminal.open()  # the bare code on stdout; how long it lasts, to the person
    if terminal is not None:
        import time

        left = STEP_SECONDS - int(time.time()) % STEP_SECONDS
        terminal.say(f"valid for {left} more second{'s' if left != 1 else ''}")
        terminal.close()
    return 0


def _one_factor_note(profile: str, environ: Mapping[str, str]) -> None:
    """The seed next to the long-term keys in one keyring: that is one factor, say so."""
    from mfa_session.config import AwsFiles
    from mfa_session.errors import MfaSessionError
    from mfa_session.keystore import Keystore

    try:
        files = AwsFiles(environ, Keystore(environ, may_open=False))
        keys = files.plan(profile).mfa.keys
    except MfaSessionError:
        return
    if keys.in_keyring:
        sys.stdout.write(
            "note: this profile's long-term keys are in the same keyring: whoever unlocks it "
            "holds both factors (see docs/security.md#one-factor-in-disguise)\n"
        )


def _mfa_serial_of(profile: str, environ: Mapping[str, str]) -> str:
    """The serial a profile's codes are for: its own, or the one its keys profile names."""
    from mfa_session.config import AwsFiles
    from mfa_session.errors import ConfigError

    files = AwsFiles(environ)
    try:
        return files.plan(profile).mfa.mfa_serial
    except ConfigError:
        serial = files.profile(profile).mfa_serial
        if serial:
            return serial
        raise
