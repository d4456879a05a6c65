"""The user's AWS config and credentials files, read the way botocore reads them.

This module is on the cache-hit path that runs before every AWS CLI call, so it
uses plain classes and os.path: dataclasses and pathlib each cost several
milliseconds to import.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping

from mfa_session.errors import ConfigError

MIN_DURATION = 900
MAX_DURATION = 129_600
DEFAULT_DURATION = 43_200

_OWN_COMMAND = r"(^|[\s/\\\"'])mfa[-_]session(\.exe)?([\s\"']|$)|-m\s+mfa_session\b"


class StaticKeys:
    """Long-term IAM user keys; the secret never shows in a repr."""

    __slots__ = ("access_key_id", "secret_access_key")

    def __init__(self, access_key_id: str, secret_access_key: str) -> None:
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key

    def __repr__(self) -> str:
        return f"StaticKeys({self.access_key_id!r})"


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

    def static_keys(self) -> StaticKeys | None:
        key_id, secret = self.get("aws_access_key_id"), self.get("aws_secret_access_key")
        if key_id and secret:
            return StaticKeys(key_id, secret)
        return None

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


def parse_duration(raw: str | int, what: str) -> int:
    """Validate a GetSessionToken duration before STS sees it."""
    try:
        seconds = int(raw)
    except ValueError:
        raise ConfigError(f"{what} must be a number of seconds, not {str(raw)!r}") from None
    if not MIN_DURATION <= seconds <= MAX_DURATION:
        raise ConfigError(
            f"{what} must be between {MIN_DURATION} and {MAX_DURATION} seconds, not {seconds}",
            hint="43200 (12 hours) is the default; 129600 (36 hours) is the most AWS allows",
        )
    return seconds


def is_own_command(command: str) -> bool:
    """True when a credential_process line would run mfa-session itself."""
    import re  # only on the error path

    return bool(re.search(_OWN_COMMAND, command))


class AwsFiles:
    """The config and credentials files named by the environment, parsed once."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.config_path = _path_from(environ, "AWS_CONFIG_FILE", "~/.aws/config")
        self.credentials_path = _path_from(
            environ, "AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"
        )
        config = _parse(self.config_path)
        credentials = _parse(self.credentials_path)
        self._profiles: dict[str, dict[str, str]] = {}
        for section in config.sections():
            name = _profile_name(section)
            if name is not None:
                self._profiles.setdefault(name, {}).update(config[section])
        # botocore lets the credentials file win for the keys it holds.
        for section in credentials.sections():
            self._profiles.setdefault(section, {}).update(credentials[section])

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

    def follow_own_command(self, name: str) -> tuple[str, str | None]:
        """Resolve a profile whose credential_process is mfa-session to the profile (and role)
        it names, so that AWS_PROFILE=dev works for exec and export as it does for the SDKs."""
        chain = [name]
        role_arn: str | None = None
        while True:
            profile = self.profile(name)
            command = profile.credential_process
            if profile.static_keys() or not command or not is_own_command(command):
                return name, role_arn
            target, target_role = _own_command_target(command)
            if target is None:
                raise ConfigError(
                    f"the credential_process of profile {name!r} runs mfa-session "
                    "without --profile",
                    hint="add --profile NAME-OF-THE-PROFILE-WITH-THE-KEYS to that line",
                )
            if target in chain:
                loop = " -> ".join([*chain, target])
                raise ConfigError(
                    f"profile {name!r} gets its keys from mfa-session itself, which would "
                    f"recurse: {loop}",
                    hint="point --profile in that credential_process line at the profile "
                    "with the long-term keys",
                )
            chain.append(target)
            role_arn = role_arn or target_role
            name = target

    def mfa_profile(self, name: str) -> MfaProfile:
        """The profile with the static keys and the MFA device, following source_profile."""
        profile = self.profile(name)
        chain = [name]
        serial = profile.mfa_serial
        while profile.static_keys() is None and profile.source_profile:
            source = profile.source_profile
            if source in chain:
                cycle = " -> ".join([*chain, source])
                raise ConfigError(f"source_profile cycle: {cycle}")
            chain.append(source)
            profile = self.profile(source)
            serial = serial or profile.mfa_serial
        keys = profile.static_keys()
        if keys is None:
            raise ConfigError(*_missing_keys_message(profile, self.credentials_path))
        if profile.get("aws_session_token"):
            raise ConfigError(
                f"profile {profile.name!r} holds temporary credentials (aws_session_token)",
                hint="mfa-session needs the IAM user's long-term access keys in that profile",
            )
        serial = profile.mfa_serial or serial
        if not serial:
            raise ConfigError(
                f"profile {name!r} has no mfa_serial",
                hint=f"add 'mfa_serial = arn:aws:iam::ACCOUNT:mfa/DEVICE' under "
                f"[profile {profile.name}] in {self.config_path}",
            )
        return MfaProfile(profile, keys, serial)


def _own_command_target(command: str) -> tuple[str | None, str | None]:
    """The --profile and --role-arn of an mfa-session credential_process line."""
    import shlex  # only for profiles that delegate to mfa-session

    try:
        words = shlex.split(command, posix=True)
    except ValueError:
        return None, None
    found: dict[str, str] = {}
    for index, word in enumerate(words):
        for option in ("--profile", "--role-arn"):
            if word == option and index + 1 < len(words):
                found[option] = words[index + 1]
            elif word.startswith(option + "="):
                found[option] = word.split("=", 1)[1]
    return found.get("--profile"), found.get("--role-arn")


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


def _path_from(environ: Mapping[str, str], variable: str, default: str) -> str:
    return os.path.expanduser(environ.get(variable) or default)


def _profile_name(section: str) -> str | None:
    if section == "default":
        return "default"
    if section.startswith("profile "):
        return section[len("profile ") :].strip()
    return None  # sso-session, services and other sections


def _parse(path: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser()
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except FileNotFoundError:
        pass
    except configparser.MissingSectionHeaderError as exc:
        raise ConfigError(
            f"cannot parse {path}: line {exc.lineno} is outside any [section]"
        ) from exc
    except configparser.ParsingError as exc:
        # The exception text quotes the offending lines, which may hold a secret key.
        lines = ", ".join(str(number) for number, _ in exc.errors)
        raise ConfigError(f"cannot parse {path}: line {lines} is not 'key = value'") from exc
    except configparser.Error as exc:
        first_line = str(exc).splitlines()[0]
        raise ConfigError(f"cannot parse {path}: {first_line}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot parse {path}: it is not UTF-8 text") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    return parser
