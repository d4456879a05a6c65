"""`init`: the shell integration script (prompt segment, completion)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping

TYPE_CHECKING = False
if TYPE_CHECKING:
    from mfa_session.commands.common import Subcommands


def add_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    init = commands.add_parser(
        "init",
        parents=[common],
        help="print the shell integration (prompt segment, completion)",
        description='Print the shell integration: eval "$(mfa-session init bash)", '
        "or 'mfa-session init fish | source'.",
    )
    init.add_argument("shell", choices=("bash", "zsh", "fish"))
    init.add_argument(
        "--no-prompt", action="store_true", help="define mfa_session_prompt, leave the prompt be"
    )


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from mfa_session.shells import init_script

    sys.stdout.write(init_script(args.shell, environ, prompt=not args.no_prompt))
    return 0
