"""What several verbs share: option groups, the default profile, tables, time left."""

from __future__ import annotations

import sys
from collections.abc import Mapping

from mfa_session import environment
from mfa_session.errors import MfaSessionError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from mfa_session.session import SessionRequest

    Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]

PROFILE_HELP = (
    "default: AWS_PROFILE, else MFA_SESSION_PROFILE, else AWS_DEFAULT_PROFILE, else default"
)


def add_profile_option(parser: argparse.ArgumentParser, text: str = PROFILE_HELP) -> None:
    parser.add_argument("--profile", help=text)


def add_session_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--duration",
        help="seconds: of the MFA session (900-129600, default 43200), or with a role, of "
        "the role session (900 up to the role's maximum, default 3600)",
    )
    parser.add_argument("--role-arn", help="assume this role with the MFA session")
    parser.add_argument("--external-id", help="the ExternalId the role's trust policy wants")
    parser.add_argument(
        "--role-session-name", help="the role session's name (default: your IAM user name)"
    )
    parser.add_argument("--token-code", help="the MFA code, when you have it at hand")
    parser.add_argument(
        "--min-remaining",
        type=int,
        help="reuse a cached session only with more seconds left than this (default 900)",
    )


def default_profile(environ: Mapping[str, str]) -> str:
    """AWS_PROFILE as the SDKs read it; inside `exec` (which removes it) the exec'd profile."""
    return (
        environ.get("AWS_PROFILE")
        or environ.get(environment.PROFILE)
        or environ.get("AWS_DEFAULT_PROFILE")
        or "default"
    )


def refuse_recursion(environ: Mapping[str, str]) -> None:
    resolving = environ.get(environment.RESOLVING)
    if resolving:
        raise MfaSessionError(
            f"mfa-session was started by the mfa_process of profile {resolving!r} "
            "while it was getting a code: that would never end",
            hint="make mfa_process print a code without calling an AWS tool that uses mfa-session",
        )


def session_request(args: argparse.Namespace, profile: str) -> SessionRequest:
    from mfa_session.config import parse_duration
    from mfa_session.session import SessionRequest

    duration = None if args.duration is None else parse_duration(args.duration, "--duration")
    if args.min_remaining is not None and args.min_remaining < 0:
        raise UsageError("--min-remaining must not be negative")
    return SessionRequest(
        profile=profile,
        duration=duration,
        token_code=args.token_code,
        min_remaining=args.min_remaining,
        role_arn=args.role_arn,
        external_id=args.external_id,
        role_session_name=args.role_session_name,
    )


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    table = [header, *rows]
    widths = [max(len(line[column]) for line in table) for column in range(len(header))]
    for line in table:
        cells = (cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        sys.stdout.write("  ".join(cells).rstrip() + "\n")


def format_left(seconds: int) -> str:
    if seconds <= 0:
        return "expired"
    hours, minutes = divmod(seconds // 60, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m"
