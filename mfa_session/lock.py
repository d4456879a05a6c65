"""One lock per MFA device, and what its holder is doing.

Everything that spends a code of a device runs under its lock, so N processes
started together make one prompt and one STS call. The holder writes a secret-free
state file beside the lock (what it is doing, then how it ended); waiters read it to
tell the person why they wait, to give up when the holder seems stuck, and to fail
within a second with the holder's own reason when it fails, instead of each one
repeating the same doomed attempt. That applies only to a waiter that wants the same
session (a role's failure is not an MFA session's), after it looked in the cache, and
not to a failure of the holder's own way to a code (a code STS rejected, a given code
already used, no terminal): a waiter with another source takes over. A keyring, an
mfa_process or a dialog that failed fails the waiters too: they would use the same.
A holder that dies releases the lock with its process (flock), and the next waiter
simply takes over.
"""

from __future__ import annotations

import os
import time

from mfa_session.cache import CacheFolder, device_name
from mfa_session.debug import debug
from mfa_session.errors import CacheError, MfaSessionError, OwnCodeFailure, WrongCodeError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

LOCK_TIMEOUT_SECONDS = 300.0  # a person may be typing a code for the holder
STUCK_GRACE_SECONDS = 15.0  # past the holder's own bound for a step, it is stuck
_POLL_SECONDS = 0.25
_BUSY, _FAILED, _DONE = "busy", "failed", "done"
_OWN_FAILURE = "own-failure"  # the holder's code source failed: another's may not


class HolderFailed(CacheError):
    """The holder failed to make the session this waiter wants, for a reason it shares."""


class HolderState:
    """One line of the state file: who holds the lock, since when, doing what."""

    __slots__ = ("bound", "hint", "message", "pid", "purpose", "since", "status")

    def __init__(
        self,
        pid: int,
        since: float,
        status: str,
        message: str,
        hint: str = "",
        bound: float = 0.0,
        purpose: str = "",
    ) -> None:
        self.pid, self.since, self.status = pid, since, status
        self.message, self.hint, self.bound, self.purpose = message, hint, bound, purpose

    def encode(self) -> bytes:
        fields = (str(self.pid), f"{self.since:.3f}", self.status, self.message, self.hint)
        clean = (field.replace("\t", " ").replace("\n", " ") for field in fields)
        return ("\t".join(clean) + f"\t{self.bound:.0f}\t{self.purpose}\n").encode()

    @classmethod
    def decode(cls, data: bytes | None) -> HolderState | None:
        if not data:
            return None
        try:
            fields = data.decode().rstrip("\n").split("\t")
            if len(fields) == 6:  # written by a version without purposes
                fields.append("")
            pid, since, status, message, hint, bound, purpose = fields
            return cls(int(pid), float(since), status, message, hint, float(bound), purpose)
        except ValueError:
            return None


class DeviceLock:
    """``with DeviceLock(...) as lock:`` serialises a device for the session ``purpose``
    names; ``lock.doing(...)`` tells waiters what the holder does, and for how long."""

    def __init__(
        self, folder: CacheFolder, serial: str, tell: Callable[[str], None], purpose: str = ""
    ) -> None:
        self.folder, self.serial, self.tell, self.purpose = folder, serial, tell, purpose
        self._state_name = device_name(serial, ".state")
        self._lock: object | None = None
        self._holder_failure: HolderState | None = None

    def __enter__(self) -> DeviceLock:
        lock_name = device_name(self.serial, ".lock")
        if not self._can_create(lock_name):
            self.tell(
                f"the cache folder {self.folder.path} is not writable: going on without the "
                "device lock (parallel processes may each ask for a code)"
            )
            return self
        import filelock  # miss path only

        lock = filelock.FileLock(self.folder.bound_path(lock_name), mode=0o600)
        started = time.time()
        told = ""
        while True:
            try:
                lock.acquire(timeout=_POLL_SECONDS)
                break
            except filelock.Timeout:
                state = HolderState.decode(self.folder.read(self._state_name))
                told = self._waiting(state, started, told)
            except OSError as exc:  # the disk filled up or went read-only meanwhile
                debug("device lock unavailable: %s", exc.strerror)
                return self
        self._lock = lock
        state = HolderState.decode(self.folder.read(self._state_name))
        if (
            state is not None
            and state.status == _FAILED
            and state.since >= started
            and state.purpose == self.purpose
        ):
            self._holder_failure = state
        self.doing("starting")
        return self

    def fail_like_the_holder(self) -> None:
        """Once the caller found nothing in the cache: the holder this waited for failed
        to make the same session, for a reason that is this process's too."""
        state = self._holder_failure
        if state is not None:
            raise HolderFailed(
                f"another mfa-session (pid {state.pid}) could not get a session for "
                f"{self.serial}: {state.message}",
                hint=state.hint or None,
            )

    def _can_create(self, lock_name: str) -> bool:
        path, directory = self.folder._at(lock_name)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=directory)
        except OSError as exc:
            debug("cannot create the device lock: %s", exc.strerror)
            return False
        os.close(descriptor)
        return True

    def _waiting(self, state: HolderState | None, started: float, told: str) -> str:
        """Tell the person once per holder activity; give up on a stuck or slow holder."""
        now = time.time()
        if state is None or state.status != _BUSY:
            what = "another mfa-session is getting a session for this device"
        else:
            what = f"another mfa-session (pid {state.pid}) is {state.message}"
            if state.bound and now - max(state.since, started) > state.bound + STUCK_GRACE_SECONDS:
                raise CacheError(
                    f"{what} for {now - state.since:.0f} s, longer than that can take",
                    hint=f"if it hangs, end it (kill {state.pid}) and try again",
                )
        if now - started > LOCK_TIMEOUT_SECONDS:
            raise CacheError(
                f"waited {LOCK_TIMEOUT_SECONDS:.0f} s for {self.serial}: {what}",
                hint="finish or cancel the other prompt, then try again",
            )
        if what != told:
            self.tell(f"waiting: {what}")
        return what

    def doing(self, what: str, bound: float = 0.0) -> None:
        """Say what the holder does now; ``bound`` is how long that may take, in seconds."""
        if self._lock is not None:
            state = HolderState(os.getpid(), time.time(), _BUSY, what, bound=bound)
            self.folder.try_write(self._state_name, state.encode())

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        lock, self._lock = self._lock, None
        if lock is None:
            return
        now, pid = time.time(), os.getpid()
        if isinstance(exc, HolderFailed) and self._holder_failure is not None:
            state = self._holder_failure  # passed on as it was, to the next waiter too
        elif isinstance(exc, (OwnCodeFailure, WrongCodeError)):
            state = HolderState(pid, now, _OWN_FAILURE, exc.message, purpose=self.purpose)
        elif isinstance(exc, MfaSessionError):
            state = HolderState(pid, now, _FAILED, exc.message, exc.hint or "", 0, self.purpose)
        elif isinstance(exc, KeyboardInterrupt):
            state = HolderState(pid, now, _FAILED, "it was interrupted", purpose=self.purpose)
        elif exc is not None:
            message = "it failed unexpectedly"
            state = HolderState(pid, now, _FAILED, message, purpose=self.purpose)
        else:
            state = HolderState(pid, now, _DONE, "done", purpose=self.purpose)
        self.folder.try_write(self._state_name, state.encode())
        lock.release()  # type: ignore[attr-defined]
