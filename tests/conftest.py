"""Fixtures: every test gets a temporary HOME, ~/.aws files, cache folder and a
strict STS emulator on loopback; nothing touches the real home or the network."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pexpect
import pyotp
import pytest

from mfa_session.plan_records import SETTLE_SECONDS
from tests.sts_emulator import Device, StsEmulator, User

BIN = Path(sys.executable).parent
MFA_SESSION = str(BIN / "mfa-session")
AWS_CLI = str(BIN / "aws")
FILE_KEYRING = "keyrings.alt.file.PlaintextKeyring"
NO_KEYRING = "keyring.backends.fail.Keyring"


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class AwsHome:
    """A user's world: HOME, ~/.aws files, environment, and the STS they talk to."""

    root: Path
    emulator: StsEmulator
    user: User
    device: Device
    env: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.root / ".aws" / "config"

    @property
    def credentials(self) -> Path:
        return self.root / ".aws" / "credentials"

    @property
    def cache_dir(self) -> Path:
        return Path(self.env["MFA_SESSION_CACHE_DIR"])

    def code(self, step_offset: int = 0) -> str:
        """The device's code for the current 30 s step (or a neighbour)."""
        return self.code_for(self.device, step_offset)

    def code_for(self, device: Device, step_offset: int = 0) -> str:
        return str(pyotp.TOTP(device.seed).at(time.time() + 30 * step_offset))

    def write_config(self, text: str) -> None:
        self.config.write_text(text)

    def add_config(self, text: str) -> None:
        with self.config.open("a") as handle:
            handle.write(text)

    def run(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        timeout: float = 90,
        new_session: bool = True,
    ) -> Result:
        """Run mfa-session as a user would; new_session=True means no controlling terminal."""
        return self.run_command(
            [MFA_SESSION, *args], env=env, input=input, timeout=timeout, new_session=new_session
        )

    def run_command(
        self,
        argv: list[str],
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        timeout: float = 90,
        new_session: bool = True,
    ) -> Result:
        completed = subprocess.run(
            argv,
            env={**self.env, **(env or {})},
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=new_session,
            cwd=self.root,
            check=False,
        )
        return Result(completed.returncode, completed.stdout, completed.stderr)

    def spawn(self, *args: str, timeout: float = 30) -> pexpect.spawn:
        """mfa-session on a pseudo-terminal of its own: its controlling terminal, as when a
        person runs it (or a tool runs it from their shell)."""
        return pexpect.spawn(
            MFA_SESSION,
            list(args),
            env=self.env,
            cwd=str(self.root),
            encoding="utf-8",
            timeout=timeout,
        )

    def store_seed(self, seed: str | None = None, serial: str | None = None) -> None:
        """Put a seed in the file keyring the way `totp set` would."""
        self.env["PYTHON_KEYRING_BACKEND"] = FILE_KEYRING
        script = (
            "import keyring, sys; "
            "keyring.set_password('mfa-session', sys.argv[1], sys.stdin.read())"
        )
        completed = subprocess.run(
            [sys.executable, "-c", script, serial or self.device.serial],
            input=seed or self.device.seed,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert completed.returncode == 0, completed.stderr

    def wait_for_lock_holder(self, doing: str, timeout: float = 10) -> None:
        """Until a process holds a device lock and says (in its state file) it is ``doing``."""
        deadline = time.monotonic() + timeout
        while not any(
            doing in state.read_text() for state in self.cache_dir.glob("device-*.state")
        ):
            assert time.monotonic() < deadline, f"no lock holder is {doing!r}"
            time.sleep(0.05)

    def use_failing_keyring(self, name: str) -> None:
        """One of tests/keyring_backends.py's backends, which fail as real ones do."""
        self.env["PYTHON_KEYRING_BACKEND"] = f"tests.keyring_backends.{name}"
        self.env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])

    def use_file_keyring(self) -> None:
        """A real keyring backend: keyrings.alt's file, under this HOME."""
        self.env["PYTHON_KEYRING_BACKEND"] = FILE_KEYRING

    def stored_seed(self, serial: str | None = None) -> str | None:
        """What the keyring holds for a serial, read the way any keyring client would."""
        script = (
            "import keyring, sys; "
            "print(keyring.get_password('mfa-session', sys.argv[1]) or '', end='')"
        )
        completed = subprocess.run(
            [sys.executable, "-c", script, serial or self.device.serial],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert completed.returncode == 0, completed.stderr
        return completed.stdout or None

    def files_holding(self, secret: str) -> list[Path]:
        """Every file under HOME whose bytes contain ``secret``, the keyring's file aside."""
        found = []
        for path in self.root.rglob("*"):
            if (
                path.is_file()
                and not path.is_symlink()
                and path.name != "keyring_pass.cfg"
                and secret.encode() in path.read_bytes()
            ):
                found.append(path)
        return found

    def settle(self) -> None:
        """Wait until the AWS files are old enough to be remembered (plan_records: a file
        changed in the last 2 s is parsed on every call, never recorded)."""
        newest = max(
            max(path.stat().st_mtime, path.stat().st_ctime)
            for path in (self.config, self.credentials)
            if path.exists()
        )
        time.sleep(max(0.0, newest + SETTLE_SECONDS + 0.05 - time.time()))

    def plan_records(self) -> list[Path]:
        return sorted(self.cache_dir.glob("plan-*"))

    def gst_calls(self) -> list[object]:
        return list(self.emulator.calls("GetSessionToken"))


def read_session_file(path: Path) -> dict[str, str]:
    """A cached session, read the way the cache hit reads it: a magic line, the key
    (tab-separated), the expiry epoch, then the credential_process JSON as printed."""
    magic, key_line, epoch, document_line = path.read_text().rstrip("\n").split("\n")
    assert magic == "mfa-session session 2"
    profile, source_key_id, serial, role = key_line.split("\t")
    document = json.loads(document_line)
    return {
        "profile": profile,
        "source_access_key_id": source_key_id,
        "mfa_serial": serial,
        "role_arn": role,
        "epoch": epoch,
        "access_key_id": document["AccessKeyId"],
        "secret_access_key": document["SecretAccessKey"],
        "session_token": document["SessionToken"],
        "expiration": document["Expiration"],
    }


def clean_environment(home: Path) -> dict[str, str]:
    keep = {"LANG", "LC_ALL", "TERM", "SYSTEMROOT", "TMPDIR"}
    env = {key: value for key, value in os.environ.items() if key in keep}
    env.update(
        HOME=str(home),
        PATH=f"{BIN}{os.pathsep}/usr/local/bin{os.pathsep}/usr/bin{os.pathsep}/bin",
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_CONFIG_HOME=str(home / ".config"),
        PYTHON_KEYRING_BACKEND=NO_KEYRING,
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


# What the tests drive for real; .ci/run installs them. A missing one is an error, not a
# skip: skipped shell or keyring tests must never look like a green run.
REQUIRED_TOOLS = {
    "zsh": "zsh",
    "fish": "fish",
    "node": "nodejs",
    "npm": "npm",
    "gpg": "gnupg",
    "pass": "pass",
    "gnome-keyring-daemon": "gnome-keyring",
    "dbus-daemon": "dbus",
    "mount": "mount",
}


MIN_NODE = 20  # what @aws-sdk v3 supports


def _node_major() -> int:
    completed = subprocess.run(
        ["node", "--version"], capture_output=True, text=True, check=False, timeout=30
    )
    version = completed.stdout.strip().lstrip("v")
    return int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0


def pytest_sessionstart(session: pytest.Session) -> None:
    missing = sorted(
        {package for tool, package in REQUIRED_TOOLS.items() if shutil.which(tool) is None}
    )
    problems = []
    if missing:
        problems.append(f"missing: {' '.join(missing)} (apt-get install them; .ci/run does)")
    elif (node_major := _node_major()) < MIN_NODE:
        problems.append(f"node {node_major} is too old: the JS SDK tests need {MIN_NODE}+")
    if os.geteuid() != 0:
        problems.append("the disk-fault tests mount a small tmpfs: run them as root (CI does)")
    if problems:
        pytest.exit("make test cannot run every test here:\n  " + "\n  ".join(problems), 3)


@pytest.fixture
def emulator() -> Iterator[StsEmulator]:
    with StsEmulator() as emu:
        yield emu


@pytest.fixture
def aws(tmp_path: Path, emulator: StsEmulator, monkeypatch: pytest.MonkeyPatch) -> AwsHome:
    """alice: an IAM user with static keys, a virtual MFA device and a region."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "MFA_SESSION_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    user = emulator.add_user("alice", account="123456789012")
    device = emulator.add_mfa_device(user)
    (tmp_path / ".aws").mkdir()
    home = AwsHome(tmp_path, emulator, user, device, clean_environment(tmp_path))
    home.env.update(
        AWS_ENDPOINT_URL_STS=emulator.url,
        AWS_ENDPOINT_URL_IAM=emulator.url,
        MFA_SESSION_CACHE_DIR=str(tmp_path / "cache"),
    )
    home.credentials.write_text(
        f"[alice]\naws_access_key_id = {user.access_key_id}\n"
        f"aws_secret_access_key = {user.secret_access_key}\n"
    )
    home.write_config(
        f"[profile alice]\nmfa_serial = {device.serial}\nregion = eu-west-1\n\n"
        "[profile dev]\ncredential_process = mfa-session credential-process --profile alice\n"
        "region = eu-west-1\n"
    )
    return home


def wait_for_fresh_step(margin: float = 3.0) -> None:
    """Sleep to the next 30 s TOTP boundary when the current step is nearly over."""
    left = 30 - time.time() % 30
    if left < margin:
        time.sleep(left + 0.1)
