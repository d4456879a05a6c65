"""Setting a profile's key (``mfa_serial``, ``mfa_session_keys``) in ~/.aws/config without
disturbing anything else.

configupdater keeps the user's comments, order, spacing and other keys; we place
the new line right after the section's last key (configupdater alone would put it
after trailing comments that belong to the next section), keep the file's line
endings and mode, save a backup first and replace the file atomically.
"""

from __future__ import annotations

import errno
import io
import os
import re
import time
from pathlib import Path

from mfa_session.cache import atomic_write
from mfa_session.config import profile_of_section, settings_of
from mfa_session.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from configupdater import ConfigUpdater

KEY = "mfa_serial"
SECRET_KEYS = ("aws_secret_access_key", "aws_session_token")  # never copied into a backup


def section_name(profile: str) -> str:
    return "default" if profile == "default" else f"profile {profile}"


class ConfigEdit:
    """One planned change of a profile's ``key``, checked before anything is created."""

    def __init__(self, path: str, profile: str, key: str = KEY) -> None:
        # A symlinked config (dotfiles) is edited where it lives, and stays a link.
        self.path = str(Path(path).resolve()) if Path(path).is_symlink() else path
        self.profile = profile
        self.key = key
        self.original = _read(self.path)
        self.text_with("check")  # refuse what we cannot edit
        self.previous = _value_in(settings_of(self.original, self.path), profile, key)

    def text_with(self, serial: str | None, text: str | None = None) -> str:
        """The whole file (``text``, or as first read) with the profile's key set to
        ``serial`` (removed when None)."""
        text = self.original if text is None else text
        newline = "\r\n" if "\r\n" in text else "\n"
        updater = _updater(text, self.path)
        matching = [name for name in updater.sections() if profile_of_section(name) == self.profile]
        if len(matching) > 1:
            shown = ", ".join(f"[{name}]" for name in matching)
            raise ConfigError(
                f"profile {self.profile!r} has more than one section in {self.path} ({shown})",
                hint="merge them into one; AWS tools use only one of them",
            )
        if not matching and serial is None:
            return text
        if not matching:
            separator = "" if not text or text.endswith(("\n", "\r")) else newline
            gap = newline if text.strip() else ""
            section = section_name(self.profile)
            return f"{text}{separator}{gap}[{section}]{newline}{self.key} = {serial}{newline}"
        from configupdater.option import Option

        block = updater[matching[0]]
        if serial is None:
            if self.key in block:
                del block[self.key]
        elif self.key in block:
            block[self.key].value = serial
        else:
            items = list(block.iter_blocks())
            options = [item for item in items if isinstance(item, Option)]
            if options:
                options[-1].add_after.option(self.key, serial)
            elif items:  # only comments: right under the header, before anything else
                items[0].add_before.option(self.key, serial)
            else:
                block.add_option(block.create_option(self.key, serial))
        result = str(updater)
        if newline == "\r\n":
            result = re.sub(r"(?<!\r)\n", "\r\n", result)
        before, after = settings_of(text, self.path), settings_of(result, self.path)
        if _value_in(after, self.profile, self.key) != serial or _without(
            after, self.profile, self.key
        ) != _without(before, self.profile, self.key):
            raise ConfigError(f"could not place {self.key} in {self.path} safely; nothing changed")
        return result

    def apply(self, serial: str | None, backup_first: bool = True) -> str | None:
        """Write the change after a private backup of the old file, unless told not to or
        the file holds a secret (a backup would be a copy nobody removes); returns the
        backup's path. The file is read again: edits made meanwhile are kept."""
        original = _read(self.path)
        text = self.text_with(serial, original)
        backup = None
        path = Path(self.path)
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if path.exists() and backup_first and not _holds_secret(original, self.path):
                backup = _write_backup(self.path, original)
            mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
            atomic_write(self.path, text, mode=mode, newline="")
        except OSError as exc:
            raise ConfigError(f"cannot write {self.path}: {exc.strerror}") from exc
        return backup


def _holds_secret(text: str, path: str) -> bool:
    sections = settings_of(text, path).values()
    return any(key in SECRET_KEYS for settings in sections for key in settings)


def _write_backup(path: str, text: str) -> str:
    """A new 0600 file beside ``path`` (never over another backup) holding ``text``."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for number in range(1000):
        backup = f"{path}.{stamp}{f'.{number}' if number else ''}.bak"
        try:
            descriptor = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        return backup
    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), f"{path}.{stamp}.bak")


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""
    except UnicodeDecodeError:
        raise ConfigError(f"cannot edit {path}: it is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc


def _updater(text: str, path: str) -> ConfigUpdater:
    from configupdater import ConfigUpdater

    updater = ConfigUpdater()
    try:
        updater.read_file(io.StringIO(text, newline=""), source=path)
    except Exception:  # its messages quote lines, which could hold a secret
        raise ConfigError(f"cannot edit {path}: it does not parse as an AWS config file") from None
    return updater


def _value_in(settings: dict[str, dict[str, str]], profile: str, key: str) -> str | None:
    for section, values in settings.items():
        if profile_of_section(section) == profile:
            value = values.get(key)
            return value.strip() if value else None
    return None


def _without(
    settings: dict[str, dict[str, str]], profile: str, key: str
) -> dict[str, dict[str, str]]:
    """Everything but the profile's ``key``: what the edit must keep as it was."""
    return {
        section: {
            name: value
            for name, value in values.items()
            if not (name == key and profile_of_section(section) == profile)
        }
        for section, values in settings.items()
    }
