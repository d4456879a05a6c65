"""`export`: the session as variables for eval, source or an env file."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping

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
    from mfa_session.exports import FORMATS  # light: only the format names are needed here

    export = commands.add_parser(
        "export",
        parents=[common],
        help="print the session for eval, source or an env file",
        description='Print the session as variables: eval "$(mfa-session export)".',
    )
    add_profile_option(export)
    export.add_argument("--format", choices=FORMATS, default="sh", help="default: sh")
    add_session_options(export)


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from mfa_session import exports
    from mfa_session.session import get_session

    refuse_recursion(environ)
    profile = args.profile or default_profile(environ)
    session = get_session(session_request(args, profile), environ)
    sys.stdout.write(exports.render(args.format, session))
    return 0
