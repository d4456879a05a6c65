"""`exec`: run a command with the session in its environment, replacing this process,
or (`exec --server`) as a child beside a credential server."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from types import FrameType

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


def server_environment(
    environ: Mapping[str, str], session: Session, endpoint: Mapping[str, str]
) -> dict[str, str]:
    """The child of `exec --server`: the endpoint's client variables and no keys that would
    win over them; no expiry either, since the endpoint keeps renewing."""
    child = {name: value for name, value in environ.items() if name not in STALE_VARIABLES}
    child.update(endpoint)
    child[environment.PROFILE] = session.profile
    child.pop(environment.EXPIRATION, None)
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
        with _launching(argv[0]):
            return subprocess.run(list(argv), env=child_environment, check=False).returncode
    with _launching(argv[0]):
        os.execvpe(argv[0], list(argv), child_environment)  # noqa: S606 - the user's command
    raise AssertionError("unreachable: execvpe returned")  # pragma: no cover


@contextlib.contextmanager
def _launching(program: str) -> Iterator[None]:
    """A command that cannot start fails as a shell says it: 127 missing, 126 not runnable."""
    try:
        yield
    except FileNotFoundError:
        raise CommandNotRunnable(f"command not found: {program}", 127) from None
    except PermissionError:
        raise CommandNotRunnable(f"permission denied: {program}", 126) from None
    except OSError as exc:
        raise CommandNotRunnable(f"cannot run {program}: {exc.strerror}", 126) from None


# Signals passed on to the child of `exec --server`. SIGINT and SIGQUIT come from the
# terminal to its whole foreground process group, the child included, so they are passed
# on only when they cannot have come that way; SIGHUP likewise when the terminal hung up.
_FORWARDED = ("SIGINT", "SIGQUIT", "SIGTERM", "SIGHUP")
_FROM_TERMINAL = ("SIGINT", "SIGQUIT", "SIGHUP")


def supervise(argv: Sequence[str], child_environment: dict[str, str]) -> int:
    """Run the command as a child and pass signals on; its status (-N: killed by signal N)."""
    signals = [getattr(signal, name) for name in _FORWARDED if hasattr(signal, name)]
    terminal_signals = {getattr(signal, name) for name in _FROM_TERMINAL if hasattr(signal, name)}
    child: subprocess.Popen[bytes] | None = None
    early: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        if child is None:
            early.append(signum)  # arrived before the child existed: deliver it once it does
        elif not (signum in terminal_signals and _child_got_it_too(child.pid)):
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

    previous = {signum: signal.signal(signum, forward) for signum in signals}
    try:
        from mfa_session.hardening import user_core_limit_for_children

        with _launching(argv[0]), user_core_limit_for_children():
            child = subprocess.Popen(list(argv), env=child_environment)
        for signum in early:  # the terminal cannot have sent these to a child not yet born
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)
        return child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _child_got_it_too(child_pid: int) -> bool:
    """True when we are in the foreground of our terminal and the child is in our group:
    the terminal then sent the signal to both of us, and passing it on would double it."""
    try:
        descriptor = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return False
    try:
        ours = os.getpgrp()
        return os.tcgetpgrp(descriptor) == ours and os.getpgid(child_pid) == ours
    except OSError:
        return False
    finally:
        os.close(descriptor)
