"""What an SDK takes before a credential endpoint: the default profile's own credentials.

SDKs try the shared files before the container endpoint, and a client of the endpoint
has no AWS_PROFILE (`exec --server` and `serve` unset it), so it reads the profile named
default. Credentials there would win over the endpoint without a word. The credentials
file is hidden from the endpoint's clients when its default profile holds them; the
config file cannot be hidden without losing its other settings (region, endpoints,
retries), so a source there is named in a warning."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mfa_session import environment

# The settings with which a profile gives the SDKs credentials of its own.
CREDENTIAL_SETTINGS = (
    "aws_access_key_id",
    "credential_process",
    "role_arn",
    "sso_session",
    "sso_start_url",
    "web_identity_token_file",
)
CLIENT_PROFILE = "default"


@dataclass
class EndpointClientFiles:
    """Variables the endpoint's clients need so that no profile shadows the endpoint, and a
    warning for what could not be hidden."""

    variables: dict[str, str] = field(default_factory=dict)
    warning: str | None = None


def endpoint_client_files(environ: Mapping[str, str]) -> EndpointClientFiles:
    """What the default profile of the files the environment names makes necessary."""
    from mfa_session.config import AwsFiles

    files = AwsFiles(environ)
    result = EndpointClientFiles()
    if _sources(files.credentials_settings.get(CLIENT_PROFILE, {})):
        result.variables["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
        # mfa-session itself, run in the child (by a credential_process line, say), still
        # reads the real one.
        result.variables[environment.CREDENTIALS_FILE] = str(
            Path(files.credentials_path).absolute()
        )
    found = _sources(files.config_settings.get(CLIENT_PROFILE, {}))
    if found:
        result.warning = (
            f"profile {CLIENT_PROFILE!r} in {files.config_path} has {', '.join(found)}: SDKs "
            "without a profile use it before the credential server; move it to a named "
            "profile to use the server"
        )
    return result


def _sources(settings: Mapping[str, str]) -> list[str]:
    """The settings by which a profile gives SDKs credentials of its own."""
    return [name for name in CREDENTIAL_SETTINGS if (settings.get(name) or "").strip()]
