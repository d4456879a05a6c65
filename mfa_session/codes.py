"""Where MFA codes come from, in the design's order, and the memory that stops reuse.

AWS accepts each TOTP code once. We remember the last accepted code per device
and, when the only code at hand is that one, wait for the next 30 s step.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO

from mfa_session import environment
from mfa_session.cache import AcceptedCode, SessionCache, code_digest
from mfa_session.errors import CodeError

STEP_SECONDS = 30
PROMPT_TRIES = 3
SIX_DIGITS = re.compile(r"[0-9]{6}")
_PROCESS_TIMEOUT = 120
_GUI_TIMEOUT = 300


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

    def current_step(self) -> int:
        return int(self.clock() // STEP_SECONDS)

    def tell(self, message: str) -> None:
        """Say something to the person: on the terminal when there is one, else on stderr."""
        if self.terminal is not None:
            self.terminal.say(message)
        else:
            print(f"mfa-session: {message}", file=sys.stderr, flush=True)

    def wait_for_step(self, step: int, reason: str) -> None:
        seconds = step * STEP_SECONDS - self.clock()
        if seconds > 0:
            self.tell(f"{reason}; waiting {seconds:.0f} s for the next code")
            self.sleep(seconds + 0.2)

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
    return code


class GivenCode(CodeSource):
    """``--token-code`` or MFA_SESSION_TOKEN_CODE: exactly one code, one attempt."""

    tries = 1

    def __init__(self, device: DeviceContext, code: str, origin: str) -> None:
        super().__init__(device)
        self.label = origin
        self.code = require_six_digits(code, origin)

    def next_code(self, attempt: int) -> str:
        if self.device.is_spent(self.code):
            raise CodeError(
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
        return run_mfa_process(self.command, self.device.profile, self.device.environ)


def run_mfa_process(command: str, profile: str, environ: Mapping[str, str]) -> str:
    """Run a profile's mfa_process with the recursion marker set; its stdout is the code."""
    child_environment = dict(environ)
    child_environment[environment.RESOLVING] = profile
    try:
        result = subprocess.run(  # noqa: S602 - the user's own command, as aws-vault runs it
            command,
            shell=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            env=child_environment,
            timeout=_PROCESS_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise CodeError(
            f"mfa_process of profile {profile!r} ran over {_PROCESS_TIMEOUT} s "
            "without printing a code"
        ) from None
    if result.returncode != 0:
        raise CodeError(
            f"mfa_process of profile {profile!r} failed with exit status {result.returncode}",
            hint="run the command by hand to see why",
        )
    output = result.stdout.decode(errors="replace").strip()
    return require_six_digits(output, f"mfa_process of profile {profile!r}")


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
        return code


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
        while True:
            answer = self.terminal.ask(question).strip()
            if not SIX_DIGITS.fullmatch(answer):
                self.terminal.say("a code is six digits")
            elif self.device.is_spent(answer):
                self.terminal.say("that code was already used; wait for the next one")
            else:
                return answer

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
        self.writer.write(f"mfa-session: {message}\n")
        self.writer.flush()

    def ask(self, question: str) -> str:
        self.writer.write(question)
        self.writer.flush()
        answer = self.reader.readline()
        if not answer:
            raise CodeError("no MFA code was entered (end of input on the terminal)")
        return answer

    def close(self) -> None:
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
    from mfa_session.seeds import load_seed

    totp = load_seed(device.serial)
    if totp is not None:
        return SeedCode(device, totp)
    if device.terminal is not None:
        return TerminalPrompt(device, device.terminal)
    argv_for = _dialog_command(device.environ)
    if argv_for is not None:
        return GuiPrompt(device, argv_for)
    raise CodeError(
        f"no way to get an MFA code for profile {device.profile!r}: no terminal and no display",
        hint=f"pass --token-code, set mfa_process in the profile, or store the seed with "
        f"'mfa-session totp set --profile {device.profile}'",
    )


def planned_source(serial: str, mfa_process: str | None, environ: Mapping[str, str]) -> str:
    """Which source a new session would take its code from, as `status` shows it."""
    from mfa_session.seeds import KeyringUnavailable, read_seed

    if environ.get(environment.TOKEN_CODE):
        return environment.TOKEN_CODE
    if mfa_process:
        return "mfa_process"
    try:
        if read_seed(serial):
            return "keyring seed"
    except KeyringUnavailable:
        return "prompt (no keyring)"
    return "prompt"


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
