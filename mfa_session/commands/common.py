"""What several verbs share: option groups, the default profile, tables, time left."""

from __future__ import annotations

import sys
from collections.abc import Mapping

from mfa_session import PROG, environment
from mfa_session.errors import MfaSessionError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from mfa_session.server import CredentialServer
    from mfa_session.session import Session, SessionRequest

    Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]

PROFILE_HELP = (
    "default: AWS_PROFILE, else MFA_SESSION_PROFILE, else AWS_DEFAULT_PROFILE, else default"
)


def add_profile_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, text: str = PROFILE_HELP
) -> None:
    parser.add_argument("--profile", help=text)


def add_session_options(parser: argparse.ArgumentParser, min_remaining_default: int = 900) -> None:
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
        help="reuse a cached session only with more seconds left than this (default "
        f"{min_remaining_default})",
    )


def add_server_options(parser: argparse.ArgumentParser, switch: bool) -> None:
    """The credential server's options; ``switch`` adds --server (exec serves only on request)."""
    group = parser.add_argument_group(
        "credential server (docs/server.md)",
        "The server hands out sessions with more than 1200 s left (not 900) unless "
        "--min-remaining says otherwise.",
    )
    if switch:
        group.add_argument(
            "--server",
            action="store_true",
            help="give CMD a local credential endpoint that SDKs renew from, not fixed keys",
        )
    group.add_argument("--port", type=int, help="listen on this port (default: any free one)")
    group.add_argument(
        "--listen", metavar="ADDRESS", help="listen on this IP address (default: 127.0.0.1)"
    )
    group.add_argument(
        "--allow-non-loopback",
        action="store_true",
        help="let --listen take an address other hosts can reach (a warning is printed)",
    )


def start_server(
    args: argparse.Namespace, profile: str, environ: Mapping[str, str]
) -> tuple[CredentialServer, Session]:
    """Bind, make the first session (prompting like any command), then serve in the background."""
    from mfa_session import server
    from mfa_session.session import get_session

    if args.port is not None and not 0 <= args.port <= 65535:
        raise UsageError("--port must be between 0 and 65535 (0: any free port)")
    address = server.listen_address(args.listen, args.allow_non_loopback)
    request = session_request(args, profile)
    if request.min_remaining is None:
        request.min_remaining = server.MIN_REMAINING
    refresher = server.Refresher(server.session_source(request, environ))
    endpoint = server.CredentialServer(refresher, address, args.port or 0)
    try:
        session = get_session(request, environ)
    except BaseException:
        endpoint.close()
        raise
    refresher.prime(session.credentials)
    if not address.is_loopback:
        sys.stderr.write(
            f"{PROG}: warning: the credential server listens on {address.host}, beyond this "
            f"machine's loopback: any host that reaches it with the token gets profile "
            f"{profile!r}'s session\n"
        )
        sys.stderr.flush()
    return endpoint.start(), session


def endpoint_client_variables(
    endpoint: CredentialServer, session: Session, environ: Mapping[str, str]
) -> dict[str, str]:
    """The endpoint's variables, the region, and what keeps [default] from winning over it
    (see shadowing.py); warns of what cannot be hidden."""
    from mfa_session.shadowing import endpoint_client_files

    clients = endpoint_client_files(environ)
    if clients.warning:
        sys.stderr.write(f"{PROG}: warning: {clients.warning}\n")
        sys.stderr.flush()
    variables = endpoint.client_variables()
    variables.update(clients.variables)
    if session.region:
        variables["AWS_REGION"] = variables["AWS_DEFAULT_REGION"] = session.region
    return variables


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
    """Time left as the shell prompt writes it: 11h59m, 41m, expired."""
    if seconds <= 0:
        return "expired"
    hours, minutes = divmod(seconds // 60, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m"
