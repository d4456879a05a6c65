"""The OS keyring, reached through a worker process with a deadline.

A backend can hang (a locked Secret Service with no prompt, gpg waiting on a
pinentry) or leave helpers behind that keep our stderr open, and an SDK waiting on
credential_process would then hang too. So each batch of keyring operations runs in
a short-lived child (``python -m mfa_session.os_keyring``) in a session of its own:
on time-out the whole session is ended. Values travel through pipes, never argv.
The child's stderr (pass and gpg write there) is kept from the SDK's pipes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from mfa_session import environment
from mfa_session.debug import debug
from mfa_session.errors import CodeError, redact

SERVICE = "mfa-session"
DEFAULT_TIMEOUT = 60.0  # a person may be typing the keyring's password in a dialog
NO_BACKENDS = ("keyring.backends.fail.Keyring", "keyring.backends.null.Keyring")

NO_BACKEND_HINT = (
    "on a desktop, unlock or install a keyring (GNOME Keyring, KWallet, KeePassXC, macOS "
    "Keychain); on a server or over SSH, use pass with gpg-agent: "
    "pipx install 'mfa-session[headless]' (or pipx inject mfa-session keyring-pass), "
    "see docs/security.md#headless-machines; or use mfa_process instead"
)


class KeyringUnavailable(CodeError):
    """No keyring backend works here: nothing can be stored or read."""


class KeyringFailed(KeyringUnavailable):
    """A keyring backend exists but failed or did not answer (locked, D-Bus, gpg trouble)."""


GET, SET, DELETE = "get", "set", "delete"


class Answer:
    """The backend that answered, and one result per operation."""

    __slots__ = ("backend", "results")

    def __init__(self, backend: str, results: list[str | bool | None]) -> None:
        self.backend, self.results = backend, results


# What this process read or wrote lately, so that one miss opens the keyring once
# (prefetch reads the keys and the seed together): one unlock request at most. Kept a
# minute only: a long-running server must see keys rotated meanwhile.
_REMEMBER_SECONDS = 60.0
_known: dict[str, tuple[float, str | None]] = {}
_known_backend = ""


def _recall(user: str) -> tuple[bool, str | None]:
    entry = _known.get(user)
    if entry is None or time.monotonic() - entry[0] > _REMEMBER_SECONDS:
        return False, None
    return True, entry[1]


def prefetch(users: Sequence[str], environ: Mapping[str, str] | None = None) -> None:
    """Read these entries in one call; gets of them in the next minute answer from memory."""
    missing = [user for user in users if not _recall(user)[0]]
    if missing:
        call([(GET, user, None) for user in missing], environ)


def call(
    operations: Sequence[tuple[str, str, str | None]],
    environ: Mapping[str, str] | None = None,
    what: str = "the keyring",
) -> Answer:
    """Run (operation, user, value) triples under service mfa-session, in order: get
    answers the value or None, set answers None, delete answers whether it existed."""
    global _known_backend
    recalled = [_recall(user) for _, user, _ in operations]
    if operations and all(op == GET for op, _, _ in operations) and all(k for k, _ in recalled):
        return Answer(_known_backend, [value for _, value in recalled])
    environ = os.environ if environ is None else environ
    timeout = environment.seconds(environ, environment.KEYRING_TIMEOUT, DEFAULT_TIMEOUT)
    request = json.dumps({"operations": [list(operation) for operation in operations]})
    child_environment = dict(environ)
    tty = controlling_tty_name()
    if tty and not child_environment.get("GPG_TTY"):
        child_environment["GPG_TTY"] = tty  # where gpg-agent's pinentry asks (pass backend)
    try:
        worker = subprocess.Popen(
            [sys.executable, "-m", "mfa_session.os_keyring"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_environment,
            start_new_session=True,
        )
    except OSError as exc:
        raise KeyringFailed(f"cannot start the keyring worker: {exc.strerror}") from None
    try:
        output, errors = worker.communicate(request.encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        _end_session(worker)
        raise KeyringFailed(
            f"the keyring did not answer within {timeout:.0f} s (is it locked?)",
            hint=f"unlock it, or see 'mfa-session doctor'; {environment.KEYRING_TIMEOUT} "
            "sets the time allowed",
        ) from None
    except BaseException:
        _end_session(worker)
        raise
    if errors:  # pass and gpg say why here; never in an error line, which an SDK may log
        debug(
            "keyring worker: %s", redact(" ".join(errors.decode(errors="replace").split()))[-300:]
        )
    try:
        answer: dict[str, Any] = json.loads(output)
    except ValueError:
        raise KeyringFailed(
            f"the keyring worker failed (exit status {worker.returncode})",
            hint="run the command again with --debug to see what the backend said",
        ) from None
    backend = str(answer.get("backend", "?"))
    debug("keyring worker (%s): dumpable flag: %s", backend, answer.get("dumpable"))
    failure = answer.get("error")
    if isinstance(failure, dict):
        if failure.get("no_backend"):
            raise KeyringUnavailable(f"no OS keyring is available for {what}", hint=NO_BACKEND_HINT)
        detail = redact(str(failure.get("message", "")))[:200]
        raise KeyringFailed(
            f"the keyring ({backend}) failed: {failure.get('type', 'error')}"
            + (f": {detail}" if detail else ""),
            hint="unlock the keyring, or see 'mfa-session doctor'",
        )
    results = answer.get("results")
    if not isinstance(results, list) or len(results) != len(operations):
        raise KeyringFailed("the keyring worker sent an answer that could not be read")
    _known_backend = backend
    now = time.monotonic()
    for (operation, user, value), result in zip(operations, results, strict=True):
        if operation == GET:
            _known[user] = (now, result if isinstance(result, str) else None)
        else:
            _known[user] = (now, value if operation == SET else None)
    return Answer(backend, results)


def configured_backend(environ: Mapping[str, str]) -> str | None:
    """The backend PYTHON_KEYRING_BACKEND or keyring's keyringrc.cfg names, read without
    loading keyring or any backend (doctor --offline); None when neither names one."""
    named = (environ.get("PYTHON_KEYRING_BACKEND") or "").strip()
    if named:
        return named
    import configparser
    from pathlib import Path

    from keyring.util.platform_ import config_root  # where keyring looks; loads no backend

    parser = configparser.RawConfigParser()
    try:
        parser.read(Path(config_root()) / "keyringrc.cfg")
        return parser.get("backend", "default-keyring", fallback="").strip() or None
    except (configparser.Error, UnicodeDecodeError):
        return None


def backend_name_or_fail(environ: Mapping[str, str] | None = None) -> str:
    """The backend's name, or KeyringUnavailable / KeyringFailed saying why there is none."""
    return call([], environ).backend


def _end_session(worker: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(worker.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, AttributeError):
        worker.kill()
    worker.wait()


def controlling_tty_name() -> str | None:
    """The path of our controlling terminal (/dev/tty names no device gpg can use)."""
    for descriptor in (0, 1, 2):
        try:
            if os.isatty(descriptor):
                return os.ttyname(descriptor)
        except OSError:
            continue
    try:
        with open("/proc/self/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    number = int(fields[4])  # tty_nr: the field after ppid, pgrp and session
    major, minor = (number >> 8) & 0xFFF, (number & 0xFF) | ((number >> 12) & 0xFFF00)
    if 136 <= major <= 143:  # Unix98 pseudo-terminals
        return f"/dev/pts/{(major - 136) * 256 + minor}"
    return None


def _usable_backend() -> str:
    """The backend's name; NoKeyringError for keyring's "fail" stand-in, which otherwise
    fails only at the first operation."""
    import keyring
    import keyring.errors
    from keyring.backends import fail

    backend = keyring.get_keyring()
    name = f"{type(backend).__module__}.{type(backend).__name__}"
    if isinstance(backend, fail.Keyring):
        raise keyring.errors.NoKeyringError(name)
    return name


def _serve() -> int:
    """The worker: read the operations from stdin, answer JSON on stdout."""
    from mfa_session.hardening import undumpable

    answer: dict[str, Any] = {"dumpable": undumpable()}  # before the request's secrets
    request = json.loads(sys.stdin.read() or "{}")
    try:
        import keyring

        answer["backend"] = _usable_backend()
        results: list[str | bool | None] = []
        for operation, user, value in request.get("operations", []):
            if operation == GET:
                results.append(keyring.get_password(SERVICE, user))
            elif operation == SET:
                keyring.set_password(SERVICE, user, value)
                results.append(None)
            elif operation == DELETE:
                if keyring.get_password(SERVICE, user) is None:
                    results.append(False)
                else:
                    keyring.delete_password(SERVICE, user)
                    results.append(True)
        answer["results"] = results
    except Exception as exc:  # backends raise their own types (locked, D-Bus, gpg, ...)
        import keyring.errors

        message = str(exc)
        for _, _, value in request.get("operations", []):  # a backend may quote what it got
            if isinstance(value, str) and value:
                message = message.replace(value, "[redacted]")
        answer["error"] = {
            "type": type(exc).__name__,
            "message": " ".join(message.split()),  # flattened only once nothing secret is left
            "no_backend": isinstance(exc, keyring.errors.NoKeyringError),
        }
    sys.stdout.write(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(_serve())
