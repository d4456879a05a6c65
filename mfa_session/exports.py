"""A session as environment variables, and the formats `export` prints them in."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Mapping, Sequence

from mfa_session import environment
from mfa_session.session import Session
from mfa_session.shells import fish_quote

FORMATS = ("sh", "fish", "powershell", "json", "dotenv")

# Variables that would compete with the session's keys in the SDKs' credential chain:
# a profile named in the environment (which makes botocore skip environment keys),
# older or other keys, and other credential sources.
STALE_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CREDENTIAL_EXPIRATION",
    "AWS_SESSION_EXPIRATION",
    "AWS_ACCESS_KEY",
    "AWS_SECRET_KEY",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
)


def session_variables(session: Session) -> dict[str, str]:
    """What `exec` sets and `export` prints, in a stable order."""
    credentials = session.credentials
    variables = {
        "AWS_ACCESS_KEY_ID": credentials.access_key_id,
        "AWS_SECRET_ACCESS_KEY": credentials.secret_access_key,
        "AWS_SESSION_TOKEN": credentials.session_token,
        "AWS_CREDENTIAL_EXPIRATION": credentials.expiration_iso,
    }
    if session.region:
        variables["AWS_REGION"] = session.region
        variables["AWS_DEFAULT_REGION"] = session.region
    variables[environment.PROFILE] = session.profile
    variables[environment.EXPIRATION] = str(int(credentials.expiration.timestamp()))
    return variables


def render(format_name: str, session: Session) -> str:
    if format_name == "json":
        # The credential_process JSON, as aws-vault's `export --format=json` prints it.
        return json.dumps(session.credentials.process_json(), indent=2) + "\n"
    return render_variables(format_name, session_variables(session), _stale(session))


def render_variables(
    format_name: str, variables: Mapping[str, str], unset: Sequence[str] = ()
) -> str:
    """Variables to set (and others to remove) in one of FORMATS; json and dotenv only set."""
    if format_name == "json":
        return json.dumps(dict(variables), indent=2) + "\n"
    return _RENDERERS[format_name](variables, unset)


def _stale(session: Session) -> list[str]:
    return [name for name in STALE_VARIABLES if name not in session_variables(session)]


def _sh(variables: Mapping[str, str], unset: Sequence[str]) -> str:
    lines = [f"unset {' '.join(unset)}"] if unset else []
    lines += [f"export {name}={shlex.quote(value)}" for name, value in variables.items()]
    return "\n".join(lines) + "\n"


def _fish(variables: Mapping[str, str], unset: Sequence[str]) -> str:
    lines = [f"set -e {name}" for name in unset]
    lines += [f"set -gx {name} {fish_quote(value)}" for name, value in variables.items()]
    return "\n".join(lines) + "\n"


def _powershell(variables: Mapping[str, str], unset: Sequence[str]) -> str:
    lines = [f"Remove-Item Env:{name} -ErrorAction SilentlyContinue" for name in unset]
    lines += [
        f"$env:{name} = '{value.replace(chr(39), chr(39) * 2)}'"
        for name, value in variables.items()
    ]
    return "\n".join(lines) + "\n"


def _dotenv(variables: Mapping[str, str], unset: Sequence[str]) -> str:
    # Values are base64-like or URLs (no spaces, quotes or newlines), so no quoting:
    # Docker's --env-file takes quotes literally.
    return "".join(f"{name}={value}\n" for name, value in variables.items())


_RENDERERS: dict[str, Callable[[Mapping[str, str], Sequence[str]], str]] = {
    "sh": _sh,
    "fish": _fish,
    "powershell": _powershell,
    "dotenv": _dotenv,
}
