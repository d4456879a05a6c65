"""The command line: build the parser, dispatch to ``commands/<verb>.py``, turn every
expected failure into one line and an exit status."""

from __future__ import annotations

import os
import sys

from mfa_session import PROG, __version__, debug
from mfa_session.errors import MfaSessionError, UsageError

TYPE_CHECKING = False  # typing itself costs ~10 ms to import on the cache-hit path
if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping, Sequence
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
    "keys": "keys",
    "login": "login",
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
            raise UsageError(_without_values(message), hint=f"see '{self.prog} --help'")

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


def _without_values(message: str) -> str:
    """argparse quotes unrecognized words whole: a mistyped --token-code would show its
    code. Name the options only."""
    prefix = "unrecognized arguments: "
    if not message.startswith(prefix):
        return message
    words = message[len(prefix) :].split()
    options = [word.split("=", 1)[0] for word in words if word.startswith("-")]
    if options == words:
        return message
    hidden = sum(1 for word in words if not word.startswith("-") or "=" in word)
    values = f"{hidden} value{'s' if hidden != 1 else ''}, not shown"
    return prefix + (f"{' '.join(options)} ({values})" if options else values)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == ["credential-process"]:
        from mfa_session import hit

        try:
            if hit.serve(arguments[1:], environ):
                return 0
        except BrokenPipeError:
            return _pipe_closed()
        except Exception as exc:  # a bug there must not cost the user a call: do it in full
            debug.debug("cache hit path failed (%s): taking the full path", type(exc).__name__)
    return run(arguments, environ)


def run(arguments: list[str], environ: Mapping[str, str]) -> int:
    """Every command but a cache hit: parse, harden, dispatch, report."""
    show_traceback = "--debug" in arguments
    try:
        if not arguments:
            build_parser().print_help()
            sys.stdout.flush()
            return 0
        only = arguments[0] if arguments[0] in COMMANDS else None
        try:
            args = build_parser(only).parse_args(arguments)
        except SystemExit:  # --help, --version: a closed pipe shows in this flush
            sys.stdout.flush()
            raise
        if args.debug:
            debug.enable()
        from mfa_session.hardening import undumpable

        dumpable = undumpable()  # before any secret is read
        debug.debug("core dumps off; dumpable flag: %s", dumpable)
        status: int = command_module(args.command).run(args, environ)
        sys.stdout.flush()
    except BrokenPipeError:
        return _pipe_closed()
    except MfaSessionError as exc:
        _error(exc.message, exc.hint, show_traceback)
        return exc.exit_status
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from mfa_session.errors import redact

        detail = " ".join(redact(str(exc)).split())[:200]  # redacted before it is reshaped
        _error(
            f"unexpected {type(exc).__name__}" + (f": {detail}" if detail else ""),
            "re-run with --debug to see where",
            show_traceback,
        )
        return 1
    return status


def _error(message: str, hint: str | None, show_traceback: bool) -> None:
    """The one error line (and hint); with --debug, the traceback first. All redacted."""
    from mfa_session.errors import redact

    lines = []
    if show_traceback:
        import traceback

        lines.append("".join(traceback.format_exc()).rstrip("\n"))
    lines.append(f"{PROG}: error: {message}")
    if hint:
        lines.append(f"hint: {hint}")
    sys.stderr.write(redact("\n".join(lines)) + "\n")
    sys.stderr.flush()


def _pipe_closed() -> int:
    """The reader went away (``status | head -1``): stop quietly, as a Unix tool would on
    SIGPIPE, without Python's complaint when it flushes stdout on the way out."""
    with open(os.devnull, "wb") as devnull:
        os.dup2(devnull.fileno(), sys.stdout.fileno())
    return 141
