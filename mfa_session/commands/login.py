"""`login`: open the AWS console signed in as the profile, keeping MFA where AWS allows."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping

from mfa_session.commands.common import (
    PROFILE_HELP,
    add_profile_option,
    default_profile,
    format_left,
    refuse_recursion,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from mfa_session.commands.common import Subcommands


def add_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    login = commands.add_parser(
        "login",
        parents=[common],
        help="open the AWS console signed in as the profile (a role keeps MFA)",
        description="Sign in to the AWS console through the federation endpoint and open it "
        "in your browser (the URL is on the browser's command line), or print the URL. A "
        "role is assumed on the MFA session, so the console session carries MFA. Without a "
        "role AWS offers only GetFederationToken, which carries none: --without-mfa.",
    )
    add_profile_option(login, PROFILE_HELP)
    login.add_argument("--role-arn", help="sign in as this role, assumed with the MFA session")
    login.add_argument(
        "--duration",
        help="console session seconds: with a role 900-3600 on the MFA session, more (up "
        "to the role's maximum, 43200) with a fresh code; without a role 900-129600; "
        "default 3600",
    )
    login.add_argument(
        "--destination",
        metavar="URL_OR_SERVICE",
        help="the console page to open: a service such as s3, or an https:// console URL "
        "(default: the console home, in the profile's region)",
    )
    login.add_argument(
        "--print",
        dest="print_url",
        action="store_true",
        help="write the sign-in URL to stdout instead of opening a browser (a secret: it "
        "opens the console session for 15 minutes)",
    )
    login.add_argument(
        "--without-mfa",
        action="store_true",
        help="for a profile without a role: sign in as the IAM user with GetFederationToken, "
        "a console session without MFA (policies that demand MFA deny there)",
    )
    login.add_argument("--external-id", help="the ExternalId the role's trust policy wants")
    login.add_argument(
        "--role-session-name", help="the role session's name (default: your IAM user name)"
    )
    login.add_argument("--token-code", help="the MFA code, when you have it at hand")
    login.add_argument(
        "--min-remaining",
        type=int,
        help="reuse a cached role session only with more seconds left than this (default "
        "1800, at most half the session)",
    )


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from mfa_session.config import parse_duration
    from mfa_session.credentials import format_utc, utc_now
    from mfa_session.errors import UsageError
    from mfa_session.signin import LoginRequest, console_login, open_in_browser

    refuse_recursion(environ)
    if args.min_remaining is not None and args.min_remaining < 0:
        raise UsageError("--min-remaining must not be negative")
    request = LoginRequest(
        profile=args.profile or default_profile(environ),
        role_arn=args.role_arn,
        external_id=args.external_id,
        role_session_name=args.role_session_name,
        token_code=args.token_code,
        duration=None if args.duration is None else parse_duration(args.duration, "--duration"),
        min_remaining=args.min_remaining,
        destination=args.destination,
        without_mfa=args.without_mfa,
    )
    login = console_login(request, environ, say=_say)
    left = format_left(int((login.expiration - utc_now()).total_seconds()))
    lasts = f"the console session lasts {left} (until {format_utc(login.expiration)})"
    if args.print_url:
        sys.stdout.write(login.url + "\n")
        sys.stdout.flush()
        _say(f"sign-in URL for {login.identity}: open it within 15 minutes; {lasts}")
        return 0
    open_in_browser(login.url)
    sys.stdout.write(f"opened the AWS console as {login.identity}; {lasts}\n")
    return 0


def _say(message: str) -> None:
    print(f"mfa-session: {message}", file=sys.stderr, flush=True)
