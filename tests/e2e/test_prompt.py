"""The terminal prompt, in a real pty, while the AWS CLI captures the helper's pipes."""

from __future__ import annotations

import pexpect

from tests.conftest import AWS_CLI, MFA_SESSION, AwsHome, wait_for_fresh_step


def spawn(aws: AwsHome, argv: list[str]) -> pexpect.spawn:
    return pexpect.spawn(
        argv[0], argv[1:], env=aws.env, cwd=str(aws.root), encoding="utf-8", timeout=60
    )


def test_aws_cli_prompt_on_the_terminal_with_a_retry_after_a_wrong_code(aws: AwsHome) -> None:
    wait_for_fresh_step(margin=10)
    child = spawn(aws, [AWS_CLI, "sts", "get-caller-identity", "--profile", "dev"])
    child.expect_exact(f"MFA code for {aws.device.serial} (profile alice): ")
    child.sendline("12ab")
    child.expect_exact("a code is six digits")
    child.expect_exact("MFA code for")
    child.sendline(aws.code(step_offset=11))
    child.expect_exact("STS rejected that code; try 2 of 3")
    child.expect_exact("MFA code for")
    child.sendline(aws.code())
    child.expect_exact(aws.user.arn)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert [call.outcome for call in aws.gst_calls()] == ["AccessDenied", "ok"]


def test_three_wrong_codes_end_with_a_clear_error(aws: AwsHome) -> None:
    child = spawn(aws, [MFA_SESSION, "credential-process", "--profile", "alice"])
    for offset in (5, 6, 7):
        child.expect_exact("MFA code for")
        child.sendline(aws.code(step_offset=offset))
    child.expect_exact("mfa-session: error: STS rejected the MFA code")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert "Traceback" not in (child.before or "")
    assert [call.outcome for call in aws.gst_calls()] == ["AccessDenied"] * 3


def test_end_of_input_at_the_prompt(aws: AwsHome) -> None:
    child = spawn(aws, [MFA_SESSION, "credential-process", "--profile", "alice"])
    child.expect_exact("MFA code for")
    child.sendeof()
    child.expect_exact("mfa-session: error: no MFA code was entered")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert aws.emulator.calls() == []
