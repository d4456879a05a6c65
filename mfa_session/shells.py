"""`init`: the shell integration scripts, with this machine's cache folder filled in."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path

from mfa_session import environment
from mfa_session.cache import default_cache_dir
from mfa_session.errors import MfaSessionError

SHELLS = ("bash", "zsh", "fish")
_PLACEHOLDER = "__MFA_SESSION_DEFAULT_CACHE_DIR__"


def script_folder() -> Path:
    """shell/ inside the wheel (force-included), or beside the package in a checkout."""
    package = Path(__file__).resolve().parent
    for folder in (package / "shell", package.parent / "shell"):
        if (folder / "mfa-session.bash").is_file():
            return folder
    raise MfaSessionError(f"the shell scripts are missing from {package}", hint="reinstall")


def init_script(shell: str, environ: Mapping[str, str], prompt: bool = True) -> str:
    text = (script_folder() / f"mfa-session.{shell}").read_text(encoding="utf-8")
    # The default, not MFA_SESSION_CACHE_DIR: the script reads that variable itself.
    defaults = {name: value for name, value in environ.items() if name != environment.CACHE_DIR}
    folder = default_cache_dir(defaults)
    quoted = fish_quote(folder) if shell == "fish" else shlex.quote(folder)
    text = text.replace(_PLACEHOLDER, quoted)
    if not prompt:
        opt_out = (
            f"set -g {environment.NO_PROMPT} 1" if shell == "fish" else f"{environment.NO_PROMPT}=1"
        )
        text = f"{opt_out}\n{text}"
    return text


def fish_quote(value: str) -> str:
    """Single quotes for fish, where only backslash and quote need escaping inside."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
