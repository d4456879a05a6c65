"""A wall-clock bound on one blocking call to AWS.

botocore's and urllib's timeouts bound each socket read, not the answer: a proxy that
passes an answer on a byte at a time keeps every read short and the call going for
minutes. So the call runs in a daemon thread and the caller waits for it at most its
budget; an overrun call is left to end by itself, its answer unread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
GRACE_SECONDS = 1.0  # the call's own timeouts should fire first; this is the backstop


class Overrun(Exception):
    """The call did not end within its deadline."""


def within(seconds: float, call: Callable[[], T]) -> T:
    """``call()``'s result or exception, or Overrun after ``seconds`` (plus the grace)."""
    outcome: list[T] = []
    failure: list[BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # handed to the caller's thread as it is
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name="aws-call", daemon=True).start()
    if not done.wait(seconds + GRACE_SECONDS):
        raise Overrun
    if failure:
        raise failure[0]
    return outcome[0]
