"""A profile's access keys in ~/.aws/credentials (or config), edited byte for byte.

`keys import` takes the two key lines out; `keys rotate` puts new values into them.
Every other byte stays as it was: comments, order, spacing, line endings and other
profiles. A section left with nothing in it goes. The result is checked against
what configparser (and so botocore) reads, then written atomically with the file's
mode; no backup is written, since a backup would keep the very secret being moved.
"""

from __future__ import annotations

import re
from pathlib import Path

from mfa_session.cache import atomic_write
from mfa_session.config import profile_of_section, settings_of
from mfa_session.errors import ConfigError

KEY_OPTIONS = ("aws_access_key_id", "aws_secret_access_key")
_OPTION = re.compile(r"\s*([^=:\s][^=:]*?)\s*[=:]\s?(.*?)(\r?\n)?$", re.S)


def read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return handle.read()
    except UnicodeDecodeError:
        raise ConfigError(f"cannot edit {path}: it is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


def _section_profile(header: str, config_style: bool) -> str | None:
    """The credentials file names profiles as they are; the config file as botocore reads it."""
    return profile_of_section(header) if config_style else header


def _blocks(lines: list[str], profile: str, config_style: bool) -> list[tuple[int, int]]:
    """(start, end) line ranges of the profile's sections, header included."""
    found = []
    start = None
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            if start is not None:
                found.append((start, index))
                start = None
            if _section_profile(stripped[1:-1], config_style) == profile:
                start = index
    if start is not None:
        found.append((start, len(lines)))
    return found


def _option(line: str) -> str | None:
    """The option a line sets (lower case, as configparser reads it), None for others."""
    stripped = line.strip()
    if not stripped or stripped[0] in "#;[" or line[:1] in " \t":
        return None
    match = _OPTION.match(line)
    return match.group(1).strip().lower() if match else None


def edit_keys(
    text: str,
    path: str,
    profile: str,
    config_style: bool,
    new_values: tuple[str, str] | None = None,
) -> str:
    """The file with the profile's two key lines removed, or given ``new_values``."""
    lines = text.splitlines(keepends=True)
    blocks = _blocks(lines, profile, config_style)
    if len(blocks) != 1:
        raise ConfigError(
            f"profile {profile!r} has {'no' if not blocks else 'more than one'} section in {path}"
        )
    start, end = blocks[0]
    keep: list[str] = []
    replaced = 0
    current: str | None = None
    for line in lines[start + 1 : end]:
        option = _option(line)
        if option is None and current in KEY_OPTIONS and line[:1] in " \t" and line.strip():
            continue  # a continuation of a key's value
        current = option if option is not None else current
        if option in KEY_OPTIONS:
            if new_values is not None:
                match = _OPTION.match(line)
                if match is None:  # _option matched it: cannot happen
                    raise ConfigError(f"cannot edit {path}")
                value = new_values[KEY_OPTIONS.index(option)]
                keep.append(line[: match.start(2)] + value + (match.group(3) or ""))
            replaced += 1
            continue
        keep.append(line)
    if replaced != 2:
        raise ConfigError(f"profile {profile!r} in {path} does not hold one key id and one secret")
    section = [lines[start], *keep]
    if new_values is None and all(not line.strip() for line in keep):
        section = []  # emptied: the header and its blank lines go
    result = "".join(lines[:start] + section + lines[end:])
    _check(text, result, path, profile, config_style, new_values)
    return result


def _check(
    before: str,
    after: str,
    path: str,
    profile: str,
    config_style: bool,
    new_values: tuple[str, str] | None,
) -> None:
    """Everything else reads as before; the keys are gone or hold the new values."""

    def split(
        text: str,
    ) -> tuple[dict[str, dict[str, str]], dict[str, str], tuple[str | None, ...]]:
        others: dict[str, dict[str, str]] = {}
        own: dict[str, str] = {}
        keys: tuple[str | None, ...] = (None, None)
        for section, values in settings_of(text, path).items():
            if _section_profile(section, config_style) == profile:
                own = dict(values)
                keys = tuple(own.pop(option, None) for option in KEY_OPTIONS)
            else:
                others[section] = values
        return others, own, keys

    old_others, old_own, _ = split(before)
    new_others, new_own, new_keys = split(after)
    expected = new_values if new_values is not None else (None, None)
    if (old_others, old_own, expected) != (new_others, new_own, new_keys):
        raise ConfigError(f"could not edit the keys in {path} safely; nothing changed")


def write(path: str, text: str) -> None:
    """Replace the file atomically, keeping its mode (a symlinked file at its target)."""
    target = Path(path).resolve()
    try:
        mode = target.stat().st_mode & 0o777
        atomic_write(str(target), text, mode=mode, newline="")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
