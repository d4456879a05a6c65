"""TOTP seeds: checked when they come in, kept only in the OS keyring.

A seed is stored under service ``mfa-session`` and user = the device's serial ARN,
as given (base32 text or an otpauth:// URI). AWS devices make six-digit SHA1 codes
every 30 s; a seed or URI that would make other codes is refused at once instead
of producing codes AWS would reject later.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from mfa_session.codes import STEP_SECONDS
from mfa_session.debug import debug
from mfa_session.errors import CodeError

KEYRING_SERVICE = "mfa-session"
AWS_DIGITS = 6
_MIN_SEED_BITS = 112  # pyotp's floor; AWS seeds have 320
_BASE32 = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")

NO_BACKEND_HINT = (
    "on a desktop, unlock or install a keyring (GNOME Keyring, KWallet, KeePassXC, macOS "
    "Keychain); on a server, 'pip install keyrings.alt' and set PYTHON_KEYRING_BACKEND="
    "keyrings.alt.file.EncryptedKeyring; or use mfa_process instead"
)


class KeyringUnavailable(CodeError):
    """No keyring backend works here: nothing can be stored or read."""


def parse_seed(secret: str, origin: str) -> Any:
    """A pyotp TOTP from base32 text or an otpauth://totp/ URI, checked against what AWS
    devices are (SHA-1, six digits, 30 s, whole base32) so a bad paste fails here, not at STS."""
    import pyotp

    secret = secret.strip()
    hint = "paste the secret key (base32) or the otpauth://totp/ URI again"
    if secret.lower().startswith("otpauth://"):
        if not secret.lower().startswith("otpauth://totp/"):
            raise CodeError(
                f"{origin} is not a time-based (otpauth://totp/) URI: AWS MFA devices use TOTP",
                hint=hint,
            )
        totp: Any
        try:
            totp = pyotp.parse_uri(secret)
            totp.at(0)
        except Exception as exc:  # pyotp raises several types for a bad URI
            raise CodeError(f"{origin} is not a valid otpauth:// URI", hint=hint) from exc
        algorithm = totp.digest().name
        if totp.digits != AWS_DIGITS or totp.interval != STEP_SECONDS or algorithm != "sha1":
            raise CodeError(
                f"{origin} makes {totp.digits}-digit {algorithm.upper()} codes every "
                f"{totp.interval} s; AWS MFA codes are {AWS_DIGITS}-digit SHA1 codes every "
                f"{STEP_SECONDS} s",
                hint="check that the URI is the one for your AWS MFA device",
            )
        _check_base32(totp.secret.upper(), origin, hint)
        return totp
    groups = secret.split()
    if len(groups) > 1 and (
        len({len(group) for group in groups[:-1]}) != 1 or len(groups[-1]) > len(groups[0])
    ):
        raise CodeError(f"{origin} holds more than a seed (words or uneven groups)", hint=hint)
    compact = "".join(groups).upper()
    _check_base32(compact, origin, hint)
    try:
        totp = pyotp.TOTP(compact)
        totp.at(0)
    except Exception as exc:
        raise CodeError(f"{origin} is not a valid TOTP seed (base32)", hint=hint) from exc
    return totp


def _check_base32(compact: str, origin: str, hint: str) -> None:
    """Whole 8-character base32 groups: a truncated or doubled paste is refused."""
    data = compact.rstrip("=")
    if not data or any(character not in _BASE32 for character in data):
        raise CodeError(f"{origin} is not a valid TOTP seed (base32)", hint=hint)
    if len(data) * 5 < _MIN_SEED_BITS:
        raise CodeError(
            f"{origin} is too short to be a TOTP seed (AWS's are 64 characters)", hint=hint
        )
    if len(data) % 8:
        raise CodeError(
            f"{origin} has {len(data)} characters: a whole seed has a multiple of 8 "
            "(AWS's have 64); part of it is missing",
            hint=hint,
        )
    half = len(data) // 2
    if data[:half] == data[half:]:
        raise CodeError(f"{origin} looks pasted twice", hint=hint)


def normalized(secret: str) -> str:
    """What is stored: a URI as given, base32 without spaces and in upper case."""
    secret = secret.strip()
    if secret.lower().startswith("otpauth://"):
        return secret
    return "".join(secret.split()).upper()


def load_seed(serial: str) -> Any | None:
    """The TOTP for this serial when a keyring holds one; a missing backend means none."""
    try:
        secret = read_seed(serial)
    except KeyringUnavailable as exc:
        debug("keyring unavailable: %s", exc.message)
        return None
    if not secret:
        return None
    return parse_seed(secret, f"the keyring seed for {serial}")


def read_seed(serial: str) -> str | None:
    return _call("get_password", serial)  # type: ignore[no-any-return]


def store_seed(serial: str, secret: str) -> None:
    _call("set_password", serial, normalized(secret))


def remove_seed(serial: str) -> bool:
    """Delete the seed; False when there was none."""
    import keyring.errors

    try:
        _call("delete_password", serial)
    except keyring.errors.PasswordDeleteError:
        return False
    return True


def backend_name() -> str:
    import keyring

    try:
        backend = keyring.get_keyring()
    except Exception:  # a broken backend configuration
        return "no usable backend"
    return f"{type(backend).__module__}.{type(backend).__name__}"


def _call(operation: str, serial: str, *arguments: str) -> Any:
    """One keyring operation; every way the backend can fail becomes KeyringUnavailable."""
    import keyring
    import keyring.errors

    try:
        return getattr(keyring, operation)(KEYRING_SERVICE, serial, *arguments)
    except keyring.errors.PasswordDeleteError:
        raise
    except keyring.errors.NoKeyringError:
        raise KeyringUnavailable(
            "no OS keyring is available to keep the TOTP seed", hint=NO_BACKEND_HINT
        ) from None
    except Exception as exc:  # backends raise their own types (locked, D-Bus errors, ...)
        # The message of a backend error never holds the secret, but keep to the type.
        raise KeyringUnavailable(
            f"the keyring ({backend_name()}) failed: {type(exc).__name__}",
            hint="unlock the keyring, or see 'mfa-session doctor'; " + NO_BACKEND_HINT,
        ) from None


def read_seed_input(stdin: IO[str] | None = None) -> str:
    """The seed from a hidden prompt on a terminal, or all of stdin: never from argv."""
    stdin = sys.stdin if stdin is None else stdin
    try:
        if stdin is None:
            text = ""  # started with stdin closed
        elif stdin.isatty():
            import getpass

            text = getpass.getpass("TOTP seed (base32 secret key or otpauth:// URI, hidden): ")
        else:
            text = stdin.read()
    except EOFError:
        text = ""
    except UnicodeDecodeError:
        raise CodeError("the TOTP seed given is not text (UTF-8)") from None
    if not text.strip():
        raise CodeError(
            "no TOTP seed was given",
            hint="type or paste it at the prompt, or pipe it in: "
            "'mfa-session totp set --profile P < seed.txt'",
        )
    return text
