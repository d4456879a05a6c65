"""README's quick start, run as pasted: the files it shows are written as shown (only
the example key id and secret become the emulator user's), and its commands run in
bash on a terminal (a pty), where the MFA prompt gets the device's code.

Every fenced block of the quick start carries a marker just before it:
``<!-- quick-start: file PATH -->`` (write it to PATH under HOME), ``<!-- quick-start:
run -->`` (run it) or ``<!-- quick-start: skip REASON -->`` (what the test cannot run,
and why). A block without one fails the test: nothing is skipped silently."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import pexpect

from tests.conftest import AwsHome

README = Path(__file__).resolve().parents[2] / "README.md"
EXAMPLE_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
EXAMPLE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
MARKED_BLOCK = re.compile(
    r"<!-- quick-start: (?P<kind>\w+)(?: (?P<argument>[^\n]*?))? -->\n+"
    r"```[\w-]*\n(?P<body>.*?)^```",
    re.S | re.M,
)
# Checks the test adds after the README's commands, in the same shell.
PROMPT_CHECK = 'printf "PROMPT<%s>\\n" "$(mfa_session_prompt --plain)"\n'


@dataclass
class QuickStart:
    files: dict[str, str] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def quick_start(readme: str) -> QuickStart:
    """The quick start's blocks, by their markers."""
    section = readme.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    found = QuickStart()
    blocks = list(MARKED_BLOCK.finditer(section))
    fences = section.count("\n```") // 2
    assert len(blocks) == fences, "a block of the quick start has no quick-start marker"
    for block in blocks:
        kind, argument, body = block["kind"], block["argument"] or "", block["body"]
        if kind == "file":
            assert argument.startswith("~/"), argument
            found.files[argument] = body
        elif kind == "run":
            found.commands.append(body)
        elif kind == "skip":
            assert argument.strip(), "a skipped block must say why"
            found.skipped[body.strip()] = argument
        else:
            raise AssertionError(f"unknown quick-start marker {kind!r}")
    return found


def write_files(aws: AwsHome, files: dict[str, str]) -> None:
    """Exactly as shown, with the emulator user's keys in place of AWS's example ones."""
    credentials = files["~/.aws/credentials"]
    assert EXAMPLE_KEY_ID in credentials and EXAMPLE_SECRET in credentials
    files["~/.aws/credentials"] = credentials.replace(
        EXAMPLE_KEY_ID, aws.user.access_key_id
    ).replace(EXAMPLE_SECRET, aws.user.secret_access_key)
    for name, text in files.items():
        path = aws.root / name.removeprefix("~/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def run_commands(aws: AwsHome, commands: list[str]) -> tuple[int, str, int]:
    """The commands in bash on a terminal, typing a code at each MFA prompt: the exit
    status, what the terminal showed and how many codes were asked for."""
    script = aws.root / "quick-start.sh"
    script.write_text("set -e\n" + "".join(commands) + PROMPT_CHECK)
    transcript = io.StringIO()
    child = pexpect.spawn(
        "bash",
        ["--noprofile", "--norc", str(script)],
        env={**aws.env, "TERM": "dumb"},
        cwd=str(aws.root),
        encoding="utf-8",
        timeout=60,
    )
    child.logfile_read = transcript
    prompts = 0
    while (
        child.expect(
            [rf"MFA code for {re.escape(aws.device.serial)} \(profile alice\): ", pexpect.EOF]
        )
        == 0
    ):
        prompts += 1
        child.sendline(aws.code())
    child.close()
    return child.exitstatus, transcript.getvalue(), prompts


def test_the_quick_start_works_as_pasted(aws: AwsHome) -> None:
    aws.use_file_keyring()  # the user's OS keyring: a real backend under the test's HOME
    steps = quick_start(README.read_text(encoding="utf-8"))
    assert set(steps.files) == {"~/.aws/credentials", "~/.aws/config"}
    assert steps.commands and steps.skipped  # the install line, with its reason
    assert f"mfa_serial = {aws.device.serial}\n" in steps.files["~/.aws/config"]
    write_files(aws, steps.files)

    status, shown, prompts = run_commands(aws, steps.commands)

    assert status == 0, shown
    assert prompts == 1, shown  # one code, then the cache
    assert len(aws.gst_calls()) == 1
    assert shown.count(aws.user.arn) >= 4, shown  # doctor, and three AWS CLI calls
    assert "all good" in shown
    assert re.search(r"PROMPT<aws:dev (11h59m|12h00m)>", shown), shown
    # keys import: the secret left the file for the keyring.
    assert aws.user.secret_access_key not in aws.credentials.read_text()
    assert aws.user.access_key_id in (aws.stored_seed("access-key:alice") or "")
    assert "keyring (" in shown and aws.user.access_key_id in shown  # status's KEYS column


def test_a_quick_start_that_drifts_fails(aws: AwsHome) -> None:
    """The test above must catch drift: without `region`, the AWS CLI stops after a
    session was made ("You must specify a region"), as it did before the README had it."""
    aws.use_file_keyring()
    steps = quick_start(README.read_text(encoding="utf-8"))
    config = steps.files["~/.aws/config"]
    steps.files["~/.aws/config"] = "".join(
        line for line in config.splitlines(keepends=True) if not line.startswith("region")
    )
    write_files(aws, steps.files)

    status, shown, _ = run_commands(aws, steps.commands)

    assert status != 0
    assert "You must specify a region" in shown, shown
