"""Writing ``mfa_serial`` into ~/.aws/config without disturbing anything else.

configupdater keeps the user's comments, order, spacing and other keys; we place
the new line right after the section's last key (configupdater alone would put it
after trailing comments that belong to the next section), keep the file's line
endings and mode, save a backup first and replace the file atomically.
"""

from __future__ import annotations

import configparser
import io
import shutil
import time
from pathlib import Path

from mfa_session.cache import atomic_write
from mfa_session.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from configupdater import ConfigUpdater

KEY = "mfa_serial"


def section_name(profile: str) -> str:
    return "default" if profile == "default" else f"profile {profile}"


class ConfigEdit:
    """One planned change of a profile's mfa_serial, checked before anything is created."""

    def __init__(self, path: str, profile: str) -> None:
        self.path = path
        self.profile = profile
        self.original = _read(path)
        self.previous = _current_value(self.original, profile, path)

    def text_with(self, serial: str) -> str:
        """The whole file with the profile's mfa_serial set to ``serial``."""
        text = self.original
        newline = "\r\n" if "\r\n" in text else "\n"
        section = section_name(self.profile)
        updater = _updater(text, self.path)
        if not updater.has_section(section):
            separator = "" if not text or text.endswith(("\n", "\r")) else newline
            gap = newline if text.strip() else ""
            return f"{text}{separator}{gap}[{section}]{newline}{KEY} = {serial}{newline}"
        from configupdater.option import Option

        block = updater[section]
        if KEY in block:
            block[KEY].value = serial
            result = str(updater)
        else:
            options = [item for item in block.iter_blocks() if isinstance(item, Option)]
            if options:
                options[-1].add_after.option(KEY, serial)
            else:
                block.add_option(block.create_option(KEY, serial))
            result = str(updater)
        result = result.replace(f"{KEY} = {serial}\n", f"{KEY} = {serial}{newline}")
        if _current_value(result, self.profile, self.path) != serial:
            raise ConfigError(f"could not place mfa_serial in {self.path} safely; nothing changed")
        return result

    def apply(self, serial: str) -> str | None:
        """Write the change (after a backup of the old file); returns the backup's path."""
        text = self.text_with(serial)
        backup = None
        path = Path(self.path)
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if path.exists():
                stamp = time.strftime("%Y%m%dT%H%M%S")
                backup = f"{self.path}.{stamp}.bak"
                shutil.copy2(self.path, backup)
                mode = path.stat().st_mode & 0o777
            else:
                mode = 0o600
            atomic_write(self.path, text, mode=mode, newline="")
        except OSError as exc:
            raise ConfigError(f"cannot write {self.path}: {exc.strerror}") from exc
        return backup


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot edit {path}: it is not UTF-8 text") from exc
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


def _current_value(text: str, profile: str, path: str) -> str | None:
    parser = configparser.RawConfigParser()
    try:
        parser.read_string(text, source=path)
    except configparser.Error:
        raise ConfigError(f"cannot edit {path}: it does not parse as an AWS config file") from None
    section = section_name(profile)
    if not parser.has_section(section):
        return None
    value = parser.get(section, KEY, fallback=None)
    return value.strip() if value else None
