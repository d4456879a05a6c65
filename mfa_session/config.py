"""The user's AWS config and credentials files, read the way botocore reads them.

This module is on the cache-hit path that runs before every AWS CLI call, so it
uses plain classes and os.path: dataclasses and pathlib each cost several
milliseconds to import.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Callable, Mapping

from mfa_session import environment
from mfa_session.errors import ConfigError, sensitive
from mfa_session.plan_records import stat_identity

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~10 ms to import: even a full-parse hit goes without it
    from typing import Protocol

    class KeyDirectory(Protocol):
        """Finds a profile's keys in the keyring (keystore.Keystore): the id without opening it."""

        def keys_of(self, profile: str) -> tuple[StaticKeys, str]:
            """The keys (secret not read yet) and the identity of the record they came from."""
            ...

        def record_path(self, profile: str) -> str: ...


MIN_DURATION = 900
MAX_DURATION = 129_600
DEFAULT_DURATION = 43_200
MAX_ROLE_DURATION = 43_200
DEFAULT_ROLE_DURATION = 3_600
CHAINED_ROLE_LIMIT = 3_600  # AWS caps roles assumed with temporary credentials at 1 hour

_OWN_COMMAND = r"(^|[\s/\\\"'])mfa[-_]session(\.exe)?([\s\"']|$)|-m\s+mfa_session\b"


KEYS_MARKER = "mfa_session_keys"  # `mfa_session_keys = keyring`: the profile's keys are there
IN_KEYRING = "keyring"


class StaticKeys:
    """Long-term IAM user keys and where they live; the secret never shows in a repr.

    Keys in the keyring come with ``load`` instead of the secret: it is read only
    when a call needs it, never on a cache hit."""

    __slots__ = ("_load", "_secret", "access_key_id", "where")

    def __init__(
        self,
        access_key_id: str,
        secret_access_key: str | None = None,
        where: str = "",
        load: Callable[[], str] | None = None,
    ) -> None:
        self.access_key_id = access_key_id
        self.where = where
        self._secret = secret_access_key
        self._load = load

    @property
    def secret_access_key(self) -> str:
        if self._secret is None:
            if self._load is None:
                raise ConfigError(f"the secret of access key {self.access_key_id} is not at hand")
            self._secret = sensitive(self._load())
        return self._secret

    @property
    def in_keyring(self) -> bool:
        return self.where == IN_KEYRING

    def __repr__(self) -> str:
        return f"StaticKeys({self.access_key_id!r}, {self.where!r})"


class Profile:
    """One named profile, its config-file and credentials-file keys merged as botocore does."""

    __slots__ = ("name", "settings")

    def __init__(self, name: str, settings: Mapping[str, str]) -> None:
        self.name = name
        self.settings = settings

    def __repr__(self) -> str:
        return f"Profile({self.name!r})"  # settings may hold a secret key

    def get(self, key: str) -> str | None:
        value = self.settings.get(key)
        return value.strip() if value is not None and value.strip() else None

    @property
    def mfa_serial(self) -> str | None:
        return self.get("mfa_serial")

    @property
    def region(self) -> str | None:
        return self.get("region")

    @property
    def mfa_process(self) -> str | None:
        return self.get("mfa_process")

    @property
    def role_arn(self) -> str | None:
        return self.get("role_arn")

    @property
    def source_profile(self) -> str | None:
        return self.get("source_profile")

    @property
    def credential_process(self) -> str | None:
        return self.get("credential_process")

    def static_keys(self, where: str = "") -> StaticKeys | None:
        key_id, secret = self.get("aws_access_key_id"), self.get("aws_secret_access_key")
        if key_id and secret:
            sensitive(secret)
            if _looks_like_a_secret(key_id):  # never shown, cached or sent as an id
                sensitive(key_id)
                raise ConfigError(
                    f"the aws_access_key_id of profile {self.name!r} in {where or 'its file'} "
                    "looks like a secret access key, not a key id",
                    hint="did you swap the two values? A key id starts with AKIA; the secret "
                    "is the 40-character one",
                )
            return StaticKeys(key_id, secret, where)
        return None

    @property
    def keys_in_keyring(self) -> bool:
        return (self.get(KEYS_MARKER) or "").lower() == IN_KEYRING

    def has_own_keys(self) -> bool:
        """Keys of its own (files or keyring): where a plan stops, whatever credential_process
        the profile has for the SDKs (`aws --profile alice` may run mfa-session for alice)."""
        return self.keys_in_keyring or self.static_keys() is not None

    def session_duration(self) -> int | None:
        raw = self.get("mfa_session_duration")
        if raw is None:
            return None
        return parse_duration(raw, f"mfa_session_duration in profile {self.name}")


class MfaProfile:
    """What an MFA session needs: whose keys and which device."""

    __slots__ = ("keys", "mfa_serial", "profile")

    def __init__(self, profile: Profile, keys: StaticKeys, mfa_serial: str) -> None:
        self.profile = profile
        self.keys = keys
        self.mfa_serial = mfa_serial

    @property
    def name(self) -> str:
        return self.profile.name


class RoleHop:
    """One AssumeRole on the way to a profile's credentials, and who asked for it."""

    __slots__ = ("duration", "external_id", "mfa_serial", "profile", "role_arn", "session_name")

    def __init__(
        self,
        role_arn: str,
        profile: str,
        external_id: str | None = None,
        session_name: str | None = None,
        duration: int | None = None,
        mfa_serial: str | None = None,
    ) -> None:
        self.role_arn = role_arn
        self.profile = profile
        self.external_id = external_id
        self.session_name = session_name
        self.duration = duration
        self.mfa_serial = mfa_serial

    def __repr__(self) -> str:
        return f"RoleHop({self.role_arn!r}, profile={self.profile!r})"

    @classmethod
    def from_profile(cls, profile: Profile) -> RoleHop:
        raw = profile.get("duration_seconds")
        what = f"duration_seconds in profile {profile.name}"
        return cls(
            role_arn=profile.role_arn or "",
            profile=profile.name,
            external_id=profile.get("external_id"),
            session_name=profile.get("role_session_name"),
            duration=None if raw is None else parse_role_duration(raw, what),
            mfa_serial=profile.mfa_serial,
        )

    @classmethod
    def from_options(cls, options: Mapping[str, str], profile: str) -> RoleHop:
        raw = options.get("--duration")
        what = f"--duration in the credential_process of profile {profile}"
        return cls(
            role_arn=options["--role-arn"],
            profile=profile,
            external_id=options.get("--external-id"),
            session_name=options.get("--role-session-name"),
            duration=None if raw is None else parse_role_duration(raw, what),
        )


class SessionPlan:
    """The calls that make a profile's credentials: GetSessionToken with `mfa`, then `hops`."""

    __slots__ = ("hops", "mfa", "notes")

    def __init__(self, mfa: MfaProfile, hops: list[RoleHop], notes: list[str]) -> None:
        self.mfa = mfa
        self.hops = hops
        self.notes = notes


def parse_duration(raw: str | int, what: str) -> int:
    """Validate a GetSessionToken duration before STS sees it."""
    return _seconds(raw, what, MIN_DURATION, MAX_DURATION, "43200 (12 hours) is the default")


def parse_role_duration(raw: str | int, what: str) -> int:
    """Validate an AssumeRole duration; the role's own maximum is checked by AWS."""
    return _seconds(raw, what, MIN_DURATION, MAX_ROLE_DURATION, "3600 (1 hour) is the default")


def _seconds(raw: str | int, what: str, low: int, high: int, default: str) -> int:
    try:
        seconds = int(raw)
    except ValueError:
        raise ConfigError(f"{what} must be a number of seconds, not {str(raw)!r}") from None
    if not low <= seconds <= high:
        raise ConfigError(
            f"{what} must be between {low} and {high} seconds, not {seconds}",
            hint=f"{default}; {high} is the most AWS allows",
        )
    return seconds


def is_own_command(command: str) -> bool:
    """True when a credential_process line would run mfa-session itself."""
    import re  # only on the error path

    return bool(re.search(_OWN_COMMAND, command))


class AwsFiles:
    """The config and credentials files named by the environment, parsed once."""

    def __init__(self, environ: Mapping[str, str], keyring: KeyDirectory | None = None) -> None:
        self.environ = environ
        self._keyring = keyring
        self.config_path, self.credentials_path = environment.aws_files(environ)
        config, config_identity = _parse(self.config_path)
        credentials, credentials_identity = _parse(self.credentials_path)
        # What plan records are checked against: identities taken before each read.
        self.inputs = [
            (self.config_path, config_identity),
            (self.credentials_path, credentials_identity),
        ]
        self._profiles: dict[str, dict[str, str]] = {}
        self._key_files: dict[str, str] = {}  # profile -> the file its static keys are in
        # Each file's own settings per profile, for what only one file's reader sees.
        self.config_settings: dict[str, dict[str, str]] = {}
        self.credentials_settings: dict[str, dict[str, str]] = {}
        # items() once per section: a section proxy looks every value up again (a third of
        # a full parse at 5,000 profiles).
        for section in config.sections():
            name = profile_of_section(section)
            if name is not None:
                values = dict(config.items(section))
                self.config_settings.setdefault(name, {}).update(values)
                self._profiles.setdefault(name, {}).update(values)
                if "aws_access_key_id" in values:
                    self._key_files[name] = self.config_path
        # botocore lets the credentials file win for the keys it holds.
        for section in credentials.sections():
            values = dict(credentials.items(section))
            self.credentials_settings.setdefault(section, {}).update(values)
            self._profiles.setdefault(section, {}).update(values)
            if "aws_access_key_id" in values:
                self._key_files[section] = self.credentials_path

    def names(self) -> list[str]:
        return sorted(self._profiles)

    def profile(self, name: str) -> Profile:
        settings = self._profiles.get(name)
        if settings is None:
            raise ConfigError(
                f"profile {name!r} is not in {self.config_path} or {self.credentials_path}",
                hint=_known_profiles_hint(self.names()),
            )
        return Profile(name, dict(settings))

    def plan(self, name: str, mfa_serial: str | None = None) -> SessionPlan:
        """How to make a profile's credentials: the keys and device for GetSessionToken,
        then the roles to assume, following source_profile and profiles whose
        credential_process is mfa-session itself, as the AWS SDKs would.
        ``mfa_serial`` names the device when the files do not (enroll's first code)."""
        hops: list[RoleHop] = []
        notes: list[str] = []
        chain = [name]
        through_helper = False
        profile = self.profile(name)
        while True:
            command = profile.credential_process
            if profile.has_own_keys() and not profile.role_arn:
                break
            if profile.role_arn:
                if command:
                    notes.append(
                        f"profile {profile.name!r} has both role_arn and credential_process: "
                        "the AWS SDKs use role_arn and ignore credential_process"
                    )
                hops.insert(0, RoleHop.from_profile(profile))
                source = self._source_of(profile)
                if source == profile.name:
                    break  # botocore lets a role profile be its own source of static keys
            elif command and is_own_command(command):
                target = _own_command_target(command)
                source = target.get("--profile") or ""
                if not source:
                    raise ConfigError(
                        f"the credential_process of profile {profile.name!r} runs mfa-session "
                        "without --profile",
                        hint="add --profile NAME-OF-THE-PROFILE-WITH-THE-KEYS to that line",
                    )
                if "--role-arn" in target:
                    hops.insert(0, RoleHop.from_options(target, profile.name))
                through_helper = True
            else:
                break
            if source in chain:
                raise _cycle_error([*chain, source], through_helper)
            chain.append(source)
            profile = self._source_profile(source, chain[-2])
        keys = self.keys_of(profile)
        if profile.get("aws_session_token"):
            raise ConfigError(
                f"profile {profile.name!r} holds temporary credentials (aws_session_token)",
                hint="mfa-session needs the IAM user's long-term access keys in that profile",
            )
        serial = (
            mfa_serial
            or profile.mfa_serial
            or next((h.mfa_serial for h in hops if h.mfa_serial), None)
        )
        if not serial:
            raise ConfigError(
                f"profile {name!r} has no mfa_serial",
                hint=f"add 'mfa_serial = arn:aws:iam::ACCOUNT:mfa/DEVICE' under "
                f"[profile {profile.name}] in {self.config_path}",
            )
        return SessionPlan(MfaProfile(profile, keys, serial), hops, notes)

    def keys_of(self, profile: Profile) -> StaticKeys:
        """A profile's long-term keys: from the files, or (``mfa_session_keys = keyring``)
        the keyring's, whose id comes from a record and whose secret is read when needed."""
        static = profile.static_keys(self._key_files.get(profile.name, self.credentials_path))
        if profile.keys_in_keyring:
            if static is not None:
                raise ConfigError(
                    f"profile {profile.name!r} has keys in {static.where} and, by "
                    f"{KEYS_MARKER} = {IN_KEYRING}, in the keyring: mfa-session will not guess "
                    "which is right",
                    hint=f"'mfa-session keys import --profile {profile.name}' moves the file's "
                    f"keys into the keyring; or delete the {KEYS_MARKER} line to use the file",
                )
            if self._keyring is None:
                from mfa_session.keystore import Keystore

                self._keyring = Keystore(self.environ)
            keys, identity = self._keyring.keys_of(profile.name)
            self.inputs.append((self._keyring.record_path(profile.name), identity))
            return keys
        if static is None:
            raise ConfigError(*_missing_keys_message(profile, self.credentials_path))
        return static

    def key_file(self, name: str) -> str | None:
        """The file holding a profile's static keys, if any."""
        return self._key_files.get(name)

    def _source_of(self, profile: Profile) -> str:
        source = profile.source_profile
        if source:
            return source
        if profile.get("credential_source"):
            raise ConfigError(
                f"profile {profile.name!r} takes its keys from credential_source "
                f"({profile.get('credential_source')}), which has no MFA device",
                hint="use source_profile = the profile with your IAM user's keys",
            )
        raise ConfigError(
            f"profile {profile.name!r} has role_arn but no source_profile",
            hint="add source_profile = the profile with your IAM user's long-term keys",
        )

    def _source_profile(self, name: str, referrer: str) -> Profile:
        if name not in self._profiles:
            raise ConfigError(
                f"profile {referrer!r} names source profile {name!r}, which does not exist",
                hint=_known_profiles_hint(self.names()),
            )
        return self.profile(name)


def delegate_of(profile: Profile) -> str | None:
    """The profile another takes its keys from: its source_profile, or the --profile of a
    credential_process that runs mfa-session."""
    if profile.source_profile:
        return profile.source_profile
    command = profile.credential_process
    if command and is_own_command(command):
        return _own_command_target(command).get("--profile")
    return None


def _cycle_error(chain: list[str], through_helper: bool) -> ConfigError:
    loop = " -> ".join(chain)
    if through_helper:
        return ConfigError(
            f"profile {chain[-2]!r} gets its keys from mfa-session itself, which would "
            f"recurse: {loop}",
            hint="point --profile in that credential_process line at the profile with the "
            "long-term keys",
        )
    return ConfigError(f"source_profile cycle: {loop}")


_DELEGATED_OPTIONS = (
    "--profile",
    "--role-arn",
    "--external-id",
    "--role-session-name",
    "--duration",
)


def _own_command_target(command: str) -> dict[str, str]:
    """The options of an mfa-session credential_process line that say what it serves."""
    import shlex  # only for profiles that delegate to mfa-session

    try:
        words = shlex.split(command, posix=True)
    except ValueError:
        return {}
    found: dict[str, str] = {}
    for index, word in enumerate(words):
        for option in _DELEGATED_OPTIONS:
            if word == option and index + 1 < len(words):
                found[option] = words[index + 1]
            elif word.startswith(option + "="):
                found[option] = word.split("=", 1)[1]
    return found


def _missing_keys_message(profile: Profile, credentials_path: str) -> tuple[str, str]:
    command = profile.credential_process
    if command and is_own_command(command):
        return (
            f"profile {profile.name!r} gets its keys from mfa-session itself "
            "(credential_process), which would recurse",
            f"pass the profile that holds the long-term keys: its credential_process names "
            f"--profile; put aws_access_key_id/aws_secret_access_key under [{profile.name}] "
            f"in {credentials_path}",
        )
    return (
        f"profile {profile.name!r} has no long-term access keys",
        f"add aws_access_key_id and aws_secret_access_key under [{profile.name}] "
        f"in {credentials_path}",
    )


def _known_profiles_hint(names: list[str]) -> str:
    if not names:
        return "no profiles are configured; see 'docs/configuration.md'"
    shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
    return f"known profiles: {shown}"


def _looks_like_a_secret(key_id: str) -> bool:
    """Key ids are capitals and digits; secrets are 40 characters of mixed case, / and +."""
    return "/" in key_id or "+" in key_id or (len(key_id) >= 30 and key_id != key_id.upper())


def profile_of_section(section: str) -> str | None:
    """The profile a config-file section names, by botocore's rule: `default`, or
    `profile NAME` split as a shell would (so [profile "a b"] is a b); None for others
    (sso-session, services)."""
    if section.strip() == "default":
        return "default"
    if not section.startswith("profile"):
        return None
    if '"' in section or "'" in section or "\\" in section:
        import shlex  # only for quoted names: the common case stays cheap

        try:
            words = shlex.split(section)
        except ValueError:
            return None
    else:
        words = section.split()
    return words[1] if len(words) == 2 and words[0] == "profile" else None


def settings_of(text: str, path: str) -> dict[str, dict[str, str]]:
    """Every section's settings, as configparser (and so botocore) reads them; for checking
    that an edit changed only what it meant to."""
    parser = configparser.RawConfigParser()
    try:
        parser.read_string(text, source=path)
    except configparser.Error:
        raise ConfigError(f"cannot edit {path}: it does not parse as an AWS file") from None
    return {section: dict(parser.items(section)) for section in parser.sections()}


def _parse(path: str) -> tuple[configparser.RawConfigParser, str]:
    """The parsed file and its identity (see plan_records), taken before it was read."""
    parser = configparser.RawConfigParser()
    identity = "-"
    try:
        with open(path, encoding="utf-8") as handle:
            identity = stat_identity(os.fstat(handle.fileno()))
            parser.read_file(handle)
    except FileNotFoundError:
        pass
    except configparser.MissingSectionHeaderError as exc:
        raise ConfigError(
            f"cannot parse {path}: line {exc.lineno} is outside any [section]"
        ) from None
    except configparser.ParsingError as exc:
        # The exception text quotes the offending lines, which may hold a secret key.
        lines = ", ".join(str(number) for number, _ in exc.errors)
        raise ConfigError(f"cannot parse {path}: line {lines} is not 'key = value'") from None
    except configparser.Error as exc:
        first_line = str(exc).splitlines()[0]
        raise ConfigError(f"cannot parse {path}: {first_line}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"cannot parse {path}: it is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    return parser, identity
