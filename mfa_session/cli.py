"""The command line: parse, dispatch, print, exit. The only module that does."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence

from mfa_session import __version__, debug, environment
from mfa_session.errors import MfaSessionError, UsageError

TYPE_CHECKING = False  # typing itself costs ~10 ms to import on the cache-hit path
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from mfa_session.session import SessionRequest

PROG = "mfa-session"


class _Formatter(argparse.HelpFormatter):
    """Help text sized by $COLUMNS: argparse's own sizing imports shutil on every run."""

    def __init__(self, prog: str) -> None:
        try:
            width = int(os.environ.get("COLUMNS", "100"))
        except ValueError:
            width = 100
        super().__init__(prog, width=max(40, width) - 2)


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors become our one-line error with exit status 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, hint=f"see '{self.prog} --help'")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or (for speed on the cache-hit path) one with just command ``only``."""
    parser = _Parser(
        prog=PROG,
        description="One MFA code, shared by every AWS tool.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    common = _Parser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    for name, add in _COMMANDS.items():
        if only is None or only == name:
            add(commands, common)
    return parser


def _add_credential_process(commands: argparse._SubParsersAction[_Parser], common: _Parser) -> None:
    process = commands.add_parser(
        "credential-process",
        parents=[common],
        help="print credential_process JSON for SDKs and the AWS CLI",
        description="Print credential_process JSON (version 1) on stdout, from the cache "
        "or a new MFA session.",
    )
    process.add_argument("--profile", required=True, help="the profile with the long-term keys")
    _add_session_options(process)


def _add_status(commands: argparse._SubParsersAction[_Parser], common: _Parser) -> None:
    status = commands.add_parser(
        "status",
        parents=[common],
        help="list cached sessions and each profile's code source",
        description="List cached sessions, and for each MFA profile the device and where "
        "its next code comes from.",
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")


def _add_clear(commands: argparse._SubParsersAction[_Parser], common: _Parser) -> None:
    clear = commands.add_parser("clear", parents=[common], help="forget cached sessions")
    which = clear.add_mutually_exclusive_group()
    which.add_argument("--profile", help="forget this profile's sessions (default: AWS_PROFILE)")
    which.add_argument("--all", action="store_true", help="forget every session")


def _add_exec(commands: argparse._SubParsersAction[_Parser], common: _Parser) -> None:
    run = commands.add_parser(
        "exec",
        parents=[common],
        help="run a command with the session in its environment",
        description="Run CMD with the session's keys in its environment (it replaces this "
        "process); with no CMD, start $SHELL.",
        usage=f"{PROG} exec [--profile P] [options] [--] [CMD [ARG ...]]",
    )
    run.add_argument("--profile", help="default: AWS_PROFILE, else MFA_SESSION_PROFILE")
    _add_session_options(run)
    run.add_argument("argv", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def _add_export(commands: argparse._SubParsersAction[_Parser], common: _Parser) -> None:
    from mfa_session.exports import FORMATS  # light: only the format names are needed here

    export = commands.add_parser(
        "export",
        parents=[common],
        help="print the session for eval, source or an env file",
        description='Print the session as variables: eval "$(mfa-session export)".',
    )
    export.add_argument("--profile", help="default: AWS_PROFILE, else MFA_SESSION_PROFILE")
    export.add_argument("--format", choices=FORMATS, default="sh", help="default: sh")
    _add_session_options(export)


def _add_init(commands: argparse._SubParsersAction[_Parser], common: _Parser) -> None:
    init = commands.add_parser(
        "init",
        parents=[common],
        help="print the shell integration (prompt segment, completion)",
        description='Print the shell integration: eval "$(mfa-session init bash)", '
        "or 'mfa-session init fish | source'.",
    )
    init.add_argument("shell", choices=("bash", "zsh", "fish"))
    init.add_argument(
        "--no-prompt", action="store_true", help="define mfa_session_prompt, leave the prompt be"
    )


def _add_doctor(commands: argparse._SubParsersAction[_Parser], common: _Parser) -> None:
    doctor = commands.add_parser(
        "doctor",
        parents=[common],
        help="check config, keys, code source, cache and clock",
        description="Check what mfa-session needs and say how to fix what is wrong. "
        "Exit status 0 when nothing failed.",
    )
    doctor.add_argument("--profile", help="check this profile (default: every MFA profile)")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.add_argument("--offline", action="store_true", help="skip the clock check with STS")


def _add_totp(commands: argparse._SubParsersAction[_Parser], common: _Parser) -> None:
    totp = commands.add_parser(
        "totp",
        parents=[common],
        help="keep a TOTP seed in the OS keyring: codes with no phone",
        description="Manage the TOTP seed of a profile's MFA device in the OS keyring "
        "(service mfa-session, user = the device's serial ARN).",
    )
    actions = totp.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    actions.required = True
    for action, text in (
        ("set", "store a seed read from a hidden prompt or stdin (never from arguments)"),
        ("code", "print the current code"),
        ("remove", "delete the stored seed"),
    ):
        parser = actions.add_parser(action, parents=[common], help=text, description=text)
        parser.add_argument("--profile", help="default: AWS_PROFILE, else MFA_SESSION_PROFILE")


def _add_enroll(commands: argparse._SubParsersAction[_Parser], common: _Parser) -> None:
    enroll = commands.add_parser(
        "enroll",
        parents=[common],
        help="create and enable a virtual MFA device from the terminal",
        description="Create a virtual MFA device with IAM, show its QR code, keep its seed "
        "in the keyring, enable it with two consecutive codes and set mfa_serial in the "
        "profile. Anything created is deleted again if a step fails.",
    )
    enroll.add_argument("--profile", help="the profile with the IAM user's keys")
    enroll.add_argument("--device-name", help="the device's name in IAM (default: user name)")
    enroll.add_argument(
        "--no-store",
        dest="store",
        action="store_false",
        help="do not keep the seed: scan the QR code and type two codes from your app",
    )
    enroll.add_argument(
        "--no-qr", dest="show_qr", action="store_false", help="do not show the QR code"
    )
    enroll.add_argument("--qr-png", metavar="PATH", help="also save the QR code (a new 0600 file)")


_COMMANDS = {
    "credential-process": _add_credential_process,
    "exec": _add_exec,
    "export": _add_export,
    "status": _add_status,
    "clear": _add_clear,
    "init": _add_init,
    "doctor": _add_doctor,
    "totp": _add_totp,
    "enroll": _add_enroll,
}


def _add_session_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--duration",
        help="seconds: of the MFA session (900-129600, default 43200), or with a role, of "
        "the role session (900 up to the role's maximum, default 3600)",
    )
    parser.add_argument("--role-arn", help="assume this role with the MFA session")
    parser.add_argument("--external-id", help="the ExternalId the role's trust policy wants")
    parser.add_argument(
        "--role-session-name", help="the role session's name (default: your IAM user name)"
    )
    parser.add_argument("--token-code", help="the MFA code, when you have it at hand")
    parser.add_argument(
        "--min-remaining",
        type=int,
        help="reuse a cached session only with more seconds left than this (default 900)",
    )


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    show_traceback = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        arguments = sys.argv[1:] if argv is None else list(argv)
        only = arguments[0] if arguments and arguments[0] in _COMMANDS else None
        args = build_parser(only).parse_args(arguments)
        if args.debug:
            debug.enable()
        return _dispatch(args, environ)
    except MfaSessionError as exc:
        print(f"{PROG}: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        if show_traceback:
            raise
        return exc.exit_status
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if show_traceback:
            raise
        print(f"{PROG}: error: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
        print("hint: re-run with --debug to see where", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    return _HANDLERS[args.command](args, environ)


def _refuse_recursion(environ: Mapping[str, str]) -> None:
    resolving = environ.get(environment.RESOLVING)
    if resolving:
        raise MfaSessionError(
            f"mfa-session was started by the mfa_process of profile {resolving!r} "
            "while it was getting a code: that would never end",
            hint="make mfa_process print a code without calling an AWS tool that uses mfa-session",
        )


def _session_request(args: argparse.Namespace, profile: str) -> SessionRequest:
    from mfa_session.config import parse_duration
    from mfa_session.session import SessionRequest

    duration = None if args.duration is None else parse_duration(args.duration, "--duration")
    if args.min_remaining is not None and args.min_remaining < 0:
        raise UsageError("--min-remaining must not be negative")
    return SessionRequest(
        profile=profile,
        duration=duration,
        token_code=args.token_code,
        min_remaining=args.min_remaining,
        role_arn=args.role_arn,
        external_id=args.external_id,
        role_session_name=args.role_session_name,
    )


def _credential_process(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from mfa_session.session import get_session

    _refuse_recursion(environ)
    request = _session_request(args, args.profile)
    session = get_session(request, environ, caller_profile=environ.get("AWS_PROFILE"))
    sys.stdout.write(json.dumps(session.credentials.process_json()) + "\n")
    sys.stdout.flush()
    return 0


def default_profile(environ: Mapping[str, str]) -> str:
    """AWS_PROFILE as the SDKs read it; inside `exec` (which removes it) the exec'd profile."""
    return (
        environ.get("AWS_PROFILE")
        or environ.get(environment.PROFILE)
        or environ.get("AWS_DEFAULT_PROFILE")
        or "default"
    )


def _exec(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from mfa_session import execute
    from mfa_session.session import get_session

    _refuse_recursion(environ)
    profile = args.profile or default_profile(environ)
    execute.refuse_nesting(environ, profile)
    command = list(args.argv)
    if command[:1] == ["--"]:
        command = command[1:]
    session = get_session(_session_request(args, profile), environ)
    child_environment = execute.command_environment(environ, session)
    sys.stdout.flush()
    sys.stderr.flush()
    return execute.run(command or execute.default_command(environ), child_environment)


def _export(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from mfa_session import exports
    from mfa_session.session import get_session

    _refuse_recursion(environ)
    profile = args.profile or default_profile(environ)
    session = get_session(_session_request(args, profile), environ)
    sys.stdout.write(exports.render(args.format, session))
    return 0


def _init(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from mfa_session.shells import init_script

    sys.stdout.write(init_script(args.shell, environ, prompt=not args.no_prompt))
    return 0


def _status(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from mfa_session.cache import SessionCache

    sessions = []
    for entry in SessionCache.from_environ(environ).entries():
        credentials = entry.credentials
        sessions.append(
            {
                "profile": entry.key.profile,
                "role_arn": entry.key.role_arn,
                "mfa_serial": entry.key.mfa_serial,
                "expiration": credentials.expiration_iso,
                "seconds_left": max(0, credentials.seconds_left()),
            }
        )
    sessions.sort(key=lambda row: (str(row["profile"]), str(row["role_arn"] or "")))
    profiles = _code_sources(environ)
    if args.json:
        print(json.dumps({"sessions": sessions, "profiles": profiles}, indent=2))
        return 0
    if sessions:
        _print_table(
            ("PROFILE", "ROLE", "EXPIRES (UTC)", "LEFT"),
            [
                (
                    str(row["profile"]),
                    str(row["role_arn"] or "-"),
                    str(row["expiration"]),
                    format_left(int(str(row["seconds_left"]))),
                )
                for row in sessions
            ],
        )
    else:
        print("no cached sessions")
    if profiles:
        print()
        _print_table(
            ("PROFILE", "MFA DEVICE", "CODE FROM"),
            [(row["profile"], row["mfa_serial"], row["code_source"]) for row in profiles],
        )
    return 0


def _code_sources(environ: Mapping[str, str]) -> list[dict[str, str]]:
    """Each profile that leads to an MFA session, its device and where its code comes from."""
    from mfa_session.codes import planned_source
    from mfa_session.config import AwsFiles

    try:
        files = AwsFiles(environ)
    except MfaSessionError:
        return []  # `doctor` says what is wrong with the files
    rows = []
    for name in files.names():
        try:
            mfa = files.plan(name).mfa
        except MfaSessionError:
            continue
        source = planned_source(mfa.mfa_serial, mfa.profile.mfa_process, environ)
        rows.append({"profile": name, "mfa_serial": mfa.mfa_serial, "code_source": source})
    return rows


def _print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    table = [header, *rows]
    widths = [max(len(line[column]) for line in table) for column in range(len(header))]
    for line in table:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )


def format_left(seconds: int) -> str:
    if seconds <= 0:
        return "expired"
    hours, minutes = divmod(seconds // 60, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m"


def _clear(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from mfa_session.cache import SessionCache

    cache = SessionCache.from_environ(environ)
    profile = None if args.all else (args.profile or default_profile(environ))
    if profile is not None:
        from mfa_session.config import AwsFiles

        # `clear --profile dev` means the key profile that dev's sessions come from.
        with contextlib.suppress(MfaSessionError):
            profile = AwsFiles(environ).plan(profile).mfa.name
    removed = 0
    for entry in cache.entries():
        if profile is None or entry.key.profile == profile:
            cache.remove(entry.key)
            removed += 1
    what = "every profile" if profile is None else f"profile {profile!r}"
    print(f"cleared {removed} session{'s' if removed != 1 else ''} of {what}")
    return 0


def _mfa_serial_of(profile: str, environ: Mapping[str, str]) -> str:
    """The serial a profile's codes are for: its own, or the one its keys profile names."""
    from mfa_session.config import AwsFiles
    from mfa_session.errors import ConfigError

    files = AwsFiles(environ)
    try:
        return files.plan(profile).mfa.mfa_serial
    except ConfigError:
        serial = files.profile(profile).mfa_serial
        if serial:
            return serial
        raise


def _totp(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from mfa_session import seeds
    from mfa_session.errors import CodeError

    profile = args.profile or default_profile(environ)
    serial = _mfa_serial_of(profile, environ)
    if args.action == "set":
        secret = seeds.read_seed_input()
        seeds.parse_seed(secret, "the seed")
        replaced = seeds.read_seed(serial) is not None
        seeds.store_seed(serial, secret)
        verb = "replaced the stored" if replaced else "stored the"
        print(f"{verb} TOTP seed for {serial} in the keyring ({seeds.backend_name()})")
        print(f"check it: 'mfa-session totp code --profile {profile}' shows your app's code")
        return 0
    if args.action == "remove":
        if not seeds.remove_seed(serial):
            raise CodeError(f"no TOTP seed is stored for {serial}")
        print(f"removed the TOTP seed for {serial} from the keyring")
        return 0
    secret_text = seeds.read_seed(serial)
    if not secret_text:
        raise CodeError(
            f"no TOTP seed is stored for {serial} (profile {profile!r})",
            hint=f"store one with 'mfa-session totp set --profile {profile}'",
        )
    totp = seeds.parse_seed(secret_text, f"the keyring seed for {serial}")
    print(totp.now())
    return 0


def _enroll(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from mfa_session.enroll import EnrollOptions, enroll

    options = EnrollOptions(
        profile=args.profile or default_profile(environ),
        device_name=args.device_name,
        store=args.store,
        show_qr=args.show_qr,
        qr_png=args.qr_png,
    )
    enroll(options, environ, say=lambda message: print(message, flush=True))
    return 0


def _doctor(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from mfa_session import doctor

    findings = doctor.examine(environ, args.profile, online=not args.offline)
    failed = any(finding.status == doctor.FAIL for finding in findings)
    if args.json:
        document = {"ok": not failed, "checks": [finding.as_dict() for finding in findings]}
        print(json.dumps(document, indent=2))
        return 1 if failed else 0
    for finding in findings:
        print(f"{finding.status.upper():<5} {finding.check}: {finding.message}")
        if finding.fix and finding.status != doctor.OK:
            print(f"      fix: {finding.fix}")
    print("all good" if not failed else "some checks failed")
    return 1 if failed else 0


_HANDLERS: dict[str, Callable[[argparse.Namespace, Mapping[str, str]], int]] = {
    "credential-process": _credential_process,
    "exec": _exec,
    "export": _export,
    "status": _status,
    "clear": _clear,
    "init": _init,
    "doctor": _doctor,
    "totp": _totp,
    "enroll": _enroll,
}
