"""Enrollment: the seed document's console steps, done from the terminal with IAM.

Create a virtual MFA device, show its QR code, keep the seed in the keyring, enable
the device with two consecutive codes and write ``mfa_serial`` into the profile.
Everything that can be checked is checked before the device exists; once it
exists, any failure (Ctrl-C included) deletes it again, so a failed enrollment
leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NoReturn

from mfa_session import os_keyring, seeds
from mfa_session.cache import AcceptedCode, SessionCache, code_digest
from mfa_session.codes import Terminal
from mfa_session.config import AwsFiles, MfaProfile, Profile, StaticKeys, delegate_of
from mfa_session.config_edit import ConfigEdit, section_name
from mfa_session.debug import debug
from mfa_session.errors import (
    CodeError,
    ConfigError,
    IamError,
    Interrupted,
    MfaSessionError,
    UsageError,
    sensitive,
)
from mfa_session.iam import (
    MAX_MFA_DEVICES,
    CodesRejected,
    Iam,
    IamNotFound,
    IamUnavailable,
    NewDevice,
)
from mfa_session.interrupts import signals_ignored, signals_interrupt
from mfa_session.sts import time_budget
from mfa_session.totp import SIX_DIGITS, STEP_SECONDS

TYPED_TRIES = 3
ISSUER = "Amazon Web Services"


class EnrollOptions:
    __slots__ = ("device_name", "profile", "qr_png", "show_qr", "store")

    def __init__(
        self,
        profile: str,
        device_name: str | None = None,
        store: bool = True,
        show_qr: bool = True,
        qr_png: str | None = None,
    ) -> None:
        self.profile = profile
        self.device_name = device_name
        self.store = store
        self.show_qr = show_qr
        self.qr_png = qr_png


class RootUserError(MfaSessionError):
    """The profile's keys are the root user's, whose MFA only the console can set up."""


def enroll(options: EnrollOptions, environ: Mapping[str, str], say: Callable[[str], None]) -> None:
    """Enroll a new virtual MFA device for the IAM user behind ``options.profile``."""
    files = AwsFiles(environ)
    profile = files.profile(options.profile)
    keys = _own_keys(profile, files)
    edit = ConfigEdit(files.config_path, profile.name)  # a config we cannot edit: stop now
    cache = SessionCache.from_environ(environ)  # an unsafe cache folder: stop now
    if options.store:
        try:  # no keyring: say so before anything is created
            os_keyring.call([], environ)
        except os_keyring.KeyringUnavailable as exc:
            raise os_keyring.KeyringUnavailable(
                exc.message, hint=f"{exc.hint}; or enroll with --no-store and use a phone app"
            ) from None
    _check_png_path(options.qr_png)
    terminal = Terminal.open()
    try:
        _check_ways_to_the_seed(options, terminal)
        enrollment = _Enrollment(options, environ, files, profile, keys, edit, terminal, say)
        enrollment.run(cache)
    finally:
        if terminal is not None:
            terminal.close()


class _Enrollment:
    def __init__(
        self,
        options: EnrollOptions,
        environ: Mapping[str, str],
        files: AwsFiles,
        profile: Profile,
        keys: StaticKeys,
        edit: ConfigEdit,
        terminal: Terminal | None,
        say: Callable[[str], None],
    ) -> None:
        self.options, self.environ, self.files = options, environ, files
        self.profile, self.keys, self.edit = profile, keys, edit
        self.terminal, self.say = terminal, say
        self.stored = False
        self.png_written = False
        self.backend = "?"

    def run(self, cache: SessionCache) -> None:
        from mfa_session.sts import Sts

        # The profile may not have a device yet: an empty serial is enough to sign calls.
        mfa = MfaProfile(self.profile, self.keys, "")
        arn = Sts(mfa, time_budget(self.environ)).caller_arn(None)
        account = arn.split(":")[4]
        if arn.endswith(":root"):
            self.say(root_guidance(self.profile.name, account, self.files.config_path))
            raise RootUserError(
                "AWS lets only the console enable MFA for the root user",
                hint="follow the steps above; then use an IAM user, not root keys",
            )
        if ":user/" not in arn:
            raise ConfigError(
                f"the keys of profile {self.profile.name!r} are not an IAM user's ({arn})",
                hint="enroll needs the long-term access keys of the IAM user",
            )
        user_name = arn.rsplit("/", 1)[-1]
        iam = Iam(mfa, budget=time_budget(self.environ))
        active = iam.mfa_devices(user_name)
        if len(active) >= MAX_MFA_DEVICES:
            raise IamError(
                f"IAM user {user_name} already has the {MAX_MFA_DEVICES} MFA devices AWS allows",
                hint="remove one in IAM before adding another",
            )
        if active:
            iam = self._iam_with_mfa_session(mfa, active)
        name = self.options.device_name or _default_device_name(user_name, active)
        with signals_interrupt():
            device = self._create(iam, name, f"arn:aws:iam::{account}:mfa/{name}")
            accepted = None
            try:
                accepted = self._enable(iam, user_name, account, device)
            except BaseException as exc:
                if not (_outcome_unknown(exc) and self._enabled_after_all(iam, user_name, device)):
                    self._roll_back(iam, device, exc)
        self._finish(user_name, device)
        if accepted is not None:
            try:  # so that the next session waits for a code IAM has not seen
                cache.remember_accepted(device.serial, accepted)
            except (OSError, MfaSessionError) as exc:
                debug("could not remember the enable codes: %s", exc)

    def _create(self, iam: Iam, name: str, expected_serial: str) -> NewDevice:
        """CreateVirtualMFADevice; when its outcome is unknown, delete what it may have made."""
        try:
            return iam.create_virtual_device(name)
        except BaseException as exc:
            if not _outcome_unknown(exc):
                raise
            with signals_ignored():
                deleted, failure = _delete(iam, expected_serial)
            if failure is not None:
                undone = (
                    f"device {expected_serial} may exist unused ({failure}); delete it with "
                    f"'aws iam delete-virtual-mfa-device --serial-number {expected_serial}'"
                )
            elif deleted:
                undone = f"rolled back: the new device {expected_serial} was deleted"
            else:
                undone = "no device was left behind"
            _raise_with(exc, undone)

    def _iam_with_mfa_session(self, mfa: MfaProfile, active: list[str]) -> Iam:
        """A second device needs an MFA session: one code from an active device."""
        from mfa_session.session import SessionRequest, get_session

        usable = [serial for serial in active if ":u2f/" not in serial]
        configured = self.profile.mfa_serial
        if not usable:
            raise IamError(
                "the user's active MFA devices are all security keys (FIDO), which AWS APIs "
                "cannot use, and adding a device takes an MFA session",
                hint="add the virtual device in the console, then store its seed with "
                f"'mfa-session totp set --profile {self.profile.name}'",
            )
        if configured in usable:
            serial = configured
        elif len(usable) == 1:
            serial = usable[0]
        else:
            raise IamError(
                f"IAM user already has {len(usable)} MFA devices; adding one takes an MFA "
                "session, and the profile does not say which device to use",
                hint=f"set mfa_serial under [{section_name(self.profile.name)}] to one of: "
                + ", ".join(usable),
            )
        self.say(f"an MFA device is already active ({serial}): getting an MFA session with it")
        session = get_session(SessionRequest(self.profile.name, mfa_serial=serial), self.environ)
        return Iam(mfa, via=session.credentials, budget=time_budget(self.environ))

    def _enable(self, iam: Iam, user_name: str, account: str, device: NewDevice) -> AcceptedCode:
        totp = seeds.parse_seed(device.seed, "the new device's seed")
        self.say(f"created virtual MFA device {device.serial}")
        if self.options.show_qr and self.terminal is not None:
            uri = totp.provisioning_uri(name=f"{user_name}@{account}", issuer_name=ISSUER)
            show_qr(uri, self.terminal)
        if self.options.qr_png:
            self._save_png(self.options.qr_png, device.qr_png)
        if self.options.store:
            self.stored = True  # before the call: an interrupt inside it must still undo it
            self.backend = seeds.store_seed(device.serial, device.seed, self.environ)
            # The previous and the current code: consecutive, and no wait for a new step.
            step = int(time.time() // STEP_SECONDS)
            first, second = (sensitive(totp.at(s * STEP_SECONDS)) for s in (step - 1, step))
            iam.enable(user_name, device.serial, first, second)
            return AcceptedCode(step, code_digest(device.serial, second))
        if self.terminal is None:
            raise AssertionError("checked before the device was created")
        for attempt in range(1, TYPED_TRIES + 1):
            first, second = _ask_two_codes(self.terminal)
            try:
                iam.enable(user_name, device.serial, first, second)
            except CodesRejected:
                if attempt == TYPED_TRIES:
                    raise
                self.terminal.say(
                    f"IAM rejected those codes; try {attempt + 1} of {TYPED_TRIES} "
                    "(two codes in a row from the new entry in your app)"
                )
                continue
            break
        return AcceptedCode(int(time.time() // STEP_SECONDS), code_digest(device.serial, second))

    def _save_png(self, path: str, png: bytes) -> None:
        """IAM's QR code PNG: a new 0600 file, never an overwrite."""
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise UsageError(f"{path} already exists: the QR code is never written over") from None
        except OSError as exc:
            raise ConfigError(f"cannot create {path}: {exc.strerror}") from None
        self.png_written = True
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(png)
        self.say(f"saved the QR code to {path} (0600; it holds the seed: delete it once scanned)")

    def _enabled_after_all(self, iam: Iam, user_name: str, device: NewDevice) -> bool:
        """After an interrupt or a lost answer: did IAM enable the device anyway?"""
        with signals_ignored():
            try:
                enabled = device.serial in iam.mfa_devices(user_name)
            except MfaSessionError:
                return False
        if enabled:
            self.say(f"IAM had enabled {device.serial} before the interruption: keeping it")
        return enabled

    def _roll_back(self, iam: Iam, device: NewDevice, cause: BaseException) -> NoReturn:
        """Undo what enrollment made, then raise what went wrong, saying what was undone."""
        with signals_ignored():  # a second Ctrl-C must not leave the device behind
            summary = self._undo(iam, device)
        _raise_with(cause, summary)

    def _undo(self, iam: Iam, device: NewDevice) -> str:
        """Delete the device; only then the seed and the PNG, which would be its last copies."""
        _, failure = _delete(iam, device.serial)
        if failure is not None:
            return (
                f"the new device {device.serial} could not be deleted ({failure}), so its "
                "seed was kept; check it in IAM, and if it is not enabled delete it with "
                f"'aws iam delete-virtual-mfa-device --serial-number {device.serial}'"
            )
        undone = [f"rolled back: the new device {device.serial} was deleted"]
        if self.stored:
            with contextlib.suppress(MfaSessionError):
                seeds.remove_seed(device.serial)
                undone.append("its seed was removed from the keyring")
        if self.png_written and self.options.qr_png:
            with contextlib.suppress(OSError):
                Path(self.options.qr_png).unlink()
                undone.append("the QR code file was deleted")
        return "; ".join(undone)

    def _finish(self, user_name: str, device: NewDevice) -> None:
        self.say(f"enabled {device.serial} for IAM user {user_name}")
        previous = self.edit.previous
        try:
            backup = self.edit.apply(device.serial)
        except MfaSessionError as exc:
            raise ConfigError(
                f"the device is enabled, but {exc.message}",
                hint=f"add 'mfa_serial = {device.serial}' under "
                f"[{section_name(self.profile.name)}] in {self.edit.path} by hand",
            ) from exc
        change = f"set mfa_serial of profile {self.profile.name} in {self.edit.path}"
        if previous and previous != device.serial:
            change += f" (it was {previous})"
        if backup:
            change += f"; backup: {backup}"
        self.say(change)
        if self.options.store:
            self.say(
                f"the seed is in the keyring ({self.backend}): codes need no phone; "
                f"'mfa-session totp code --profile {self.profile.name}' shows one"
            )
        else:
            self.say("the seed was not stored: codes come from your authenticator app")


def root_guidance(profile: str, account: str, config_path: str) -> str:
    section = section_name(profile)
    return f"""\
Profile {profile!r} holds access keys of the ROOT user of account {account}.
AWS lets no API or CLI enable the root user's MFA: only the console can. From here:
  1. Sign in to https://console.aws.amazon.com/ as the root user and open
     "Security credentials" > "Multi-factor authentication (MFA)" > "Assign MFA device".
  2. Name the device (say root-mfa) and choose "Authenticator app".
  3. Put its ARN in {config_path} under [{section}]:
       mfa_serial = arn:aws:iam::{account}:mfa/root-mfa   (with the name you chose)
  4. Click "Show secret key", copy it, and run
       mfa-session totp set --profile {profile}
     then paste it at the hidden prompt (or scan the QR code with your phone app).
  5. Type two consecutive codes into the console: run
       mfa-session totp code --profile {profile}
     once, and again when 30 s have passed; then "Add MFA".
Root access keys should not exist at all: create an IAM user for daily work (and
enroll it with 'mfa-session enroll'), then delete these keys in "Security credentials".
"""


def show_qr(uri: str, terminal: Terminal) -> None:
    """The otpauth URI as a QR code on the terminal itself (never stdout: it is the seed)."""
    import segno

    terminal.writer.write("\nscan this with your authenticator app:\n")
    segno.make(uri, error="m").terminal(out=terminal.writer, compact=True)  # type: ignore[arg-type]
    terminal.writer.flush()


def _ask_two_codes(terminal: Terminal) -> tuple[str, str]:
    terminal.say("scan the QR code, then type two consecutive codes from your app")
    first = _ask_code(terminal, "first code: ")
    while True:
        second = _ask_code(terminal, "next code (wait for it to change): ")
        if second != first:
            return first, second
        terminal.say("that is the same code: wait until the app shows the next one")


def _ask_code(terminal: Terminal, question: str) -> str:
    for _ in range(TYPED_TRIES):
        answer = terminal.ask(question).strip()
        if SIX_DIGITS.fullmatch(answer):
            return sensitive(answer)
        terminal.say("a code is six digits")
    raise CodeError("no six-digit code was typed")


def _delete(iam: Iam, serial: str) -> tuple[bool, str | None]:
    """Delete an unenabled device: (whether it existed, why it could not be deleted)."""
    try:
        iam.delete_virtual_device(serial)
    except IamNotFound:
        return False, None
    except MfaSessionError as exc:
        return False, exc.message
    return True, None


def _outcome_unknown(exc: BaseException) -> bool:
    """Whether IAM may have done what was asked although we saw a failure."""
    return isinstance(exc, KeyboardInterrupt | IamUnavailable) or not isinstance(
        exc, MfaSessionError
    )


def _raise_with(cause: BaseException, summary: str) -> NoReturn:
    """Raise what went wrong, with what was undone after it."""
    if isinstance(cause, KeyboardInterrupt):
        raise Interrupted(f"enrollment interrupted; {summary}") from None
    if isinstance(cause, MfaSessionError):
        raise type(cause)(f"{cause.message}; {summary}", hint=cause.hint) from cause
    raise IamError(f"enrollment failed ({type(cause).__name__}); {summary}") from cause


def _own_keys(profile: Profile, files: AwsFiles) -> StaticKeys:
    if not profile.has_own_keys():
        owner = delegate_of(profile)
        raise ConfigError(
            f"profile {profile.name!r} has no long-term access keys: enroll works on the "
            "profile that holds the IAM user's keys",
            hint=f"run 'mfa-session enroll --profile {owner}'"
            if owner
            else f"add aws_access_key_id/aws_secret_access_key under [{profile.name}] in "
            f"{files.credentials_path}, or 'mfa-session keys add --profile {profile.name}'",
        )
    keys = files.keys_of(profile)
    if profile.get("aws_session_token"):
        raise ConfigError(
            f"profile {profile.name!r} holds temporary credentials (aws_session_token)",
            hint="enroll needs the IAM user's long-term access keys",
        )
    return keys


def _check_png_path(path: str | None) -> None:
    if path is None:
        return
    if Path(path).is_symlink() or Path(path).exists():
        raise UsageError(f"{path} already exists: the QR code is never written over")
    if not Path(path).absolute().parent.is_dir():
        raise UsageError(f"the folder of {path} does not exist")


def _check_ways_to_the_seed(options: EnrollOptions, terminal: Terminal | None) -> None:
    if options.store:
        return
    if terminal is None:
        raise UsageError(
            "--no-store needs a terminal: you type two codes from your authenticator app",
            hint="run enroll in a terminal, or let it keep the seed in the keyring",
        )
    if not options.show_qr and not options.qr_png:
        raise UsageError(
            "with --no-store and --no-qr the seed would reach no app",
            hint="drop --no-qr, or add --qr-png PATH",
        )


def _default_device_name(user_name: str, active: list[str]) -> str:
    """The user's name, as the console suggests; a suffix when that name is taken."""
    taken = {serial.rsplit("/", 1)[-1] for serial in active}
    name = user_name
    number = 2
    while name in taken:
        name = f"{user_name}-{number}"
        number += 1
    return name
