"""TOTP seeds: checked when they come in, kept only in the OS keyring.

A seed is stored under service ``mfa-session`` and user = the device's serial ARN,
as given (base32 text or an otpauth:// URI). AWS devices make six-digit SHA1 codes
every 30 s; a seed or URI that would make other codes is refused at once instead
of producing codes AWS would reject later.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import IO, Any

from mfa_session import os_keyring
from mfa_session.debug import debug
from mfa_session.errors import CodeError, sensitive
from mfa_session.os_keyring import KeyringFailed, KeyringUnavailable
from mfa_session.totp import DIGITS as AWS_DIGITS
from mfa_session.totp import STEP_SECONDS

_MIN_SEED_BITS = 112  # pyotp's floor; AWS seeds have 320
_BASE32 = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")

WHAT = "the TOTP seed"


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
        except Exception:  # pyotp raises several types for a bad URI
            raise CodeError(f"{origin} is not a valid otpauth:// URI", hint=hint) from None
        algorithm = totp.digest().name
        if totp.digits != AWS_DIGITS or totp.interval != STEP_SECONDS or algorithm != "sha1":
            raise CodeError(
                f"{origin} makes {totp.digits}-digit {algorithm.upper()} codes every "
                f"{totp.interval} s; AWS MFA codes are {AWS_DIGITS}-digit SHA1 codes every "
                f"{STEP_SECONDS} s",
                hint="check that the URI is the one for your AWS MFA device",
            )
        _check_base32(totp.secret.upper(), origin, hint)
        sensitive(totp.secret)  # the seed alone, as it may be quoted apart from its URI
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
    except Exception:
        raise CodeError(f"{origin} is not a valid TOTP seed (base32)", hint=hint) from None
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


def load_seed(serial: str, environ: Mapping[str, str] | None = None) -> Any | None:
    """The TOTP for this serial when a keyring holds one; no backend at all means none,
    a backend that fails raises KeyringFailed."""
    try:
        secret_text = read_seed(serial, environ)
    except KeyringFailed:
        raise
    except KeyringUnavailable as exc:
        debug("no keyring: %s", exc.message)
        return None
    if not secret_text:
        return None
    return parse_seed(secret_text, f"the keyring seed for {serial}")


def read_seed(serial: str, environ: Mapping[str, str] | None = None) -> str | None:
    seed = os_keyring.call([(os_keyring.GET, serial, None)], environ, WHAT).results[0]
    return sensitive(seed) if isinstance(seed, str) and seed else None


def store_seed(serial: str, seed: str, environ: Mapping[str, str] | None = None) -> str:
    """Store the seed; returns the keyring backend's name."""
    value = sensitive(normalized(seed))
    backend = os_keyring.call([(os_keyring.SET, serial, value)], environ, WHAT).backend
    _remember(serial, True, backend, environ)
    return backend


def remove_seed(serial: str, environ: Mapping[str, str] | None = None) -> bool:
    """Delete the seed; False when there was none."""
    answer = os_keyring.call([(os_keyring.DELETE, serial, None)], environ, WHAT)
    _remember(serial, False, answer.backend, environ)
    return bool(answer.results[0])


def _remember(serial: str, stored: bool, backend: str, environ: Mapping[str, str] | None) -> None:
    """Keep the secret-free record `status` reads in step (best effort: it is a hint)."""
    import os

    from mfa_session.errors import CacheError
    from mfa_session.keystore import Keystore

    try:
        Keystore(os.environ if environ is None else environ).note_seed(serial, stored, backend)
    except CacheError as exc:
        debug("seed record not written: %s", exc.message)


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
