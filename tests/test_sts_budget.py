"""The STS time budget: attempts, their timeouts and botocore's backoff fit in it."""

from __future__ import annotations

import pytest

from mfa_session.sts import MIN_ATTEMPT_SECONDS, attempts_within, longest_backoff


@pytest.mark.parametrize("mode", ["standard", "legacy"])
@pytest.mark.parametrize("budget", [1.0, 3.0, 6.0, 10.0, 30.0, 120.0])
@pytest.mark.parametrize("wanted", [1, 2, 3, 5, 6, 10])
def test_attempts_and_their_worst_backoff_fit_in_the_budget(
    mode: str, budget: float, wanted: int
) -> None:
    tries, per_attempt = attempts_within(budget, wanted, mode)
    assert 1 <= tries <= wanted
    worst_backoff = sum(longest_backoff(attempt, mode) for attempt in range(1, tries))
    assert tries * per_attempt + worst_backoff <= budget + 1e-9
    assert tries == 1 or per_attempt >= MIN_ATTEMPT_SECONDS


def test_the_default_budget_keeps_standard_modes_three_attempts() -> None:
    assert attempts_within(30.0, 3) == (3, 9.0)
    assert attempts_within(30.0, 5, "legacy") == (5, 3.0)


def test_a_tight_budget_drops_attempts_rather_than_overrun() -> None:
    assert attempts_within(6.0, 5, "legacy") == (2, 2.5)
    assert attempts_within(6.0, 6) == (2, 2.5)


def test_the_longest_backoff_is_botocores_own() -> None:
    """The bound, checked against botocore's code with its random factor at its maximum and
    the throttling scale (the longest of its scales)."""
    from botocore.retries.standard import ExponentialBackoff
    from botocore.retryhandler import delay_exponential

    class Throttled:
        @staticmethod
        def is_throttling_error_from_context(context: object) -> bool:
            return True

    class Context:
        http_response = None

        def __init__(self, attempt_number: int) -> None:
            self.attempt_number = attempt_number

    standard = ExponentialBackoff(random=lambda: 1.0, throttling_detector=Throttled())
    for failed in range(1, 9):
        assert longest_backoff(failed, "standard") == standard.delay_amount(Context(failed))
        assert longest_backoff(failed, "legacy") == delay_exponential(1, 2, failed)
    assert longest_backoff(8, "standard") == 20  # where standard mode stops
