"""Real keyring services for end-to-end tests (a pytest plugin: ``pytest_plugins``).

``secret_service``: gnome-keyring-daemon on a private D-Bus session bus, unlocked,
reached through keyring's *default* backend chain (PYTHON_KEYRING_BACKEND unset), as
on a desktop. ``pass_store``: the headless recipe of docs/security.md#headless-machines
-- pass and gpg-agent through keyring-pass, selected by keyringrc.cfg under the test's
XDG_CONFIG_HOME as a user would -- with a throw-away GnuPG key. Both can be locked.

A missing tool fails the test with what to install (``.ci/run`` installs it all):
these tests prove the documented setups work, so they never skip.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import AwsHome

# The Debian package of each command the fixtures run.
PACKAGES = {
    "dbus-daemon": "dbus",
    "dbus-send": "dbus-bin",
    "gnome-keyring-daemon": "gnome-keyring",
    "pass": "pass",
    "gpg": "gnupg",
    "gpgconf": "gnupg",
    "gpg-connect-agent": "gnupg",
    "/usr/lib/gnupg/gpg-preset-passphrase": "gnupg",
    "/usr/bin/pinentry-tty": "pinentry-tty",
}
PASSPHRASE = "correct horse battery staple"
KEYRING_PASS = "keyring_pass.PasswordStoreBackend"
SECRET_SERVICE = "keyring.backends.SecretService.Keyring"
READY_SECONDS = 30.0  # a poll, not a wait: a loaded 2-core CI machine can be slow to start D-Bus


def require(*commands: str, modules: tuple[str, ...] = ()) -> None:
    """Fail (never skip) naming every missing command's package and Python module."""
    missing = [
        f"{command} (Debian package {PACKAGES[command]})"
        for command in commands
        if not (Path(command).is_file() if command.startswith("/") else shutil.which(command))
    ]
    for module in modules:
        try:
            __import__(module)
        except ImportError:
            missing.append(f"Python module {module} (pip install -e '.[dev]')")
    if missing:
        pytest.fail(
            "keyring service tests need: " + ", ".join(missing) + " -- .ci/run installs them",
            pytrace=False,
        )


def run(argv: list[str], env: dict[str, str], input: str | None = None) -> str:
    """Run a setup command; its output, or a failure that shows what it said."""
    done = subprocess.run(
        argv, env=env, input=input, capture_output=True, text=True, timeout=30, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll a condition (never a blind sleep) for a few seconds."""
    deadline = time.monotonic() + READY_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {READY_SECONDS:.0f} s")
        time.sleep(0.02)


def short_directory(prefix: str) -> Path:
    """A private directory with a short path: Unix socket paths end at 108 bytes."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


class SecretService:
    """gnome-keyring-daemon's Secret Service on a session bus of its own."""

    COLLECTION = "/org/freedesktop/secrets/collection/login"

    def __init__(self, aws: AwsHome) -> None:
        self.aws = aws
        self.runtime = short_directory("mfa-ss-")
        self.runtime.chmod(0o700)
        self.env = {**aws.env, "XDG_RUNTIME_DIR": str(self.runtime)}
        self.env.pop("PYTHON_KEYRING_BACKEND", None)  # keyring's default chain, as on a desktop
        self.bus_pid = 0
        self.daemon: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        address, pid = run(
            [
                "dbus-daemon",
                "--session",
                "--fork",
                "--print-address=1",
                "--print-pid=1",
                f"--address=unix:path={self.runtime / 'bus'}",
            ],
            self.env,
        ).split()
        self.bus_pid = int(pid)
        self.env["DBUS_SESSION_BUS_ADDRESS"] = address
        # --unlock reads the password on stdin; a first unlock creates the login keyring
        # (under the test's XDG_DATA_HOME) with it, and makes it the default collection.
        self.daemon = subprocess.Popen(
            ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=self.env,
        )
        assert self.daemon.stdin is not None
        self.daemon.stdin.write(PASSPHRASE.encode())
        self.daemon.stdin.close()
        wait_until(self._collection_ready, "gnome-keyring-daemon's login collection")
        self.aws.env.clear()
        self.aws.env.update(self.env)

    def _collection_ready(self) -> bool:
        assert self.daemon is not None
        if self.daemon.poll() is not None:
            pytest.fail(f"gnome-keyring-daemon exited with status {self.daemon.returncode}")
        # Ask for the collection only once our daemon owns the name: a call to the name
        # before that makes D-Bus start a second, locked daemon (service activation),
        # which a slow, loaded machine made happen.
        return self._name_owned() and self.locked() is False

    def _name_owned(self) -> bool:
        done = subprocess.run(
            [
                "dbus-send",
                "--session",
                "--print-reply=literal",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
                "string:org.freedesktop.secrets",
            ],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return done.returncode == 0 and done.stdout.split()[-1:] == ["true"]

    def locked(self) -> bool | None:
        """Whether the login collection is locked; None while it does not exist."""
        done = subprocess.run(
            [
                "dbus-send",
                "--session",
                "--print-reply=literal",
                "--dest=org.freedesktop.secrets",
                self.COLLECTION,
                "org.freedesktop.DBus.Properties.Get",
                "string:org.freedesktop.Secret.Collection",
                "string:Locked",
            ],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if done.returncode != 0:
            return None
        return done.stdout.split()[-1] == "true"

    def lock(self) -> None:
        """What a screen lock or `Lock` from another client does: the next read must
        unlock, and with no display for the prompter, keyring raises KeyringLocked."""
        run(
            [
                "dbus-send",
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.secrets",
                "/org/freedesktop/secrets",
                "org.freedesktop.Secret.Service.Lock",
                f"array:objpath:{self.COLLECTION}",
            ],
            self.env,
        )
        assert self.locked() is True

    def stored(self, user: str) -> str | None:
        """What the Secret Service itself (no chain, no fallback) holds for a user."""
        script = (
            "import keyring, sys; "
            "print(keyring.get_password('mfa-session', sys.argv[1]) or '', end='')"
        )
        output = run(
            [sys.executable, "-c", script, user],
            {**self.env, "PYTHON_KEYRING_BACKEND": SECRET_SERVICE},
        )
        return output or None

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.terminate()
            try:
                self.daemon.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
        if self.bus_pid:
            subprocess.run(["kill", str(self.bus_pid)], check=False, capture_output=True)
        shutil.rmtree(self.runtime, ignore_errors=True)


@pytest.fixture
def secret_service(aws: AwsHome) -> Iterator[SecretService]:
    """A real, unlocked Secret Service behind keyring's default backend (aws.env)."""
    require("dbus-daemon", "dbus-send", "gnome-keyring-daemon", modules=("secretstorage",))
    service = SecretService(aws)
    try:
        service.start()
        yield service
    finally:
        service.stop()


# Test keys only: the cheapest passphrase hashing, so that making a key takes
# milliseconds instead of seconds. The docs' recipe keeps gpg-agent's default.
TEST_AGENT_OPTIONS = "s2k-count 65536\n"
AGENT_CONF = (
    "allow-preset-passphrase\n"
    "pinentry-program /usr/bin/pinentry-tty\n"
    "default-cache-ttl 600\n"
    "max-cache-ttl 7200\n"
    "pinentry-timeout 30\n"
)
KEY_PARAMETERS = """\
Key-Type: eddsa
Key-Curve: ed25519
Key-Usage: cert
Subkey-Type: ecdh
Subkey-Curve: cv25519
Subkey-Usage: encrypt
Name-Real: mfa-session test
Name-Email: test@example.invalid
Expire-Date: 0
%commit
"""


class PassStore:
    """pass + gpg-agent + keyring-pass, set up the way docs/security.md tells a user."""

    def __init__(self, aws: AwsHome) -> None:
        self.aws = aws
        self.gnupghome = short_directory("mfa-gpg-")  # gpg-agent's sockets live here
        self.gnupghome.chmod(0o700)
        self.store = aws.root / ".password-store"
        self.env = {
            **aws.env,
            "GNUPGHOME": str(self.gnupghome),
            "PASSWORD_STORE_DIR": str(self.store),
        }
        self.env.pop("PYTHON_KEYRING_BACKEND", None)  # keyringrc.cfg chooses, as in the docs
        self.keygrip = ""
        self.passphrase = PASSPHRASE

    def start(self) -> None:
        (self.gnupghome / "gpg-agent.conf").write_text(AGENT_CONF + TEST_AGENT_OPTIONS)
        parameters = self.gnupghome / "key-parameters"
        parameters.write_text(KEY_PARAMETERS)
        run(
            [
                "gpg",
                "--batch",
                "--quiet",
                "--pinentry-mode",
                "loopback",
                "--passphrase-fd",
                "0",
                "--gen-key",
                str(parameters),
            ],
            self.env,
            input=PASSPHRASE,
        )
        listing = run(["gpg", "--with-colons", "--with-keygrip", "-K"], self.env).splitlines()
        fingerprint = next(line.split(":")[9] for line in listing if line.startswith("fpr:"))
        subkey = [line.split(":")[0] for line in listing].index("ssb")
        self.keygrip = next(
            line.split(":")[9] for line in listing[subkey:] if line.startswith("grp:")
        )
        run(["pass", "init", fingerprint], self.env)
        config = Path(self.env["XDG_CONFIG_HOME"]) / "python_keyring" / "keyringrc.cfg"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(f"[backend]\ndefault-keyring = {KEYRING_PASS}\n")
        self.aws.env.clear()
        self.aws.env.update(self.env)

    def lock(self) -> None:
        """A new login session: gpg-agent holds no passphrase until someone types it."""
        run(["gpgconf", "--kill", "gpg-agent"], self.env)
        assert not self.unlocked()

    def unlock(self) -> None:
        """What a login script could do: preset the passphrase in gpg-agent's cache."""
        run(["gpg-connect-agent", "/bye"], self.env)
        run(
            ["/usr/lib/gnupg/gpg-preset-passphrase", "--preset", self.keygrip],
            self.env,
            input=PASSPHRASE,
        )
        assert self.unlocked()

    def unlocked(self) -> bool:
        """Whether gpg-agent caches the passphrase of the encryption key (no agent: no)."""
        done = subprocess.run(
            ["gpg-connect-agent", "--no-autostart", f"KEYINFO {self.keygrip}", "/bye"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        fields = next((line.split() for line in done.stdout.splitlines() if "KEYINFO" in line), [])
        return len(fields) > 6 and fields[6] == "1"

    def entry(self, user: str) -> Path:
        """Where keyring-pass keeps an entry: an encrypted file per service and user."""
        return self.store / "python-keyring" / "mfa-session" / f"{user}.gpg"

    def stop(self) -> None:
        subprocess.run(
            ["gpgconf", "--kill", "gpg-agent"], env=self.env, capture_output=True, check=False
        )
        shutil.rmtree(self.gnupghome, ignore_errors=True)


@pytest.fixture
def pass_store(aws: AwsHome) -> Iterator[PassStore]:
    """The headless recipe, unlocked (preset in gpg-agent): ``lock()`` to ask again."""
    require(
        "pass",
        "gpg",
        "gpgconf",
        "gpg-connect-agent",
        "/usr/lib/gnupg/gpg-preset-passphrase",
        "/usr/bin/pinentry-tty",
        modules=("keyring_pass",),
    )
    store = PassStore(aws)
    try:
        store.start()
        store.unlock()
        yield store
    finally:
        store.stop()
