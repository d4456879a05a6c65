"""Where MFA codes come from, in the design's order, and the memory that stops reuse.

AWS accepts each TOTP code once. We remember the last accepted code per device
and, when the only code at hand is that one, wait for the next 30 s step. Every
source reports what it is doing (``DeviceContext.activity``) so that processes
waiting on the device lock can say why they wait.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from mfa_session import environment
from mfa_session.cache import AcceptedCode, SessionCache, code_digest
from mfa_session.errors import CodeError, Interrupted, OwnCodeFailure, sensitive
from mfa_session.totp import SIX_DIGITS, STEP_SECONDS

PROMPT_TRIES = 3
DEFAULT_PROCESS_TIMEOUT = 120.0  # a hardware token may wait for a touch
_GUI_TIMEOUT = 300
_END_GRACE_SECONDS = 1.0


def _no_activity(what: str, bound: float = 0.0) -> None:
    """The default activity report: nobody is waiting on us."""


@dataclass
class DeviceContext:
    """Everything a code source needs to know about the device and its surroundings."""

    serial: str
    profile: str
    cache: SessionCache
    environ: Mapping[str, str]
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    terminal: Terminal | None = None
    activity: Callable[[str, float], None] = _no_activity

    def current_step(self) -> int:
        return int(self.clock() // STEP_SECONDS)

    def tell(self, message: str) -> None:
        """Say something to the person: on the terminal when there is one, else on stderr."""
        notify(message, self.terminal)

    def wait_for_step(self, step: int, reason: str) -> None:
        """Wait for TOTP step ``step``: a countdown on a terminal, one line without."""
        seconds = step * STEP_SECONDS - self.clock()
        if seconds <= 0:
            return
        self.activity(f"waiting {seconds:.0f} s for the next TOTP code", seconds + 5)
        if self.terminal is None:
            notify(f"{reason}; waiting {seconds:.0f} s for the next code")
            self.sleep(seconds + 0.2)
            return
        deadline = self.clock() + seconds + 0.2
        while True:
            left = deadline - self.clock()
            if left <= 0:
                break
            self.terminal.status(f"{reason}; the next code comes in {left:2.0f} s")
            self.sleep(min(1.0, left))
        self.terminal.status("")

    def is_spent(self, code: str) -> bool:
        """True when this very code was accepted for this device within its validity window."""
        last = self.cache.last_accepted(self.serial)
        return (
            last is not None
            and last.code_digest == code_digest(self.serial, code)
            and last.step >= self.current_step() - 2
        )

    def remember(self, code: str, step: int | None) -> None:
        known_step = step if step is not None else self.current_step()
        self.cache.remember_accepted(
            self.serial, AcceptedCode(known_step, code_digest(self.serial, code))
        )


def notify(message: str, terminal: Terminal | None = None) -> None:
    """Say something to the person: on the terminal (SDKs capture both of our pipes),
    else on stderr."""
    if terminal is not None:
        terminal.say(message)
        return
    opened = Terminal.open()
    if opened is not None:
        try:
            opened.say(message)
        finally:
            opened.close()
        return
    print(f"mfa-session: {message}", file=sys.stderr, flush=True)


class CodeSource:
    """One way of getting codes; ``tries`` is how many STS attempts it may make."""

    label = "code"
    tries = 1

    def __init__(self, device: DeviceContext) -> None:
        self.device = device
        self.step: int | None = None  # the TOTP step of the last code, when known

    def next_code(self, attempt: int) -> str:
        raise NotImplementedError

    def after_rejection(self) -> None:
        """Automatic codes may have been spent by another tool: the next step brings a new one."""
        self.device.wait_for_step(
            self.device.current_step() + 1, f"STS rejected the code from {self.label}"
        )


def require_six_digits(code: str, origin: str) -> str:
    code = code.strip()
    if not SIX_DIGITS.fullmatch(code):
        # Never echo what was given: a typo of a code is still a code.
        raise CodeError(f"the MFA code from {origin} is not six digits")
    return sensitive(code)


class GivenCode(CodeSource):
    """``--token-code`` or MFA_SESSION_TOKEN_CODE: exactly one code, one attempt."""

    tries = 1

    def __init__(self, device: DeviceContext, code: str, origin: str) -> None:
        super().__init__(device)
        self.label = origin
        self.code = require_six_digits(code, origin)

    def next_code(self, attempt: int) -> str:
        if self.device.is_spent(self.code):
            raise OwnCodeFailure(
                f"the MFA code from {self.label} was already used for {self.device.serial}",
                hint="AWS accepts a code once: pass the next code your device shows",
            )
        return self.code


class ProcessCode(CodeSource):
    """The profile's ``mfa_process`` command, run by the platform shell (aws-vault's key)."""

    tries = 2
    label = "mfa_process"

    def __init__(self, device: DeviceContext, command: str) -> None:
        super().__init__(device)
        self.command = command

    def next_code(self, attempt: int) -> str:
        code = self._run()
        if self.device.is_spent(code):
            self.device.wait_for_step(
                self.device.current_step() + 1, "mfa_process gave the code used last time"
            )
            code = self._run()
        return code

    def _run(self) -> str:
        timeout = process_timeout(self.device.environ)
        self.device.activity("running mfa_process for a code", timeout + _END_GRACE_SECONDS)
        return run_mfa_process(self.command, self.device.profile, self.device.environ, timeout)


def process_timeout(environ: Mapping[str, str]) -> float:
    return environment.seconds(environ, environment.MFA_PROCESS_TIMEOUT, DEFAULT_PROCESS_TIMEOUT)


def run_mfa_process(
    command: str,
    profile: str,
    environ: Mapping[str, str],
    timeout: float = DEFAULT_PROCESS_TIMEOUT,
) -> str:
    """Run a profile's mfa_process with the recursion marker set; its stdout is the code.

    It runs in a process group of its own, so that a timeout ends everything it
    started (a hung token tool must not keep the token busy). When we own the
    terminal, the group gets it for the run, so a tool that asks on /dev/tty still can.
    """
    child_environment = dict(environ)
    child_environment[environment.RESOLVING] = profile
    group: dict[str, Any] = {}
    if os.name == "posix":
        group = {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}
    try:
        process = subprocess.Popen(  # noqa: S602 - the user's own command, as aws-vault runs it
            command,
            shell=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            env=child_environment,
            **group,
        )
    except OSError as exc:
        raise CodeError(
            f"cannot start mfa_process of profile {profile!r}: {exc.strerror}"
        ) from None
    try:
        with _terminal_lent_to(process.pid if group else None):
            output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _end_group(process)
        raise CodeError(
            f"mfa_process of profile {profile!r} printed no code within {timeout:.0f} s; "
            "it was stopped, with everything it started",
            hint=f"run it by hand to see why; {environment.MFA_PROCESS_TIMEOUT} sets the time",
        ) from None
    except BaseException:
        _end_group(process)
        raise
    if process.returncode == -signal.SIGINT:
        raise Interrupted("mfa_process was interrupted")
    if process.returncode != 0:
        raise CodeError(
            f"mfa_process of profile {profile!r} failed with exit status {process.returncode}",
            hint="run the command by hand to see why",
        )
    code = output.decode(errors="replace").strip()
    return require_six_digits(code, f"mfa_process of profile {profile!r}")


def _end_group(process: subprocess.Popen[bytes]) -> None:
    """End the process and everything in its group: TERM, a grace second, then KILL."""
    if os.name != "posix":
        process.kill()
        process.wait()
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=_END_GRACE_SECONDS)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextlib.contextmanager
def _terminal_lent_to(group: int | None) -> Iterator[None]:
    """Make ``group`` the terminal's foreground while it runs, if the terminal is ours."""
    descriptor = None
    if group is not None:
        with contextlib.suppress(OSError):
            descriptor = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
            if os.tcgetpgrp(descriptor) != os.getpgrp():
                os.close(descriptor)
                descriptor = None
    if descriptor is None or group is None:
        yield
        return
    try:
        with contextlib.suppress(OSError), _sigttou_blocked():
            os.tcsetpgrp(descriptor, group)
            os.killpg(group, signal.SIGCONT)  # it may have stopped on a read before this
        yield
    finally:
        with contextlib.suppress(OSError), _sigttou_blocked():
            os.tcsetpgrp(descriptor, os.getpgrp())
        os.close(descriptor)


@contextlib.contextmanager
def _sigttou_blocked() -> Iterator[None]:
    """tcsetpgrp from a background group raises SIGTTOU unless it is blocked."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTTOU})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class SeedCode(CodeSource):
    """A TOTP seed in the OS keyring: codes with no prompt, and the exact step of each."""

    tries = 2
    label = "the keyring seed"

    def __init__(self, device: DeviceContext, totp: object) -> None:
        super().__init__(device)
        self.totp = totp

    def next_code(self, attempt: int) -> str:
        step = self.device.current_step()
        last = self.device.cache.last_accepted(self.device.serial)
        if last is not None and step <= last.step:
            self.device.wait_for_step(last.step + 1, "the current code was already used")
            step = max(last.step + 1, self.device.current_step())
        self.step = step
        code: str = self.totp.at(step * STEP_SECONDS)  # type: ignore[attr-defined]
        return sensitive(code)


class TerminalPrompt(CodeSource):
    """Ask on the controlling terminal, which SDKs cannot capture the way they capture pipes."""

    tries = PROMPT_TRIES
    label = "the terminal"

    def __init__(self, device: DeviceContext, terminal: Terminal) -> None:
        super().__init__(device)
        self.terminal = terminal

    def next_code(self, attempt: int) -> str:
        if attempt:
            self.terminal.say(f"STS rejected that code; try {attempt + 1} of {self.tries}")
        question = f"MFA code for {self.device.serial} (profile {self.device.profile}): "
        self.device.activity("asking for a code on its terminal", 0.0)
        while True:
            answer = self.terminal.ask(question).strip()
            if not SIX_DIGITS.fullmatch(answer):
                self.terminal.say("a code is six digits")
            elif self.device.is_spent(answer):
                self.terminal.say("that code was already used; wait for the next one")
            else:
                return sensitive(answer)

    def after_rejection(self) -> None:
        pass  # the person will type a new code


class GuiPrompt(CodeSource):
    """A dialog (zenity, kdialog, osascript) when there is a display but no terminal."""

    tries = PROMPT_TRIES
    label = "the dialog"

    def __init__(self, device: DeviceContext, argv_for: Callable[[str], list[str]]) -> None:
        super().__init__(device)
        self.argv_for = argv_for

    def next_code(self, attempt: int) -> str:
        text = f"MFA code for {self.device.serial} (profile {self.device.profile})"
        if attempt:
            text = f"STS rejected that code. {text}, try {attempt + 1} of {self.tries}"
        self.device.activity("asking for a code in a dialog", _GUI_TIMEOUT + 5)
        try:
            result = subprocess.run(
                self.argv_for(text),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                timeout=_GUI_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise CodeError("nobody answered the MFA dialog") from None
        if result.returncode != 0:
            raise CodeError("the MFA dialog was cancelled")
        code = require_six_digits(result.stdout.decode(errors="replace"), "the dialog")
        if self.device.is_spent(code):
            raise CodeError(
                "the code typed in the dialog was already used",
                hint="wait for the next code on your device and try again",
            )
        return code

    def after_rejection(self) -> None:
        pass


@dataclass
class Terminal:
    """The controlling terminal, opened directly: never stdin/stdout/stderr."""

    reader: IO[str]
    writer: IO[str] = field(repr=False)
    _status_shown: bool = False

    @classmethod
    def open(cls) -> Terminal | None:
        names = ("CONIN$", "CONOUT$") if os.name == "nt" else ("/dev/tty", "/dev/tty")
        try:
            reader = open(names[0], encoding="utf-8")  # noqa: SIM115 - lives as long as the prompt
        except OSError:
            return None
        try:
            writer = open(names[1], "w", encoding="utf-8")  # noqa: SIM115
        except OSError:
            reader.close()
            return None
        return cls(reader, writer)

    def say(self, message: str) -> None:
        self._end_status()
        self.writer.write(f"mfa-session: {message}\n")
        self.writer.flush()

    def status(self, message: str) -> None:
        """One line that each call rewrites in place (a countdown); "" clears it."""
        self.writer.write(f"\r\x1b[2K{f'mfa-session: {message}' if message else ''}")
        self.writer.flush()
        self._status_shown = bool(message)

    def _end_status(self) -> None:
        if self._status_shown:
            self.status("")

    def ask(self, question: str) -> str:
        self._end_status()
        self.writer.write(question)
        self.writer.flush()
        answer = self.reader.readline()
        if not answer:
            raise CodeError("no MFA code was entered (end of input on the terminal)")
        return answer

    def close(self) -> None:
        self._end_status()
        self.reader.close()
        self.writer.close()


def choose_source(
    device: DeviceContext, given: str | None, given_origin: str, mfa_process: str | None
) -> CodeSource:
    """The first available source, in the design's order."""
    if given is not None:
        return GivenCode(device, given, given_origin)
    if mfa_process:
        return ProcessCode(device, mfa_process)
    from mfa_session.os_keyring import KeyringFailed
    from mfa_session.seeds import load_seed

    keyring_failure = None
    device.activity("reading the keyring", 0.0)
    try:
        totp = load_seed(device.serial, device.environ)
    except KeyringFailed as exc:
        totp, keyring_failure = None, exc
    else:
        from mfa_session.keystore import Keystore

        Keystore(device.environ, device.cache.folder).note_seed(device.serial, totp is not None)
    if totp is not None:
        return SeedCode(device, totp)
    fallback: CodeSource | None = None
    if device.terminal is not None:
        fallback = TerminalPrompt(device, device.terminal)
    else:
        argv_for = _dialog_command(device.environ)
        if argv_for is not None:
            fallback = GuiPrompt(device, argv_for)
    if keyring_failure is not None:
        if fallback is None:
            raise keyring_failure
        device.tell(f"{keyring_failure.message}; asking for the code instead")
    if fallback is not None:
        return fallback
    raise OwnCodeFailure(
        f"no way to get an MFA code for profile {device.profile!r}: no terminal and no display",
        hint=f"pass --token-code, set mfa_process in the profile, or store the seed with "
        f"'mfa-session totp set --profile {device.profile}'",
    )


def planned_source(
    serial: str, mfa_process: str | None, environ: Mapping[str, str], seed_stored: bool | None
) -> str:
    """Which source a new session would take its code from, as `status` shows it; whether
    a seed is stored comes from the secret-free record (None: never looked), so listing
    sessions never opens the keyring."""
    if environ.get(environment.TOKEN_CODE):
        return environment.TOKEN_CODE
    if mfa_process:
        return "mfa_process"
    if seed_stored is None:
        return "keyring seed or prompt (not looked up yet)"
    return "keyring seed" if seed_stored else "prompt"


def _dialog_command(environ: Mapping[str, str]) -> Callable[[str], list[str]] | None:
    if sys.platform == "darwin" and shutil.which("osascript"):
        return lambda text: [
            "osascript",
            "-e",
            f'text returned of (display dialog "{text}" default answer "" '
            f'with title "mfa-session")',
        ]
    if not (environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY")):
        return None
    path = environ.get("PATH")
    if shutil.which("zenity", path=path):
        return lambda text: ["zenity", "--entry", "--title=mfa-session", f"--text={text}"]
    if shutil.which("kdialog", path=path):
        return lambda text: ["kdialog", "--title", "mfa-session", "--inputbox", text]
    return None
