"""`exec`: run a command (or a shell) with the session in its environment."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping

from mfa_session import PROG
from mfa_session.commands.common import (
    add_profile_option,
    add_session_options,
    default_profile,
    refuse_recursion,
    session_request,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from mfa_session.commands.common import Subcommands


def add_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    run_parser = commands.add_parser(
        "exec",
        parents=[common],
        help="run a command with the session in its environment",
        description="Run CMD with the session's keys in its environment (it replaces this "
        "process); with no CMD, start $SHELL.",
        usage=f"{PROG} exec [--profile P] [options] [--] [CMD [ARG ...]]",
    )
    add_profile_option(run_parser)
    add_session_options(run_parser)
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
    session = get_session(session_request(args, profile), environ)
    child_environment = execute.command_environment(environ, session)
    sys.stdout.flush()
    sys.stderr.flush()
    return execute.run(command or execute.default_command(environ), child_environment)
