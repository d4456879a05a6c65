"""Seed parsing: what `totp set` accepts, and the clear refusals (pure logic)."""

from __future__ import annotations

import pyotp
import pytest

from mfa_session.errors import CodeError
from mfa_session.seeds import normalized, parse_seed

SEED = "JBSWY3DPEHPK3PXPK5QWC3DFMFZWG2LT"  # fixed: it names parametrized tests


def code_of(totp: object, at: float) -> str:
    return str(totp.at(at))  # type: ignore[attr-defined]


def test_base32_in_any_case_and_with_spaces() -> None:
    grouped = " ".join(SEED[i : i + 4] for i in range(0, len(SEED), 4)).lower()
    assert code_of(parse_seed(grouped, "x"), 1_000_000) == pyotp.TOTP(SEED).at(1_000_000)
    assert normalized(f"  {grouped}\n") == SEED


def test_otpauth_uri_is_stored_as_given() -> None:
    uri = f"otpauth://totp/AWS:alice?secret={SEED}&issuer=AWS&algorithm=SHA1&digits=6"
    assert code_of(parse_seed(uri, "x"), 1_000_000) == pyotp.TOTP(SEED).at(1_000_000)
    assert normalized(f" {uri}\n") == uri


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"otpauth://hotp/x?secret={SEED}&counter=1", "not a time-based"),
        ("otpauth://totp/x?issuer=AWS", "not a valid otpauth"),
        (f"otpauth://totp/x?secret={SEED}&digits=8", "8-digit SHA1 codes every 30 s"),
        (f"otpauth://totp/x?secret={SEED}&period=60", "6-digit SHA1 codes every 60 s"),
        (f"otpauth://totp/x?secret={SEED}&algorithm=SHA256", "6-digit SHA256 codes"),
        (f"otpauth://totp/x?secret={SEED[:-1]}", "part of it is missing"),
        (SEED[:-3], "has 29 characters"),
        (SEED[:10] + SEED[11:], "part of it is missing"),
        (SEED + SEED, "pasted twice"),
        ("my secret is " + SEED, "more than a seed"),
        ("https://example.com/?secret=ABC", "not a valid TOTP seed"),
        ("not-base32!!", "not a valid TOTP seed"),
        ("JBSWY3DP", "too short"),
    ],
)
def test_refusals_name_the_problem_but_never_the_text(text: str, message: str) -> None:
    with pytest.raises(CodeError, match=message) as caught:
        parse_seed(text, "the seed")
    assert SEED not in caught.value.message and SEED not in (caught.value.hint or "")
