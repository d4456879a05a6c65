"""`keys add|import|remove|rotate`: long-term access keys in the OS keyring, not plaintext."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping

from mfa_session.commands.common import add_profile_option, default_profile
from mfa_session.errors import ConfigError, MfaSessionError, UsageError, sensitive

TYPE_CHECKING = False
if TYPE_CHECKING:
    from mfa_session.commands.common import Subcommands
    from mfa_session.config import AwsFiles

# Long-term IAM user keys: AKIA ids and 40-character secrets (ASIA ids are temporary).
_KEY_ID = re.compile(r"AKIA[A-Z0-9]{16,124}")
_SECRET = re.compile(r"[A-Za-z0-9/+]{40}")


def add_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    keys = commands.add_parser(
        "keys",
        parents=[common],
        help="keep long-term access keys in the OS keyring instead of plaintext files",
        description="Keep a profile's long-term access keys in the OS keyring (service "
        "mfa-session) instead of ~/.aws/credentials; rotate them on the MFA session.",
    )
    actions = keys.add_subparsers(dest="action", metavar="ACTION", parser_class=type(keys))
    actions.required = True
    add = actions.add_parser(
        "add",
        parents=[common],
        help="store keys read from prompts or stdin (never from arguments)",
        description="Read the access key id and the secret (hidden prompts on a terminal, "
        "else two lines on stdin), check them with one GetCallerIdentity and store them.",
    )
    add_profile_option(add)
    add.add_argument("--offline", action="store_true", help="do not check the keys with AWS")
    move = actions.add_parser(
        "import",
        parents=[common],
        help="move keys from ~/.aws/credentials (or config) into the keyring",
        description="Move a profile's keys from the credentials (or config) file into the "
        "keyring, then remove just those two lines from the file.",
    )
    which = move.add_mutually_exclusive_group()
    add_profile_option(which)
    which.add_argument("--all", action="store_true", help="every profile with keys in a file")
    remove = actions.add_parser(
        "remove",
        parents=[common],
        help="delete a profile's keys from the keyring",
        description="Delete a profile's keys from the keyring (asks first on a terminal).",
    )
    add_profile_option(remove)
    remove.add_argument("--yes", action="store_true", help="do not ask (for scripts)")
    rotate = actions.add_parser(
        "rotate",
        parents=[common],
        help="replace the access key with a new one, on the MFA session",
        description="Create a new access key, wait until AWS accepts it, store it where the "
        "old one was, then delete the old one. A failure midway never loses the working key.",
    )
    add_profile_option(rotate)
    rotate.add_argument(
        "--wait",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for AWS to accept the new key (default 60)",
    )


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    profile = getattr(args, "profile", None) or default_profile(environ)
    if args.action == "add":
        return _add(profile, args.offline, environ)
    if args.action == "import":
        return _import(None if args.all else profile, environ)
    if args.action == "remove":
        return _remove(profile, args.yes, environ)
    return _rotate(profile, args.wait, environ)


def _say(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def _add(name: str, offline: bool, environ: Mapping[str, str]) -> int:
    from mfa_session.config import AwsFiles
    from mfa_session.keystore import Keystore

    files = AwsFiles(environ)
    _refuse_delegating(files, name)
    if name in files.names():
        static = files.profile(name).static_keys(files.key_file(name) or "")
        if static is not None:
            raise ConfigError(
                f"profile {name!r} already has keys in {static.where}",
                hint=f"'mfa-session keys import --profile {name}' moves them into the keyring",
            )
    key_id, secret = _read_keys()
    who = "" if offline else _caller(files, name, key_id, secret, environ)
    backend = Keystore(environ).store(name, key_id, secret)
    _mark(files.config_path, name, environ)
    _say(f"stored access key {key_id}{who} for profile {name} in the keyring ({backend})")
    _say(
        f"{files.config_path}: [profile {name}] says mfa_session_keys = keyring; "
        "no file holds the secret"
    )
    _one_factor_note(files, name, environ)
    return 0


def _refuse_delegating(files: AwsFiles, name: str) -> None:
    """Keys belong to the profile that has them, not to one that borrows another's."""
    if name not in files.names():
        return
    profile = files.profile(name)
    if profile.has_own_keys():
        return
    if profile.role_arn or profile.credential_process:
        try:
            owner = files.plan(name).mfa.name
        except MfaSessionError:
            owner = "the profile with the long-term keys"
        raise UsageError(
            f"profile {name!r} takes its keys from another profile (role_arn or "
            "credential_process)",
            hint=f"add them to {owner!r}: mfa-session keys add --profile {owner}",
        )


def _read_keys() -> tuple[str, str]:
    """The key id, then the secret: hidden prompts on a terminal, else two lines of stdin."""
    stdin = sys.stdin
    try:
        if stdin is not None and stdin.isatty():
            import getpass

            key_id = input("Access key id: ")
            secret = getpass.getpass("Secret access key (hidden): ")
        else:
            lines = (stdin.read() if stdin is not None else "").splitlines()
            key_id, secret = [*lines, "", ""][:2]
    except (EOFError, UnicodeDecodeError):
        key_id, secret = "", ""
    key_id, secret = key_id.strip(), sensitive(secret.strip())
    if not key_id or not secret:
        raise UsageError(
            "give the access key id and the secret access key",
            hint="type them at the prompts, or pipe two lines: "
            "printf '%s\\n' AKIA... SECRET | mfa-session keys add --profile P",
        )
    if not _KEY_ID.fullmatch(key_id):
        shown = key_id[:4] if key_id[:4].isalpha() else "the id"
        kind = "temporary credentials, not long-term keys" if shown == "ASIA" else "not one"
        raise ConfigError(
            f"that access key id ({shown}...) is {kind}: a long-term key id is AKIA and "
            "16 or more capitals and digits"
        )
    if not _SECRET.fullmatch(secret):
        raise ConfigError(
            "that secret access key is not one: AWS's are 40 characters of letters, digits, / and +"
        )
    return key_id, secret


def _caller(
    files: AwsFiles, name: str, key_id: str, secret: str, environ: Mapping[str, str]
) -> str:
    """Check the keys with one GetCallerIdentity (no permission needed); ' of <arn>'."""
    from mfa_session.config import MfaProfile, Profile, StaticKeys
    from mfa_session.sts import Sts, time_budget

    profile = files.profile(name) if name in files.names() else Profile(name, {})
    arn = Sts(MfaProfile(profile, StaticKeys(key_id, secret), ""), time_budget(environ)).caller_arn(
        None
    )
    if arn.endswith(":root"):
        _say("warning: these are the account's root user keys; AWS advises against root keys")
    return f" of {arn}"


def _mark(config_path: str, name: str, environ: Mapping[str, str], text: str | None = None) -> None:
    """Make [profile NAME] say its keys are in the keyring (no backup: it may hold secrets)."""
    from mfa_session import key_files
    from mfa_session.config import IN_KEYRING, KEYS_MARKER
    from mfa_session.config_edit import ConfigEdit

    edit = ConfigEdit(config_path, name, KEYS_MARKER)
    if text is None:
        edit.apply(IN_KEYRING, backup_first=False)
    else:
        key_files.write(config_path, edit.text_with(IN_KEYRING, text))


def _import(only: str | None, environ: Mapping[str, str]) -> int:
    from mfa_session import key_files
    from mfa_session.config import AwsFiles
    from mfa_session.keystore import Keystore

    files = AwsFiles(environ)
    names = [only] if only else [name for name in files.names() if files.key_file(name)]
    if not names:
        raise ConfigError(f"no profile has keys in {files.credentials_path} or {files.config_path}")
    keystore = Keystore(environ)
    for name in names:
        profile = files.profile(name)
        path = files.key_file(name)
        keys = profile.static_keys(path or "")
        if keys is None or path is None:
            raise ConfigError(f"profile {name!r} has no keys in {files.credentials_path}")
        config_style = path == files.config_path
        original = key_files.read_text(path)
        without = key_files.edit_keys(original, path, name, config_style)  # editable? now
        backend = keystore.store(name, keys.access_key_id, keys.secret_access_key)
        if config_style:
            _mark(files.config_path, name, environ, text=without)
        else:
            _mark(files.config_path, name, environ)
            key_files.write(path, key_files.edit_keys(key_files.read_text(path), path, name, False))
        _say(
            f"moved access key {keys.access_key_id} of profile {name} from {path} into the "
            f"keyring ({backend})"
        )
        _one_factor_note(files, name, environ)
    return 0


def _remove(name: str, yes: bool, environ: Mapping[str, str]) -> int:
    from mfa_session.codes import Terminal
    from mfa_session.config import KEYS_MARKER, AwsFiles
    from mfa_session.config_edit import ConfigEdit
    from mfa_session.keystore import Keystore

    files = AwsFiles(environ)
    keystore = Keystore(environ)
    record = keystore.record(name)
    what = f"access key {record.access_key_id}" if record else "the access keys"
    if not yes:
        terminal = Terminal.open()
        if terminal is None:
            raise UsageError(
                "keys remove asks before it deletes, and there is no terminal to ask on",
                hint="add --yes to remove without asking",
            )
        try:
            answer = terminal.ask(f"remove {what} of profile {name} from the keyring? [y/N] ")
        finally:
            terminal.close()
        if answer.strip().lower() not in ("y", "yes"):
            _say("nothing removed")
            return 1
    if not keystore.forget(name):
        raise ConfigError(f"the keyring holds no keys for profile {name!r}")
    ConfigEdit(files.config_path, name, KEYS_MARKER).apply(None, backup_first=False)
    _say(f"removed {what} of profile {name} from the keyring")
    _say("the key still exists at AWS: deactivate or delete it in IAM if nothing else uses it")
    return 0


def _rotate(name: str, wait: float, environ: Mapping[str, str]) -> int:
    from mfa_session.codes import Terminal, notify
    from mfa_session.key_rotation import rotate

    if not 1 <= wait <= 3600:
        raise UsageError("--wait must be between 1 and 3600 seconds")
    terminal = Terminal.open()
    told = False

    def countdown(message: str) -> None:
        """In place on a terminal; without one, a single line on stderr."""
        nonlocal told
        if terminal is not None:
            terminal.status(message)
        elif message and not told:
            notify(message)
            told = True

    try:
        done = rotate(name, environ, _say, countdown, wait)
    finally:
        if terminal is not None:
            terminal.close()
    _say(f"profile {done.profile} now uses access key {done.new_key}")
    return 0


def _one_factor_note(files: AwsFiles, name: str, environ: Mapping[str, str]) -> None:
    """A seed in the same keyring as the keys: whoever unlocks it holds both factors."""
    from mfa_session.keystore import Keystore

    try:
        serial = files.profile(name).mfa_serial
    except MfaSessionError:
        return
    if serial and Keystore(environ).seed_stored(serial):
        _say(
            "note: the TOTP seed of this profile's device is in the same keyring: whoever "
            "unlocks it holds both factors (see docs/security.md#one-factor-in-disguise)"
        )
