"""Signals during work that must finish or be undone (enroll, key rotation).

While a step that changes things at AWS runs, SIGTERM and SIGHUP (a closed
terminal) interrupt like Ctrl-C, so the rollback runs; while the rollback runs,
all three are ignored, so a second Ctrl-C cannot leave half a change behind.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP roll back like Ctrl-C does."""
    with _signal_handlers(("SIGTERM", "SIGHUP"), _interrupt):
        yield


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    with _signal_handlers(("SIGINT", "SIGTERM", "SIGHUP"), signal.SIG_IGN):
        yield


@contextlib.contextmanager
def _signal_handlers(names: tuple[str, ...], handler: Any) -> Iterator[None]:
    previous = {}
    for name in names:
        number = getattr(signal, name, None)
        if number is not None:
            previous[number] = signal.signal(number, handler)
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
