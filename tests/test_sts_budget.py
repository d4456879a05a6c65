"""The STS time budget: attempts, their timeouts and botocore's backoff fit in it."""

from __future__ import annotations

import pytest

from mfa_session.sts import MAX_BACKOFF, MIN_ATTEMPT_SECONDS, attempts_within


@pytest.mark.parametrize("mode", ["standard", "legacy"])
@pytest.mark.parametrize("budget", [1.0, 3.0, 6.0, 10.0, 30.0, 120.0])
@pytest.mark.parametrize("wanted", [1, 2, 3, 5, 6, 10])
def test_attempts_and_their_worst_backoff_fit_in_the_budget(
    mode: str, budget: float, wanted: int
) -> None:
    tries, per_attempt = attempts_within(budget, wanted, mode)
    assert 1 <= tries <= wanted
    cap = MAX_BACKOFF if mode == "standard" else float("inf")
    worst_backoff = sum(min(2.0**n, cap) for n in range(tries - 1))
    assert tries * per_attempt + worst_backoff <= budget + 1e-9
    assert tries == 1 or per_attempt >= MIN_ATTEMPT_SECONDS


def test_the_default_budget_keeps_standard_modes_three_attempts() -> None:
    assert attempts_within(30.0, 3) == (3, 9.0)
    assert attempts_within(30.0, 5, "legacy") == (5, 3.0)


def test_a_tight_budget_drops_attempts_rather_than_overrun() -> None:
    assert attempts_within(6.0, 5, "legacy") == (2, 2.5)
    assert attempts_within(6.0, 6) == (2, 2.5)
