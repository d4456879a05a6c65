"""The one exception family: every expected failure becomes one line and an exit status."""

from __future__ import annotations


class MfaSessionError(Exception):
    """A failure the user can act on; ``cli.main`` prints it without a traceback."""

    exit_status = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class ConfigError(MfaSessionError):
    """The AWS config or credentials files do not describe a usable profile."""


class CacheError(MfaSessionError):
    """The cache folder is unsafe or unusable."""


class CodeError(MfaSessionError):
    """No valid MFA code could be obtained."""


class OwnCodeFailure(CodeError):
    """This process's own way to a code failed (the code it was given, no terminal):
    processes waiting on the device lock may have a better one, so they take over."""


class StsError(MfaSessionError):
    """STS refused or could not be reached."""


class WrongCodeError(StsError):
    """STS rejected the MFA code itself: a new code may succeed."""


class CodeSpentUnseen(WrongCodeError):
    """STS rejected the code on botocore's retry: the first attempt, whose answer was
    lost, most likely used it. It counts as spent."""


class UsageError(MfaSessionError):
    """The command line is wrong (exit status 2, like argparse)."""

    exit_status = 2


class IamError(MfaSessionError):
    """IAM refused or could not be reached while managing an MFA device."""


class Interrupted(MfaSessionError):
    """The person stopped a command half-way (Ctrl-C, a closed terminal)."""

    exit_status = 130


# Every secret this process has held (long-term secret keys, session secrets and
# tokens, seeds, codes): whatever we print passes through redact() as a last line of
# defence, behind the rule that no message is built from a secret or a response body.
_SECRETS: set[str] = set()
_REDACTED = "[redacted]"


def sensitive(value: str) -> str:
    """Register a secret (returned as is) so that no message can ever show it."""
    if len(value) >= 6:  # a six-digit code is the shortest secret we handle
        _SECRETS.add(value)
    return value


def redact(text: str) -> str:
    for value in sorted(_SECRETS, key=len, reverse=True):
        if value in text:
            text = text.replace(value, _REDACTED)
    return text
