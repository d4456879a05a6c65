"""The command line: build the parser, dispatch to ``commands/<verb>.py``, turn every
expected failure into one line and an exit status."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from mfa_session import PROG, __version__, debug
from mfa_session.errors import MfaSessionError, UsageError

TYPE_CHECKING = False  # typing itself costs ~10 ms to import on the cache-hit path
if TYPE_CHECKING:
    import argparse
    from typing import Any, NoReturn

# Each verb and the module under mfa_session/commands/ that implements it.
COMMANDS = {
    "credential-process": "credential_process",
    "exec": "exec_",
    "export": "export",
    "status": "status",
    "clear": "clear",
    "init": "init",
    "doctor": "doctor",
    "totp": "totp",
    "enroll": "enroll",
    "serve": "serve",
}


def command_module(name: str) -> Any:
    """The module of one verb, imported only when that verb runs (or --help lists it)."""
    return __import__(f"mfa_session.commands.{COMMANDS[name]}", fromlist=["run"])


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or (for speed) one with just command ``only``."""
    import argparse

    class Formatter(argparse.HelpFormatter):
        """Help sized by $COLUMNS: argparse's own sizing imports shutil on every run."""

        def __init__(self, prog: str) -> None:
            try:
                width = int(os.environ.get("COLUMNS", "100"))
            except ValueError:
                width = 100
            super().__init__(prog, width=max(40, width) - 2)

    class Parser(argparse.ArgumentParser):
        """argparse, but usage errors become our one-line error with exit status 2."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("formatter_class", Formatter)
            super().__init__(*args, **kwargs)

        def error(self, message: str) -> NoReturn:
            raise UsageError(message, hint=f"see '{self.prog} --help'")

    parser = Parser(prog=PROG, description="One MFA code, shared by every AWS tool.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    common = Parser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True
    for name in COMMANDS:
        if only is None or only == name:
            command_module(name).add_parser(commands, common)
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    arguments = sys.argv[1:] if argv is None else list(argv)
    show_traceback = "--debug" in arguments
    try:
        only = arguments[0] if arguments and arguments[0] in COMMANDS else None
        args = build_parser(only).parse_args(arguments)
        if args.debug:
            debug.enable()
        status: int = command_module(args.command).run(args, environ)
    except MfaSessionError as exc:
        print(f"{PROG}: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        if show_traceback:
            raise
        return exc.exit_status
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if show_traceback:
            raise
        print(f"{PROG}: error: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
        print("hint: re-run with --debug to see where", file=sys.stderr)
        return 1
    return status
