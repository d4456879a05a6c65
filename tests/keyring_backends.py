"""Keyring backends that fail the way real ones do, selected in a test with
PYTHON_KEYRING_BACKEND=tests.keyring_backends.<Name> (PYTHONPATH = the checkout).

Hanging: a locked Secret Service with nobody to answer its prompt never returns.
Raising: a backend error such as a D-Bus failure or a locked collection.
"""

from __future__ import annotations

import time

from keyring.backend import KeyringBackend
from keyring.errors import KeyringLocked


class Hanging(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def get_password(self, service: str, username: str) -> str | None:
        time.sleep(3600)
        return None

    def set_password(self, service: str, username: str, password: str) -> None:
        time.sleep(3600)

    def delete_password(self, service: str, username: str) -> None:
        time.sleep(3600)


class Raising(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def get_password(self, service: str, username: str) -> str | None:
        raise KeyringLocked("Failed to unlock the collection!")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise KeyringLocked("Failed to unlock the collection!")

    def delete_password(self, service: str, username: str) -> None:
        raise KeyringLocked("Failed to unlock the collection!")


class RaisingOnWrite(KeyringBackend):
    """Reads find nothing; a write fails with an error that quotes what it was given."""

    priority = 1  # type: ignore[assignment]

    def get_password(self, service: str, username: str) -> str | None:
        return None

    def set_password(self, service: str, username: str, password: str) -> None:
        raise KeyringLocked(f"Failed to unlock the collection to store {password}")

    def delete_password(self, service: str, username: str) -> None:
        raise KeyringLocked("Failed to unlock the collection!")


class ReadOnlyFile(KeyringBackend):
    """keyrings.alt's file backend under HOME for reads; every write fails (a locked or
    full store that still answers reads)."""

    priority = 1  # type: ignore[assignment]

    def get_password(self, service: str, username: str) -> str | None:
        from keyrings.alt.file import PlaintextKeyring

        return PlaintextKeyring().get_password(service, username)

    def set_password(self, service: str, username: str, password: str) -> None:
        raise KeyringLocked("the store is read-only")

    def delete_password(self, service: str, username: str) -> None:
        raise KeyringLocked("the store is read-only")


class Cutting(KeyringBackend):
    """keyrings.alt's file backend under HOME that keeps a value cut short (a store with a
    size or line limit): reads work, a write keeps all but the last 3 characters. With
    KEYRING_CUT_ONCE=FILE in the environment, only while FILE exists (that write removes
    it): the next write is kept whole."""

    priority = 1  # type: ignore[assignment]

    def get_password(self, service: str, username: str) -> str | None:
        from keyrings.alt.file import PlaintextKeyring

        return PlaintextKeyring().get_password(service, username)

    def set_password(self, service: str, username: str, password: str) -> None:
        import os
        from pathlib import Path

        from keyrings.alt.file import PlaintextKeyring

        once = os.environ.get("KEYRING_CUT_ONCE")
        if once is None or Path(once).exists():
            if once is not None:
                Path(once).unlink()
            password = password[:-3]
        PlaintextKeyring().set_password(service, username, password)

    def delete_password(self, service: str, username: str) -> None:
        from keyrings.alt.file import PlaintextKeyring

        PlaintextKeyring().delete_password(service, username)
