"""Code sources and the no-reuse memory, with a fake clock (no STS, no sleeping)."""

from __future__ import annotations

from pathlib import Path

import pyotp
import pytest

from mfa_session.cache import SessionCache
from mfa_session.codes import (
    DeviceContext,
    GivenCode,
    ProcessCode,
    SeedCode,
    require_six_digits,
)
from mfa_session.errors import CodeError

SEED = pyotp.random_base32()
SERIAL = "arn:aws:iam::123456789012:mfa/alice"


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def device(tmp_path: Path) -> DeviceContext:
    clock = FakeClock(1_800_000_010.0)  # 10 s into a step
    return DeviceContext(
        SERIAL,
        "alice",
        SessionCache(str(tmp_path)),
        {"PATH": "/usr/bin:/bin"},
        clock=clock,
        sleep=clock.sleep,
    )


def test_six_digits_only() -> None:
    assert require_six_digits(" 012345\n", "x") == "012345"
    for bad in ("", "12345", "1234567", "12a456", "١٢٣٤٥٦"):
        with pytest.raises(CodeError):
            require_six_digits(bad, "x")


def test_seed_code_waits_when_the_step_was_spent(device: DeviceContext) -> None:
    source = SeedCode(device, pyotp.TOTP(SEED))
    first = source.next_code(0)
    assert first == pyotp.TOTP(SEED).at(device.clock())
    device.remember(first, source.step)
    second = source.next_code(0)
    clock = device.clock
    assert isinstance(clock, FakeClock)
    assert clock.slept and 19 < clock.slept[0] < 21
    assert second == pyotp.TOTP(SEED).at(clock())
    assert source.step == (first_step := (1_800_000_010 // 30)) + 1, first_step


def test_given_code_already_used_is_refused(device: DeviceContext) -> None:
    device.remember("123456", None)
    with pytest.raises(CodeError, match="already used"):
        GivenCode(device, "123456", "--token-code").next_code(0)
    assert GivenCode(device, "654321", "--token-code").next_code(0) == "654321"


def test_spent_code_is_forgotten_after_its_window(device: DeviceContext) -> None:
    device.remember("123456", None)
    clock = device.clock
    assert isinstance(clock, FakeClock)
    clock.now += 120
    assert not device.is_spent("123456")


def test_process_code_reruns_after_the_next_step_when_it_repeats(
    device: DeviceContext, tmp_path: Path
) -> None:
    script = tmp_path / "code.sh"
    script.write_text(
        "n=$(cat count 2>/dev/null || echo 0); echo $((n+1)) > count; "
        "[ $n -eq 0 ] && echo 111111 || echo 222222\n"
    )
    device.remember("111111", None)
    source = ProcessCode(device, f"cd {tmp_path} && sh {script}")
    assert source.next_code(0) == "222222"
    clock = device.clock
    assert isinstance(clock, FakeClock) and clock.slept


def test_process_failure_and_garbage(device: DeviceContext) -> None:
    with pytest.raises(CodeError, match="exit status 3"):
        ProcessCode(device, "exit 3").next_code(0)
    with pytest.raises(CodeError, match="not six digits"):
        ProcessCode(device, "echo hello").next_code(0)
