"""`exec`: run a command (or a shell) with the session in its environment."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Mapping

from mfa_session import PROG
from mfa_session.commands.common import (
    add_profile_option,
    add_server_options,
    add_session_options,
    default_profile,
    endpoint_client_variables,
    refuse_recursion,
    session_request,
    start_server,
)
from mfa_session.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from mfa_session.commands.common import Subcommands


def add_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    run_parser = commands.add_parser(
        "exec",
        parents=[common],
        help="run a command with the session in its environment",
        description="Run CMD with the session's keys in its environment (it replaces this "
        "process); with no CMD, start $SHELL. With --server, CMD runs as a child and gets "
        "a local credential endpoint instead, so its SDKs renew the keys themselves.",
        usage=f"{PROG} exec [--profile P] [--server] [options] [--] [CMD [ARG ...]]",
    )
    add_profile_option(run_parser)
    add_session_options(run_parser)
    add_server_options(run_parser, switch=True)
    run_parser.add_argument("argv", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from mfa_session import execute
    from mfa_session.session import get_session

    refuse_recursion(environ)
    profile = args.profile or default_profile(environ)
    execute.refuse_nesting(environ, profile)
    command = list(args.argv)
    if command[:1] == ["--"]:
        command = command[1:]
    if args.server:
        return _run_beside_a_server(args, profile, command, environ)
    if args.port is not None or args.listen is not None or args.allow_non_loopback:
        raise UsageError("--port, --listen and --allow-non-loopback go with --server")
    session = get_session(session_request(args, profile), environ)
    child_environment = execute.command_environment(environ, session)
    if not command:
        command = execute.default_command(environ)
        ends = session.credentials.expiration_iso
        sys.stderr.write(
            f"mfa-session: starting {command[0]} with the session of profile {profile} "
            f"(until {ends}); type 'exit' to leave it\n"
        )
    sys.stdout.flush()
    sys.stderr.flush()
    return execute.run(command, child_environment)


def _run_beside_a_server(
    args: argparse.Namespace, profile: str, command: list[str], environ: Mapping[str, str]
) -> int:
    """CMD as a child with the endpoint's variables; the server lives as long as CMD."""
    from mfa_session import execute

    endpoint, session = start_server(args, profile, environ)
    try:
        child_environment = execute.server_environment(
            environ, session, endpoint_client_variables(endpoint, session, environ)
        )
        sys.stdout.flush()
        sys.stderr.flush()
        status = execute.supervise(command or execute.default_command(environ), child_environment)
    finally:
        endpoint.close()
    if status < 0:
        _end_like_the_child(-status)
        return 128 - status
    return status


def _end_like_the_child(signum: int) -> None:
    """Die of the signal that ended CMD, so our parent (a shell loop, say) sees what exec shows."""
    sys.stdout.flush()
    sys.stderr.flush()
    with contextlib.suppress(OSError, ValueError):  # SIGKILL cannot be handled, nor reset
        signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
