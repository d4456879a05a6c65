"""`exec`: run a command with the session in its environment, replacing this process."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence

from mfa_session import environment
from mfa_session.errors import MfaSessionError
from mfa_session.exports import STALE_VARIABLES, session_variables
from mfa_session.session import Session


class CommandNotRunnable(MfaSessionError):
    """The command is missing (127) or not executable (126), as a shell reports them."""

    def __init__(self, message: str, exit_status: int) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def refuse_nesting(environ: Mapping[str, str], profile: str) -> None:
    """A shell already holding one profile's keys must not quietly get another's."""
    current = environ.get(environment.PROFILE)
    if current and current != profile:
        raise MfaSessionError(
            f"this shell already runs under 'mfa-session exec' for profile {current!r}",
            hint=f"exit that shell first, then run 'mfa-session exec --profile {profile}'",
        )


def command_environment(environ: Mapping[str, str], session: Session) -> dict[str, str]:
    child = {name: value for name, value in environ.items() if name not in STALE_VARIABLES}
    child.update(session_variables(session))
    return child


def default_command(environ: Mapping[str, str]) -> list[str]:
    if os.name == "nt":
        return [environ.get("COMSPEC", "cmd.exe")]
    return [environ.get("SHELL") or "/bin/sh"]


def run(argv: Sequence[str], child_environment: dict[str, str]) -> int:
    """Replace this process with the command (POSIX), so signals and status are its own."""
    from mfa_session.hardening import restore_core_limit

    restore_core_limit()
    if os.name == "nt":  # no exec on Windows: run and pass the status on
        try:
            return subprocess.run(list(argv), env=child_environment, check=False).returncode
        except FileNotFoundError:
            raise CommandNotRunnable(f"command not found: {argv[0]}", 127) from None
    try:
        os.execvpe(argv[0], list(argv), child_environment)  # noqa: S606 - the user's command
    except FileNotFoundError:
        raise CommandNotRunnable(f"command not found: {argv[0]}", 127) from None
    except PermissionError:
        raise CommandNotRunnable(f"permission denied: {argv[0]}", 126) from None
    except OSError as exc:
        raise CommandNotRunnable(f"cannot run {argv[0]}: {exc.strerror}", 126) from None
    raise AssertionError("unreachable: execvpe returned")  # pragma: no cover
