"""`serve`: the credential endpoint in the foreground, for other shells, IDEs and tools."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Mapping
from types import FrameType

from mfa_session import PROG
from mfa_session.commands.common import (
    add_profile_option,
    add_server_options,
    add_session_options,
    default_profile,
    endpoint_client_variables,
    refuse_recursion,
    start_server,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from mfa_session.commands.common import Subcommands


def add_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    from mfa_session.exports import FORMATS  # light: only the format names are needed here

    serve = commands.add_parser(
        "serve",
        parents=[common],
        help="serve the session from a local endpoint SDKs renew from (IDEs, containers)",
        description="Serve the session on 127.0.0.1 with the container credentials protocol "
        "and print the two variables that point SDKs at it. Runs until Ctrl-C.",
    )
    add_profile_option(serve)
    serve.add_argument("--format", choices=FORMATS, default="sh", help="default: sh")
    from mfa_session.server import MIN_REMAINING

    add_session_options(serve, min_remaining_default=MIN_REMAINING)
    add_server_options(serve, switch=False)


class _Stop(Exception):
    """A signal asked the server to stop."""


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from mfa_session import exports

    refuse_recursion(environ)
    profile = args.profile or default_profile(environ)
    endpoint, session = start_server(args, profile, environ)
    try:
        variables = endpoint_client_variables(endpoint, session, environ)
        unset = [name for name in exports.STALE_VARIABLES if name not in variables]
        sys.stdout.write(exports.render_variables(args.format, variables, unset))
        sys.stdout.flush()
        sys.stderr.write(f"{PROG}: serving profile {profile!r} at {endpoint.url} until Ctrl-C\n")
        sys.stderr.flush()
        _wait_for_a_stop_signal()
    finally:
        endpoint.close()
    sys.stderr.write(f"{PROG}: stopped\n")
    return 0


def _wait_for_a_stop_signal() -> None:
    def stop(signum: int, frame: FrameType | None) -> None:
        raise _Stop

    names = ("SIGINT", "SIGTERM", "SIGHUP")
    signals = [getattr(signal, name) for name in names if hasattr(signal, name)]
    previous = {signum: signal.signal(signum, stop) for signum in signals}
    try:
        threading.Event().wait()
    except _Stop:
        pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
