"""`status`: cached sessions, and each MFA profile's device, code source and keys.

Everything here comes from the files and the secret-free records in the cache
folder: listing sessions never opens the keyring (a locked one would ask to unlock).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping

from mfa_session.commands.common import format_left, print_table
from mfa_session.errors import MfaSessionError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from mfa_session.cache import SessionCache
    from mfa_session.commands.common import Subcommands
    from mfa_session.config import AwsFiles
    from mfa_session.keystore import Keystore

STALE = "stale"


def add_parser(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    status = commands.add_parser(
        "status",
        parents=[common],
        help="list cached sessions, and each profile's code source and keys",
        description="List cached sessions, and for each MFA profile the device, where its "
        "next code comes from and where its long-term keys live. Never opens the keyring.",
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from mfa_session.cache import SessionCache
    from mfa_session.keystore import Keystore

    cache = SessionCache.from_environ(environ)
    keystore = Keystore(environ, cache.folder, may_open=False)
    files = _files(environ, keystore)
    profiles = _profiles(files, keystore, environ) if files is not None else []
    sessions = _sessions(cache, files, keystore)
    if args.json:
        document = {"sessions": sessions, "profiles": profiles}
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return 0
    if sessions:
        print_table(
            ("PROFILE", "ROLE", "EXPIRES (UTC)", "LEFT"),
            [
                (
                    str(row["profile"]),
                    str(row["role_arn"] or "-"),
                    str(row["expiration"]),
                    format_left(int(str(row["seconds_left"])))
                    + (f" ({STALE})" if row["stale"] else ""),
                )
                for row in sessions
            ],
        )
        if any(row["stale"] for row in sessions):
            sys.stdout.write(
                f"{STALE}: made with a device or key the config no longer names "
                "('mfa-session clear --stale' forgets them)\n"
            )
    else:
        sys.stdout.write("no cached sessions\n")
    if profiles:
        sys.stdout.write("\n")
        print_table(
            ("PROFILE", "MFA DEVICE", "CODE FROM", "KEYS"),
            [
                (row["profile"], row["mfa_serial"], row["code_source"], _keys_text(row))
                for row in profiles
            ],
        )
    return 0


def _files(environ: Mapping[str, str], keystore: Keystore) -> AwsFiles | None:
    from mfa_session.config import AwsFiles

    try:
        return AwsFiles(environ, keystore)
    except MfaSessionError:
        return None  # `doctor` says what is wrong with the files


def _sessions(
    cache: SessionCache, files: AwsFiles | None, keystore: Keystore
) -> list[dict[str, object]]:
    current = current_keys(files) if files is not None else None
    rows: list[dict[str, object]] = []
    for entry in cache.entries():
        key = entry.key
        rows.append(
            {
                "profile": key.profile,
                "role_arn": key.role_arn,
                "mfa_serial": key.mfa_serial,
                "expiration": entry.credentials.expiration_iso,
                "seconds_left": max(0, entry.credentials.seconds_left()),
                "stale": current is not None and is_stale(key, current),
            }
        )
    rows.sort(key=lambda row: (str(row["profile"]), str(row["role_arn"] or "")))
    return rows


def current_keys(files: AwsFiles) -> dict[str, tuple[set[str], set[str]]]:
    """For each key profile the config names: its key ids (empty when not known offline)
    and every device its profiles use."""
    found: dict[str, tuple[set[str], set[str]]] = {}
    for name in files.names():
        try:
            plan = files.plan(name)
        except MfaSessionError:
            continue
        ids, serials = found.setdefault(plan.mfa.name, (set(), set()))
        if plan.mfa.keys.access_key_id:
            ids.add(plan.mfa.keys.access_key_id)
        serials.add(plan.mfa.mfa_serial)
        serials.update(hop.mfa_serial for hop in plan.hops if hop.mfa_serial)
    return found


def is_stale(key: object, current: dict[str, tuple[set[str], set[str]]]) -> bool:
    """A session of a profile, key or device the config no longer names."""
    profile = getattr(key, "profile", "")
    if profile not in current:
        return True
    ids, serials = current[profile]
    return getattr(key, "mfa_serial", "") not in serials or bool(
        ids and getattr(key, "access_key_id", "") not in ids
    )


def _profiles(
    files: AwsFiles, keystore: Keystore, environ: Mapping[str, str]
) -> list[dict[str, str]]:
    """Each profile that leads to an MFA session: device, code source, where its keys are."""
    from mfa_session.codes import planned_source

    rows = []
    for name in files.names():
        try:
            plan = files.plan(name)
        except MfaSessionError:
            continue
        mfa = plan.mfa
        source = planned_source(
            mfa.mfa_serial, mfa.profile.mfa_process, environ, keystore.seed_stored(mfa.mfa_serial)
        )
        row = {"profile": name, "mfa_serial": mfa.mfa_serial, "code_source": source}
        row.update(key_facts(files, keystore, mfa.name, mfa.keys))
        rows.append(row)
    return rows


def key_facts(files: AwsFiles, keystore: Keystore, owner: str, keys: object) -> dict[str, str]:
    """Where a key profile's keys live, their id and (when recorded) creation date."""
    from mfa_session.config import StaticKeys

    if not isinstance(keys, StaticKeys):
        return {}
    record = keystore.record(owner)
    created = record.created if record and record.access_key_id == keys.access_key_id else ""
    where = "keyring" if keys.in_keyring else keys.where
    return {
        "keys_profile": owner,
        "keys_in": where,
        "access_key_id": keys.access_key_id,
        "key_created": created,
    }


def _keys_text(row: dict[str, str]) -> str:
    if row.get("keys_profile") != row["profile"]:
        return f"{row.get('keys_profile')}'s"
    where = row["keys_in"]
    home = _home_relative(where)
    text = f"{home} ({row['access_key_id'] or 'id not recorded'})"
    if row.get("key_created"):
        text += f", {age_days(row['key_created'])} days old"
    return text


def age_days(created: str) -> int:
    from mfa_session.credentials import parse_utc, utc_now

    return max(0, (utc_now() - parse_utc(created)).days)


def _home_relative(path: str) -> str:
    from pathlib import Path

    home = str(Path.home())
    return "~" + path[len(home) :] if path.startswith(home + "/") else path
