"""`doctor`: check what mfa-session depends on and say how to fix what is wrong."""

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

from mfa_session import codes, environment, os_keyring, seeds
from mfa_session.cache import default_cache_dir, ensure_private_dir
from mfa_session.config import AwsFiles, SessionPlan, is_own_command
from mfa_session.errors import MfaSessionError

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
_MFA_ARN = re.compile(r"arn:aws[\w-]*:iam::\d{12}:mfa/[\w+=,.@/-]+")
_HARDWARE_SERIAL = re.compile(r"[\w+=/:,.@-]{9,256}")
_CLOCK_WARN_SECONDS = 5
_CLOCK_FAIL_SECONDS = 30  # one TOTP step: beyond it, codes start failing


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
    try:
        files = AwsFiles(environ)
    except MfaSessionError as exc:
        return [Finding("config files", FAIL, exc.message, exc.hint)]
    findings.append(
        Finding("config files", OK, f"read {files.config_path} and {files.credentials_path}")
    )
    names = [profile] if profile else _served_profiles(files)
    if not names:
        findings.append(
            Finding(
                "profiles",
                FAIL,
                "no profile has mfa_serial or runs mfa-session",
                "add mfa_serial to the profile with your keys; see docs/configuration.md",
            )
        )
    plans: dict[str, SessionPlan] = {}
    for name in names:
        plan = _check_profile(files, name, findings)
        if plan is not None:
            plans[name] = plan
    for plan in plans.values():
        _check_serial(plan, findings)
        _check_code_source(plan, environ, findings)
    _check_helper_lines(files, names, environ, findings)
    _check_cache(environ, findings)
    first = next(iter(plans.values()), None)
    if online and first is not None:
        findings.append(_check_clock(first))
    elif first is not None:
        findings.append(Finding("clock", SKIP, "not checked (--offline)"))
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
        findings.append(Finding(f"profile {name}", FAIL, exc.message, exc.hint))
        return None
    roles = " then ".join(hop.role_arn for hop in plan.hops)
    message = (
        f"keys of profile {plan.mfa.name} ({plan.mfa.keys.access_key_id}), "
        f"MFA device {plan.mfa.mfa_serial}" + (f", role {roles}" if roles else "")
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


def _check_serial(plan: SessionPlan, findings: list[Finding]) -> None:
    serial = plan.mfa.mfa_serial
    if _MFA_ARN.fullmatch(serial):
        return
    if _HARDWARE_SERIAL.fullmatch(serial) and not serial.startswith("arn:"):
        findings.append(
            Finding(
                "mfa_serial",
                WARN,
                f"{serial} looks like a hardware token's serial number, not a virtual device ARN",
                "that is fine for a hardware TOTP token; otherwise copy the ARN from IAM",
            )
        )
        return
    findings.append(
        Finding(
            "mfa_serial",
            FAIL,
            f"{serial!r} is not an MFA device ARN",
            "copy the ARN (arn:aws:iam::ACCOUNT:mfa/NAME) from IAM",
        )
    )


def _check_code_source(
    plan: SessionPlan, environ: Mapping[str, str], findings: list[Finding]
) -> None:
    serial, name = plan.mfa.mfa_serial, plan.mfa.name
    check = f"code source ({name})"
    if environ.get(environment.TOKEN_CODE):
        findings.append(Finding(check, OK, f"{environment.TOKEN_CODE} is set"))
        return
    command = plan.mfa.profile.mfa_process
    if command:
        try:
            codes.run_mfa_process(command, name, environ)
        except MfaSessionError as exc:
            findings.append(Finding(check, FAIL, exc.message, exc.hint))
        else:
            findings.append(Finding(check, OK, "mfa_process printed a six-digit code"))
        return
    try:
        seed = seeds.load_seed(serial, environ)
    except MfaSessionError as exc:
        findings.append(Finding(check, FAIL, exc.message, exc.hint))
        return
    if seed is not None:
        findings.append(Finding(check, OK, f"a TOTP seed for {serial} is in the keyring"))
        return
    terminal = codes.Terminal.open()
    if terminal is not None:
        terminal.close()
        findings.append(
            Finding(
                check,
                OK,
                "no seed or mfa_process: you will be asked on the "
                "terminal (not when an SDK runs without one)",
                f"to skip the prompt: mfa-session totp set --profile {name}",
            )
        )
        return
    findings.append(
        Finding(
            check,
            FAIL,
            "no code source: no mfa_process, no seed in the "
            f"keyring ({os_keyring.backend_name(environ)}), no terminal",
            f"run 'mfa-session totp set --profile {name}' or set mfa_process",
        )
    )


def _check_helper_lines(
    files: AwsFiles, names: list[str], environ: Mapping[str, str], findings: list[Finding]
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


def _check_cache(environ: Mapping[str, str], findings: list[Finding]) -> None:
    folder = default_cache_dir(environ)
    try:
        ensure_private_dir(folder)
    except MfaSessionError as exc:
        findings.append(Finding("cache folder", FAIL, exc.message, exc.hint))
    else:
        findings.append(Finding("cache folder", OK, f"{folder} is private (0700, yours)"))


def _check_clock(plan: SessionPlan) -> Finding:
    """Compare with the Date of an unsigned STS answer: SigV4 and TOTP both need the clock."""
    import botocore.session
    from botocore import UNSIGNED
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    session = botocore.session.Session(profile=plan.mfa.name)
    client: Any = session.create_client(
        "sts",
        region_name=session.get_config_variable("region") or "us-east-1",
        config=Config(
            signature_version=UNSIGNED,
            retries={"total_max_attempts": 1},
            connect_timeout=5,
            read_timeout=5,
        ),
    )
    endpoint = client.meta.endpoint_url
    try:
        response: dict[str, Any] = client.get_caller_identity()
    except ClientError as exc:
        response = dict(exc.response)
    except BotoCoreError:
        return Finding(
            "clock", SKIP, f"could not reach STS at {endpoint} to compare clocks (offline?)"
        )
    date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    if not date:
        return Finding("clock", SKIP, f"STS at {endpoint} sent no Date header")
    skew = (datetime.now(timezone.utc) - parsedate_to_datetime(date)).total_seconds()
    message = f"this clock is {abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} STS"
    fix = "sync the clock (e.g. 'timedatectl set-ntp true'); TOTP codes change every 30 s"
    if abs(skew) > _CLOCK_FAIL_SECONDS:
        return Finding("clock", FAIL, message, fix)
    if abs(skew) > _CLOCK_WARN_SECONDS:
        return Finding("clock", WARN, message, fix)
    return Finding("clock", OK, message)
