"""Names of the environment variables mfa-session reads or sets, in one place."""

from __future__ import annotations

import os  # loaded at start-up already: free on the hit path (pathlib is not)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

CACHE_DIR = "MFA_SESSION_CACHE_DIR"
TOKEN_CODE = "MFA_SESSION_TOKEN_CODE"
MIN_REMAINING = "MFA_SESSION_MIN_REMAINING"
# Set for the children of a code lookup (mfa_process) so that an mfa_process
# which ends up calling mfa-session again fails at once instead of recursing.
RESOLVING = "MFA_SESSION_RESOLVING"
# Set by `exec` (and `export`): which profile's session the environment holds and
# when it ends, so nested calls and the shell prompt need not start Python.
PROFILE = "MFA_SESSION_PROFILE"
EXPIRATION = "MFA_SESSION_EXPIRATION"
NO_PROMPT = "MFA_SESSION_NO_PROMPT"
# Time budgets, in seconds: every wait is bounded (see docs/configuration.md).
STS_TIMEOUT = "MFA_SESSION_STS_TIMEOUT"
MFA_PROCESS_TIMEOUT = "MFA_SESSION_MFA_PROCESS_TIMEOUT"
KEYRING_TIMEOUT = "MFA_SESSION_KEYRING_TIMEOUT"
# Set by `exec --server` and `serve` for the endpoint's clients, whose SDKs are shown no
# credentials file (AWS_SHARED_CREDENTIALS_FILE=/dev/null): the one mfa-session reads.
CREDENTIALS_FILE = "MFA_SESSION_CREDENTIALS_FILE"
# The federation endpoint for console sign-in (`login`), instead of the partition's own.
SIGNIN_URL = "MFA_SESSION_SIGNIN_URL"


def aws_files(environ: Mapping[str, str]) -> tuple[str, str]:
    """The config and credentials files mfa-session reads, for the hit and the full parse
    alike: the SDKs' variables, except that CREDENTIALS_FILE wins for the credentials."""
    config = environ.get("AWS_CONFIG_FILE") or "~/.aws/config"
    credentials = (
        environ.get(CREDENTIALS_FILE)
        or environ.get("AWS_SHARED_CREDENTIALS_FILE")
        or "~/.aws/credentials"
    )
    return os.path.expanduser(config), os.path.expanduser(credentials)


def seconds(environ: Mapping[str, str], name: str, default: float, most: float = 3600) -> float:
    """A time budget from the environment: 1 to ``most`` seconds, else ``default``."""
    raw = environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 1 <= value <= most:
        from mfa_session.errors import ConfigError

        raise ConfigError(f"{name} must be a number of seconds from 1 to {most:.0f}")
    return value
