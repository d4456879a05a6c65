"""Long-term access keys in the OS keyring, and secret-free records of what it holds.

A profile with ``mfa_session_keys = keyring`` keeps its access key id and secret in
the keyring (service mfa-session, user ``access-key:PROFILE``, one JSON line). In
the private cache folder, a record per profile says which key id that is and, when
known, when AWS created it; a record per MFA device says whether its seed is
stored. The cache key needs the key id on every call, and `status`, `init`, the
prompt and `doctor --offline` need to know where things live: all of them read the
records only, so a locked keyring is never asked to open just to list sessions.
A missing record is rebuilt from the keyring on the next call that needs the keys.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from mfa_session import os_keyring
from mfa_session.cache import CacheFolder, default_cache_dir, digest
from mfa_session.config import IN_KEYRING, StaticKeys
from mfa_session.errors import ConfigError, sensitive
from mfa_session.plan_records import MISSING, stat_identity

USER_PREFIX = "access-key:"
WHAT = "the access keys"
_KEYS_MAGIC = "mfa-session keys 1"
_SEED_MAGIC = "mfa-session seed 1"


class KeyRecord:
    """Secret-free: which key a profile's keyring entry holds, and since when."""

    __slots__ = ("access_key_id", "backend", "created", "profile")

    def __init__(
        self, profile: str, access_key_id: str, created: str = "", backend: str = ""
    ) -> None:
        self.profile, self.access_key_id = profile, access_key_id
        self.created, self.backend = created, backend

    def encode(self) -> bytes:
        fields = (self.profile, self.access_key_id, self.created, self.backend)
        return (_KEYS_MAGIC + "\n" + "\t".join(fields) + "\n").encode()

    @classmethod
    def decode(cls, data: bytes | None, profile: str) -> KeyRecord | None:
        try:
            magic, line = (data or b"").decode().rstrip("\n").split("\n")
            name, key_id, created, backend = line.split("\t")
        except ValueError:
            return None
        if magic != _KEYS_MAGIC or name != profile or not key_id:
            return None
        return cls(name, key_id, created, backend)


def keys_record_name(profile: str) -> str:
    return f"keys-{digest(profile)}"


def seed_record_name(serial: str) -> str:
    return f"seed-{digest(serial)}"


def keyring_user(profile: str) -> str:
    return USER_PREFIX + profile


class Keystore:
    """The keyring's keys for this environment, through the records in ``folder``."""

    def __init__(
        self,
        environ: Mapping[str, str],
        folder: CacheFolder | None = None,
        may_open: bool = True,
    ) -> None:
        """``may_open`` False: records only (status, doctor --offline), never the keyring."""
        self.environ = environ
        self.folder = folder or CacheFolder(default_cache_dir(environ))
        self.may_open = may_open

    def record_path(self, profile: str) -> str:
        return self.folder.file_path(keys_record_name(profile))

    def record(self, profile: str) -> KeyRecord | None:
        return KeyRecord.decode(self.folder.read(keys_record_name(profile)), profile)

    def keys_of(self, profile: str) -> tuple[StaticKeys, str]:
        """The profile's keys, the secret to be read when needed, and the identity of the
        record the id came from. Without a record, the keyring is read now to rebuild it."""
        identity = self._record_identity(profile)
        record = self.record(profile)
        if record is None and not self.may_open:
            return StaticKeys("", None, IN_KEYRING), identity  # the id is not known offline
        if record is None:
            key_id, secret = self.read(profile)  # which writes the record again
            return StaticKeys(key_id, secret, IN_KEYRING), self._record_identity(profile)

        def load() -> str:
            key_id, secret = self.read(profile)
            if key_id != record.access_key_id:
                raise ConfigError(
                    f"the keyring holds access key {key_id} for profile {profile!r}, not "
                    f"{record.access_key_id} as recorded: it was changed by another tool",
                    hint="run the command again (the record is now up to date)",
                )
            return secret

        return StaticKeys(record.access_key_id, None, IN_KEYRING, load), identity

    def _record_identity(self, profile: str) -> str:
        path, descriptor = self.folder._at(keys_record_name(profile))
        try:
            return stat_identity(os.stat(path, dir_fd=descriptor, follow_symlinks=False))
        except OSError:
            return MISSING

    def read(self, profile: str) -> tuple[str, str]:
        """(key id, secret) from the keyring; a ConfigError when nothing is stored."""
        raw = os_keyring.call(
            [(os_keyring.GET, keyring_user(profile), None)], self.environ, WHAT
        ).results[0]
        if not isinstance(raw, str) or not raw:
            raise ConfigError(
                f"profile {profile!r} says its keys are in the keyring (mfa_session_keys = "
                "keyring), but the keyring holds none for it",
                hint=f"store them with 'mfa-session keys add --profile {profile}'",
            )
        key_id, secret = parse_entry(sensitive(raw), profile)
        record = self.record(profile)
        if record is None or record.access_key_id != key_id:
            self.folder.try_write(keys_record_name(profile), KeyRecord(profile, key_id).encode())
        return key_id, sensitive(secret)

    def store(self, profile: str, key_id: str, secret: str, created: str = "") -> str:
        """Put keys in the keyring (replacing any) and record them; the backend's name."""
        entry = json.dumps({"AccessKeyId": key_id, "SecretAccessKey": sensitive(secret)})
        user = keyring_user(profile)
        answer = os_keyring.call(  # set, then read back in the same call: what was kept?
            [(os_keyring.SET, user, sensitive(entry)), (os_keyring.GET, user, None)],
            self.environ,
            WHAT,
        )
        if answer.results[1] != entry:  # a backend that cut or changed it (pass keeps a line)
            raise os_keyring.KeyringFailed(
                f"the keyring ({answer.backend}) did not keep the keys as given"
            )
        self.folder.try_write(
            keys_record_name(profile),
            KeyRecord(profile, key_id, created, answer.backend).encode(),
        )
        return answer.backend

    def forget(self, profile: str) -> bool:
        """Delete the keys from the keyring and the record; False when none were stored."""
        existed = bool(
            os_keyring.call(
                [(os_keyring.DELETE, keyring_user(profile), None)], self.environ, WHAT
            ).results[0]
        )
        self.folder.remove(keys_record_name(profile))
        return existed

    def note_created(self, profile: str, key_id: str, created: str) -> None:
        """Remember when AWS created a profile's key (its age, for status and doctor)."""
        record = self.record(profile) or KeyRecord(profile, key_id)
        if record.access_key_id == key_id and record.created != created:
            record.created = created
            self.folder.try_write(keys_record_name(profile), record.encode())

    def note_seed(self, serial: str, stored: bool, backend: str = "") -> None:
        """Remember, secret-free, whether the keyring holds a seed for this device."""
        line = f"{_SEED_MAGIC}\n{serial}\t{'stored' if stored else 'none'}\t{backend}\n"
        if self.folder.read(seed_record_name(serial)) != line.encode():
            self.folder.try_write(seed_record_name(serial), line.encode())

    def seed_stored(self, serial: str) -> bool | None:
        """Whether a seed is stored, as last seen; None when never looked."""
        try:
            magic, line = (
                (self.folder.read(seed_record_name(serial)) or b"")
                .decode()
                .rstrip("\n")
                .split("\n")
            )
            name, state, _backend = line.split("\t")
        except ValueError:
            return None
        if magic != _SEED_MAGIC or name != serial:
            return None
        return state == "stored"


def parse_entry(raw: str, profile: str) -> tuple[str, str]:
    try:
        document = json.loads(raw)
        key_id, secret = document["AccessKeyId"], document["SecretAccessKey"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(
            f"the keyring's entry for profile {profile!r} is not what mfa-session stored",
            hint=f"store the keys again: 'mfa-session keys add --profile {profile}'",
        ) from None
    if not isinstance(key_id, str) or not isinstance(secret, str) or not key_id or not secret:
        raise ConfigError(f"the keyring's entry for profile {profile!r} is incomplete")
    return key_id, secret
