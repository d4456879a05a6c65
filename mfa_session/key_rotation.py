"""Rotating an IAM user's access key on its MFA session, without ever losing the key
that works.

1. The MFA session: one code at most (the self-manage policy wants MFA for key
   changes), never a reused code (the code sources wait for the next step instead).
2. ListAccessKeys: AWS allows two keys; a user who already has a second one must
   delete it first.
3. CreateAccessKey: from here until step 5 the new key lives only in memory.
4. Wait until AWS accepts the new key (IAM is eventually consistent), with a countdown.
5. Store it where the old one was: the keyring, or the credentials file in place.
6. DeleteAccessKey of the old one; forget the old key's cached sessions.
A failure (or Ctrl-C, SIGTERM, SIGHUP) in 3-5 deletes the new key again and leaves
the old one as it was; a failure in 6 leaves both at AWS and says how to finish.
A store that fails in 5 may have kept something (a backend that cuts values, a
timeout after the write): the old key is put back and checked before the new one is
deleted, and when neither can be found there, neither is deleted at AWS.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping

from mfa_session import key_files
from mfa_session.cache import SessionCache
from mfa_session.config import AwsFiles, MfaProfile, StaticKeys
from mfa_session.errors import IamError, Interrupted, MfaSessionError, StsError
from mfa_session.iam import AccessKey, Iam
from mfa_session.interrupts import signals_ignored, signals_interrupt
from mfa_session.keystore import KeyRecord, Keystore
from mfa_session.session import SessionRequest, get_session
from mfa_session.sts import Sts, time_budget

DEFAULT_WAIT = 60.0  # IAM usually accepts a new key within seconds


class Rotation:
    __slots__ = ("new_key", "old_key", "profile", "where")

    def __init__(self, profile: str, old_key: str, new_key: str, where: str) -> None:
        self.profile, self.old_key, self.new_key, self.where = profile, old_key, new_key, where


def rotate(
    profile: str,
    environ: Mapping[str, str],
    say: Callable[[str], None],
    status: Callable[[str], None],
    wait: float = DEFAULT_WAIT,
) -> Rotation:
    """Replace the long-term key of ``profile`` (or of the profile it takes keys from)."""
    files = AwsFiles(environ)
    mfa = files.plan(profile).mfa
    old = mfa.keys.access_key_id
    where = "the keyring" if mfa.keys.in_keyring else mfa.keys.where
    if mfa.name != profile:
        say(f"profile {profile} takes its keys from profile {mfa.name}: rotating those")
    place = _KeyPlace(files, mfa, environ)
    place.check()  # can the new key be put there? Checked before anything is created.
    before = (old, mfa.keys.secret_access_key)  # read now: what a failed store puts back
    old_created = (Keystore(environ).record(mfa.name) or KeyRecord(mfa.name, old)).created
    session = get_session(SessionRequest(mfa.name), environ).credentials
    iam = Iam(mfa, via=session, budget=time_budget(environ))
    keys = iam.access_keys()
    others = [key.access_key_id for key in keys if key.access_key_id != old]
    if others:
        raise IamError(
            f"the user already has a second access key, {others[0]}, besides {old} of "
            f"profile {mfa.name}; AWS allows two, so rotation has no room",
            hint=f"if no tool uses {others[0]}, delete it: mfa-session exec --profile "
            f"{mfa.name} -- aws iam delete-access-key --access-key-id {others[0]}",
        )
    if not keys:
        raise IamError(f"IAM lists no access key for the user of profile {mfa.name!r}")
    with signals_interrupt():
        created: list[str] = []  # the new key's id, once it is known
        storing = False
        try:
            new, secret = _create(iam, created)
            say(f"created access key {new.access_key_id}")
            _wait_until_accepted(mfa, StaticKeys(new.access_key_id, secret), environ, wait, status)
            say(f"AWS accepts {new.access_key_id}")
            storing = True
            place.put(new.access_key_id, secret, new.created)
        except BaseException as exc:
            with signals_ignored():
                if storing:
                    held = place.restore(*before, old_created)
                    if held != before:
                        raise _store_unsettled(
                            exc, held, (new.access_key_id, secret), old, where, mfa.name
                        ) from None
                raise _rolled_back(exc, iam, created, old, mfa.name) from None
    say(f"stored {new.access_key_id} in {where}, in place of {old}")
    try:
        iam.delete_access_key(old)
    except MfaSessionError as exc:
        raise IamError(
            f"the new key {new.access_key_id} is stored and works, but the old key {old} "
            f"could not be deleted: {exc.message}",
            hint=f"delete it yourself: mfa-session exec --profile {mfa.name} -- "
            f"aws iam delete-access-key --access-key-id {old}",
        ) from None
    say(f"deleted the old key {old}")
    cache = SessionCache.from_environ(environ)
    forgotten = 0
    for entry in cache.entries():
        if entry.key.access_key_id == old:
            cache.remove(entry.key)
            forgotten += 1
    if forgotten:
        say(f"forgot {forgotten} cached session{'s' if forgotten != 1 else ''} of {old}")
    return Rotation(mfa.name, old, new.access_key_id, where)


def _create(iam: Iam, created: list[str]) -> tuple[AccessKey, str]:
    """CreateAccessKey; ``created`` says it was attempted ("?") and then the new key's id."""
    created.append("?")  # from here a key may exist at AWS even if its answer never comes
    new, secret = iam.create_access_key()
    created[0] = new.access_key_id
    return new, secret


class _KeyPlace:
    """Where the profile's key lives: the keyring, or a file edited in place."""

    def __init__(self, files: AwsFiles, mfa: MfaProfile, environ: Mapping[str, str]) -> None:
        self.profile, self.environ = mfa.name, environ
        self.keystore = Keystore(environ)
        self.path = None if mfa.keys.in_keyring else mfa.keys.where
        self.config_style = self.path == files.config_path

    def check(self) -> None:
        """Fail now, before a key is created, if a new one could not be put here."""
        if self.path is None:
            from mfa_session import os_keyring

            os_keyring.call([], self.environ)  # a backend that works
        else:
            self._edited("AKIACHECK", "check")

    def put(self, key_id: str, secret: str, created: str) -> None:
        if self.path is None:
            self.keystore.store(self.profile, key_id, secret, created)
        else:
            key_files.write(self.path, self._edited(key_id, secret))
            self.keystore.note_created(self.profile, key_id, created)

    def held(self) -> tuple[str, str] | None:
        """The key found here now; None when none can be read."""
        try:
            if self.path is None:
                return self.keystore.read(self.profile)
            keys = AwsFiles(self.environ).profile(self.profile).static_keys()
        except MfaSessionError:
            return None
        return None if keys is None else (keys.access_key_id, keys.secret_access_key)

    def restore(self, key_id: str, secret: str, created: str) -> tuple[str, str] | None:
        """After a store that failed: put the old key back; what is held here then."""
        with contextlib.suppress(MfaSessionError):  # perhaps it was never replaced: look
            self.put(key_id, secret, created)
        return self.held()

    def _edited(self, key_id: str, secret: str) -> str:
        path = self.path or ""  # only called for a file
        text = key_files.read_text(path)
        return key_files.edit_keys(text, path, self.profile, self.config_style, (key_id, secret))


def _wait_until_accepted(
    mfa: MfaProfile,
    keys: StaticKeys,
    environ: Mapping[str, str],
    wait: float,
    status: Callable[[str], None],
) -> None:
    """GetCallerIdentity with the new key until AWS accepts it, at most ``wait`` s."""
    sts = Sts(MfaProfile(mfa.profile, keys, mfa.mfa_serial), min(time_budget(environ), wait))
    deadline = time.monotonic() + wait
    while True:
        try:
            sts.caller_arn(None)
        except StsError as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise StsError(
                    f"AWS did not accept the new key {keys.access_key_id} within {wait:.0f} s "
                    f"({exc.message})"
                ) from None
            status(f"waiting for AWS to accept the new key: {left:3.0f} s left")
            time.sleep(min(1.0, left))
        else:
            status("")
            return


def _store_unsettled(
    failure: BaseException,
    held: tuple[str, str] | None,
    new_keys: tuple[str, str],
    old: str,
    where: str,
    profile: str,
) -> MfaSessionError:
    """The store failed and the old key is not back in its place: nothing is deleted."""
    reason, kind = _why(failure, IamError)
    new = new_keys[0]
    if held == new_keys:  # whole: the secret too
        return kind(
            f"rotation stopped ({reason}) after the new key {new} was stored in {where}; it "
            f"works, and the old key {old} was not deleted",
            hint=f"delete it: mfa-session exec --profile {profile} -- aws iam "
            f"delete-access-key --access-key-id {old}",
        )
    return kind(
        f"rotation stopped ({reason}) while storing the new key {new}, and {old} could not be "
        f"put back: {where} holds neither as it was. Both keys still exist at AWS; neither "
        "was deleted",
        hint=f"repair the store ('mfa-session doctor'), then in the IAM console delete {new}, "
        f"create a key and give it to 'mfa-session keys add --profile {profile}'",
    )


def _why(failure: BaseException, kind: type[MfaSessionError]) -> tuple[str, type[MfaSessionError]]:
    """The words for what stopped a rotation, and the error to say it with (130 for ^C)."""
    if isinstance(failure, KeyboardInterrupt):
        return "interrupted", Interrupted
    if isinstance(failure, MfaSessionError):
        return failure.message, kind
    return f"unexpected {type(failure).__name__}", kind


def _rolled_back(
    failure: BaseException, iam: Iam, created: list[str], old: str, profile: str
) -> MfaSessionError:
    """Delete the new key again after a failure; the error says which keys exist now."""
    reason, kind = _why(failure, MfaSessionError)
    try:
        if created == ["?"]:  # the create's answer never came: a key may exist all the same
            created = [key.access_key_id for key in iam.access_keys() if key.access_key_id != old]
        if not created:
            return kind(
                f"rotation stopped ({reason}) before a new key existed. Your key {old} is "
                "unchanged and works",
                hint=getattr(failure, "hint", None),
            )
        new = created[0]
        iam.delete_access_key(new)
    except MfaSessionError as exc:
        new = created[0] if created and created != ["?"] else "(unknown: see the IAM console)"
        return kind(
            f"rotation stopped ({reason}); the new key {new} could not be deleted again "
            f"({exc.message}): it exists at AWS, unused, and its secret is gone. Your key "
            f"{old} is unchanged and works",
            hint=f"delete it: mfa-session exec --profile {profile} -- aws iam "
            f"delete-access-key --access-key-id {new}",
        )
    return kind(
        f"rotation stopped ({reason}); the new key {new} was deleted again. Your key {old} "
        "is unchanged and works",
        hint=None if isinstance(failure, KeyboardInterrupt) else getattr(failure, "hint", None),
    )
