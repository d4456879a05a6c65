"""`doctor`: check what mfa-session depends on and say how to fix what is wrong.

Checks run once per key profile (the profile with the long-term keys and device),
whatever number of profiles lead to it. Online, one signed GetCallerIdentity per
key profile proves the keys work (it needs no MFA) and STS answers, and its Date
header tells the clock's skew. Offline (--offline), nothing is sent and the keyring
is not opened: what the keyring holds comes from the secret-free records.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from mfa_session import codes, environment, os_keyring
from mfa_session.cache import CacheFolder, default_cache_dir
from mfa_session.config import AwsFiles, MfaProfile, SessionPlan, is_own_command
from mfa_session.errors import MfaSessionError
from mfa_session.keystore import Keystore

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
KEY_AGE_WARN_DAYS = 90  # AWS's own advice: rotate access keys at least every 90 days
_MFA_ARN = re.compile(r"arn:aws[\w-]*:iam::\d{12}:mfa/[\w+=,.@/-]+")
_HARDWARE_SERIAL = re.compile(r"[\w+=/:,.@-]{9,256}")
_CLOCK_WARN_SECONDS = 5
_CLOCK_FAIL_SECONDS = 30  # one TOTP step: beyond it, codes start failing
_STS_CHECK_SECONDS = 10.0


class Finding:
    __slots__ = ("check", "fix", "message", "status")

    def __init__(self, check: str, status: str, message: str, fix: str | None = None) -> None:
        self.check, self.status, self.message, self.fix = check, status, message, fix

    def as_dict(self) -> dict[str, str | None]:
        return {
            "check": self.check,
            "status": self.status,
            "message": self.message,
            "fix": self.fix,
        }


def examine(environ: Mapping[str, str], profile: str | None, online: bool = True) -> list[Finding]:
    """Every check, in the order a person would fix things."""
    findings: list[Finding] = []
    folder = _check_cache(environ, findings)
    keystore = Keystore(environ, folder, may_open=online) if folder is not None else None
    try:
        files = AwsFiles(environ, keystore)
    except MfaSessionError as exc:
        return [Finding("config files", FAIL, exc.message, exc.hint), *findings]
    findings.insert(
        0, Finding("config files", OK, f"read {files.config_path} and {files.credentials_path}")
    )
    names = [profile] if profile else _served_profiles(files)
    if not names:
        findings.append(
            Finding(
                "profiles",
                FAIL,
                "no profile has mfa_serial or runs mfa-session",
                "no MFA device yet? 'mfa-session enroll --profile P' creates one; else add "
                "mfa_serial to the profile with your keys (docs/configuration.md)",
            )
        )
    owners: dict[str, MfaProfile] = {}
    for name in names:
        plan = _check_profile(files, name, findings)
        if plan is not None:
            owners.setdefault(plan.mfa.name, plan.mfa)
    backend_ok = _check_backend(environ, online, findings) if owners else True
    for mfa in owners.values():
        _check_serial(mfa, findings)
        if online and keystore is not None:
            _learn_key_age(mfa, keystore, environ)
        _check_keys(files, keystore, mfa, findings)
        _check_code_source(mfa, environ, keystore, online, backend_ok, findings)
        if online:
            findings.extend(_check_sts(mfa, environ))
        else:
            findings.append(Finding(f"STS ({mfa.name})", SKIP, "not checked (--offline)"))
    _check_helper_lines(files, environ, findings)
    return findings


def _served_profiles(files: AwsFiles) -> list[str]:
    served = []
    for name in files.names():
        profile = files.profile(name)
        command = profile.credential_process
        if profile.mfa_serial or (command and is_own_command(command)):
            served.append(name)
    return served


def _check_profile(files: AwsFiles, name: str, findings: list[Finding]) -> SessionPlan | None:
    try:
        plan = files.plan(name)
    except MfaSessionError as exc:
        fix = exc.hint
        if "has no mfa_serial" in exc.message:
            fix = (
                f"no MFA device yet? 'mfa-session enroll --profile {name}' creates one and "
                f"sets it; else {exc.hint}"
            )
        findings.append(Finding(f"profile {name}", FAIL, exc.message, fix))
        return None
    roles = " then ".join(hop.role_arn for hop in plan.hops)
    message = f"keys of profile {plan.mfa.name}, MFA device {plan.mfa.mfa_serial}" + (
        f", role {roles}" if roles else ""
    )
    findings.append(Finding(f"profile {name}", OK, message))
    for note in plan.notes:
        findings.append(
            Finding(
                f"profile {name}",
                WARN,
                note,
                "remove credential_process (or role_arn) from that profile",
            )
        )
    return plan


def _check_serial(mfa: MfaProfile, findings: list[Finding]) -> None:
    serial = mfa.mfa_serial
    check = f"mfa_serial ({mfa.name})"
    if _MFA_ARN.fullmatch(serial):
        return
    if _HARDWARE_SERIAL.fullmatch(serial) and not serial.startswith("arn:"):
        findings.append(
            Finding(
                check,
                WARN,
                f"{serial} looks like a hardware token's serial number, not a virtual device ARN",
                "that is fine for a hardware TOTP token; otherwise copy the ARN from IAM",
            )
        )
        return
    findings.append(
        Finding(
            check,
            FAIL,
            f"{serial!r} is not an MFA device ARN",
            "copy the ARN (arn:aws:iam::ACCOUNT:mfa/NAME) from IAM",
        )
    )


def _check_keys(
    files: AwsFiles, keystore: Keystore | None, mfa: MfaProfile, findings: list[Finding]
) -> None:
    """Where the long-term keys live, and how old they are when that is known."""
    keys, check = mfa.keys, f"keys ({mfa.name})"
    if keys.in_keyring:
        shown = keys.access_key_id or "id not recorded yet"
        findings.append(Finding(check, OK, f"in the keyring ({shown})"))
    else:
        findings.append(
            Finding(
                check,
                WARN,
                f"access key {keys.access_key_id} is in plaintext in {keys.where}, readable "
                "by every program you run and by backups",
                f"move it into the keyring: mfa-session keys import --profile {mfa.name}",
            )
        )
    record = keystore.record(mfa.name) if keystore is not None else None
    if record is None or record.access_key_id != keys.access_key_id or not record.created:
        return
    from mfa_session.commands.status import age_days

    age = age_days(record.created)
    if age > KEY_AGE_WARN_DAYS:
        findings.append(
            Finding(
                f"key age ({mfa.name})",
                WARN,
                f"access key {keys.access_key_id} is {age} days old (AWS advises rotating "
                f"every {KEY_AGE_WARN_DAYS})",
                f"mfa-session keys rotate --profile {mfa.name}",
            )
        )
    else:
        findings.append(Finding(f"key age ({mfa.name})", OK, f"{age} days old"))


def _learn_key_age(mfa: MfaProfile, keystore: Keystore, environ: Mapping[str, str]) -> None:
    """With a cached MFA session (no new code), ask IAM when the key was created."""
    from mfa_session.cache import SessionCache, SessionKey
    from mfa_session.iam import Iam
    from mfa_session.sts import time_budget

    key_id = mfa.keys.access_key_id
    session = SessionCache(keystore.folder).read(SessionKey(mfa.name, key_id, mfa.mfa_serial))
    if session is None or session.seconds_left() < 60:
        return
    try:
        budget = min(_STS_CHECK_SECONDS, time_budget(environ))
        listed = Iam(mfa, via=session, budget=budget).access_keys()
    except MfaSessionError:
        return  # no permission, or IAM away: the age stays unknown
    for key in listed:
        if key.access_key_id == key_id and key.created:
            keystore.note_created(mfa.name, key_id, key.created)


def _check_backend(environ: Mapping[str, str], online: bool, findings: list[Finding]) -> bool:
    """Is there a keyring at all? Offline it is not asked (asking starts the backend), but
    a configuration that names no backend at all is seen without it."""
    if not online:
        configured = os_keyring.configured_backend(environ)
        if configured in os_keyring.NO_BACKENDS:
            findings.append(
                Finding(
                    "keyring",
                    WARN,
                    f"the keyring is configured as {configured}: there is none for keys and seeds",
                    headless_recipe(environ),
                )
            )
            return False
        findings.append(Finding("keyring", SKIP, "not checked (--offline)"))
        return True
    try:
        backend = os_keyring.backend_name_or_fail(environ)
    except os_keyring.KeyringUnavailable as exc:
        if isinstance(exc, os_keyring.KeyringFailed):
            findings.append(Finding("keyring", FAIL, exc.message, exc.hint))
        else:
            findings.append(
                Finding(
                    "keyring",
                    WARN,
                    "no keyring backend works here: keys and seeds can only stay in files, "
                    "codes only come from a prompt or mfa_process",
                    headless_recipe(environ),
                )
            )
        return False
    findings.append(Finding("keyring", OK, backend))
    return True


def headless_recipe(environ: Mapping[str, str]) -> str:
    """The steps to an encrypted store unlocked once per login, for this very machine."""
    steps = []
    if not shutil.which("pass", path=environ.get("PATH")) or not shutil.which(
        "gpg", path=environ.get("PATH")
    ):
        steps.append(_install_command())
    if not _module_available("keyring_pass"):
        in_pipx = "pipx" in Path(sys.prefix).parts
        steps.append(
            "pipx inject mfa-session keyring-pass"
            if in_pipx
            else f"{sys.executable} -m pip install 'mfa-session[headless]'"
        )
    home = Path(environ.get("HOME") or "~").expanduser()
    if not (home / ".password-store" / ".gpg-id").exists() and not environ.get(
        "PASSWORD_STORE_DIR"
    ):
        steps.append(
            'gpg --quick-gen-key "$USER <$USER@localhost>" default default never && '
            "pass init \"$(gpg --with-colons -K | awk -F: '/^fpr:/{print $10; exit}')\""
        )
    config = Path(environ.get("XDG_CONFIG_HOME") or home / ".config") / "python_keyring"
    steps.append(
        f"printf '[backend]\\ndefault-keyring = keyring_pass.PasswordStoreBackend\\n' > "
        f"{config}/keyringrc.cfg (mkdir -p {config} first)"
    )
    steps.append("add 'export GPG_TTY=$(tty)' to your shell's startup file")
    return "; ".join(steps) + " (see docs/security.md#headless-machines)"


def _install_command() -> str:
    try:
        release = Path("/etc/os-release").read_text(encoding="utf-8")
    except OSError:
        release = ""
    if re.search(r"^ID(_LIKE)?=.*\b(debian|ubuntu)\b", release, re.M):
        return "sudo apt-get install pass gnupg pinentry-curses"
    if re.search(r"^ID(_LIKE)?=.*\b(fedora|rhel)\b", release, re.M):
        return "sudo dnf install pass gnupg2 pinentry"
    if sys.platform == "darwin":
        return "brew install pass gnupg pinentry"
    return "install pass, gnupg and a pinentry with your package manager"


def _module_available(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _check_code_source(
    mfa: MfaProfile,
    environ: Mapping[str, str],
    keystore: Keystore | None,
    online: bool,
    backend_ok: bool,
    findings: list[Finding],
) -> None:
    serial, name = mfa.mfa_serial, mfa.name
    check = f"code source ({name})"
    if environ.get(environment.TOKEN_CODE):
        findings.append(Finding(check, OK, f"{environment.TOKEN_CODE} is set"))
        return
    command = mfa.profile.mfa_process
    if command:
        try:
            codes.run_mfa_process(command, name, environ, codes.process_timeout(environ))
        except MfaSessionError as exc:
            findings.append(Finding(check, FAIL, exc.message, exc.hint))
        else:
            findings.append(Finding(check, OK, "mfa_process printed a six-digit code"))
        return
    try:
        no_keyring = not online and not backend_ok  # configured to have none
        stored = False if no_keyring else _seed_stored(serial, environ, keystore, online)
    except os_keyring.KeyringFailed as exc:
        findings.append(Finding(check, FAIL, exc.message, exc.hint))
        return
    if stored is None and not online:
        findings.append(Finding(check, SKIP, "whether the keyring holds a seed is not known yet"))
        return
    if stored:
        findings.append(Finding(check, OK, f"a TOTP seed for {serial} is in the keyring"))
        if mfa.keys.in_keyring:
            findings.append(
                Finding(
                    f"one factor ({name})",
                    WARN,
                    "the TOTP seed and the long-term keys are in the same keyring: whoever "
                    "unlocks it holds both factors",
                    "keep the seed on your phone, or use a hardware token through mfa_process "
                    "(e.g. ykman); see docs/security.md#one-factor-in-disguise",
                )
            )
        return
    terminal = codes.Terminal.open()
    hint = f"to skip the prompt: mfa-session totp set --profile {name}" if backend_ok else None
    if terminal is not None:
        terminal.close()
        findings.append(
            Finding(
                check,
                OK,
                "no seed or mfa_process: you will be asked on the terminal (not when an SDK "
                "runs without one)",
                hint,
            )
        )
        return
    findings.append(
        Finding(
            check,
            FAIL,
            "no code source: no mfa_process, no seed in the keyring, no terminal",
            f"run 'mfa-session totp set --profile {name}' or set mfa_process"
            if backend_ok
            else "set mfa_process in the profile (there is no keyring for a seed)",
        )
    )


def _seed_stored(
    serial: str, environ: Mapping[str, str], keystore: Keystore | None, online: bool
) -> bool | None:
    """Online: ask the keyring (and update the record); offline: the record only."""
    if not online:
        return keystore.seed_stored(serial) if keystore is not None else None
    from mfa_session import seeds

    try:
        stored = seeds.read_seed(serial, environ) is not None
    except os_keyring.KeyringFailed:
        raise
    except os_keyring.KeyringUnavailable:
        return False
    if keystore is not None:
        keystore.note_seed(serial, stored)
    return stored


def _check_sts(mfa: MfaProfile, environ: Mapping[str, str]) -> list[Finding]:
    """One GetCallerIdentity signed with the long-term keys: they work, STS answers, and
    the Date of its answer tells this clock's skew (SigV4 and TOTP both need the clock)."""
    from botocore.exceptions import ClientError

    from mfa_session.deadline import within
    from mfa_session.sts import new_client, time_budget, transport_error

    check = f"STS ({mfa.name})"
    budget = min(_STS_CHECK_SECONDS, time_budget(environ))
    try:
        client: Any = new_client(mfa, None, "sts", budget=budget)
    except MfaSessionError as exc:
        return [Finding(check, FAIL, exc.message, exc.hint)]
    endpoint = client.meta.endpoint_url
    found: list[Finding] = []
    try:
        response: dict[str, Any] = within(budget, client.get_caller_identity)
        found.append(
            Finding(check, OK, f"the keys work ({response.get('Arn')}); STS at {endpoint} answers")
        )
    except ClientError as exc:
        response = dict(exc.response)
        code = str(response.get("Error", {}).get("Code", ""))
        found.append(
            Finding(
                check,
                FAIL,
                f"STS at {endpoint} refused access key {mfa.keys.access_key_id} ({code})",
                f"check the key in IAM; replace it with 'mfa-session keys add --profile {mfa.name}'"
                " or in its file",
            )
        )
    except MfaSessionError as exc:  # the keyring could not give the secret
        return [Finding(check, FAIL, exc.message, exc.hint)]
    except Exception as exc:
        failure = transport_error(exc, "STS", endpoint, "AWS_ENDPOINT_URL_STS", "GetCallerIdentity")
        if failure is None:
            raise
        return [Finding(check, FAIL, failure.message, failure.hint)]
    date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    if date:
        found.append(_clock(date))
    return found


def _clock(date: str) -> Finding:
    skew = (datetime.now(timezone.utc) - parsedate_to_datetime(date)).total_seconds()
    message = f"this clock is {abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} STS"
    fix = "sync the clock (e.g. 'timedatectl set-ntp true'); TOTP codes change every 30 s"
    if abs(skew) > _CLOCK_FAIL_SECONDS:
        return Finding("clock", FAIL, message, fix)
    if abs(skew) > _CLOCK_WARN_SECONDS:
        return Finding("clock", WARN, message, fix)
    return Finding("clock", OK, message)


def _check_helper_lines(
    files: AwsFiles, environ: Mapping[str, str], findings: list[Finding]
) -> None:
    """Each credential_process that runs mfa-session must find this installation on PATH."""
    ours = _our_executable()
    for name in files.names():
        command = files.profile(name).credential_process
        if not command or not is_own_command(command):
            continue
        program = command.split()[0].strip("\"'")
        check = f"credential_process ({name})"
        if program in ("python", "python3") or program.endswith(("python", "python3")):
            findings.append(Finding(check, OK, f"runs {command.split()[0]} -m mfa_session"))
            continue
        found = shutil.which(program, path=environ.get("PATH"))
        if found is None:
            findings.append(
                Finding(
                    check,
                    FAIL,
                    f"{program!r} is not on PATH: SDKs will fail to run it",
                    f"use the full path: {ours}",
                )
            )
        elif ours is not None and Path(found).resolve() != Path(ours).resolve():
            findings.append(
                Finding(
                    check,
                    WARN,
                    f"{program!r} runs {found}, not this mfa-session ({ours})",
                    f"use the full path: {ours}",
                )
            )
        else:
            findings.append(Finding(check, OK, f"runs {found}"))


def _our_executable() -> str | None:
    candidate = Path(sys.executable).parent / (
        "mfa-session.exe" if os.name == "nt" else "mfa-session"
    )
    return str(candidate) if candidate.exists() else shutil.which("mfa-session")


def _check_cache(environ: Mapping[str, str], findings: list[Finding]) -> CacheFolder | None:
    path = default_cache_dir(environ)
    try:
        folder = CacheFolder(path)
    except MfaSessionError as exc:
        findings.append(Finding("cache folder", FAIL, exc.message, exc.hint))
        return None
    findings.append(Finding("cache folder", OK, f"{path} is private (0700, yours)"))
    return folder
