"""Keep secrets out of core dumps and out of reach of same-user debuggers.

``no_core_dumps`` (one setrlimit, cheap enough for the cache hit) runs before any
secret is read; ``undumpable`` adds Linux's PR_SET_DUMPABLE 0 on the other paths,
which also stops core_pattern pipes and ptrace attachment by the user's other
processes (ctypes costs ~3 ms, too much for the hit). Commands we start get the
user's own core limit back; execve makes them dumpable again by itself.
"""

from __future__ import annotations

import sys

_PR_GET_DUMPABLE, _PR_SET_DUMPABLE = 3, 4
_saved_core_limit: tuple[int, int] | None = None
_dumpable_off = False


def no_core_dumps() -> None:
    global _saved_core_limit
    try:
        import resource
    except ImportError:  # Windows: no core files to speak of
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    if _saved_core_limit is None:
        _saved_core_limit = (soft, hard)
    if soft != 0:
        resource.setrlimit(resource.RLIMIT_CORE, (0, hard))


def undumpable() -> int | None:
    """No core dumps, and (Linux) not dumpable; the dumpable flag as the kernel now
    reports it (0: off), for --debug to show; None where there is none to read."""
    global _dumpable_off
    no_core_dumps()
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            _dumpable_off = libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) == 0
            return int(libc.prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0))
        except (OSError, AttributeError):  # no libc prctl (e.g. a static build)
            pass
    return None


def restore_core_limit() -> None:
    """Before exec'ing the user's command: its core limit is the user's business."""
    if _saved_core_limit is not None:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, _saved_core_limit)


class user_core_limit_for_children:
    """``with user_core_limit_for_children():`` around starting a child that outlives the
    moment (exec --server's command): the child gets the user's core limit. On Linux this
    process stays undumpable all the while; elsewhere the child keeps ours (0) rather
    than expose this one. A class, not contextlib: this module is on the cache-hit path."""

    def __enter__(self) -> None:
        self.lifted = _dumpable_off and _saved_core_limit is not None
        if self.lifted:
            restore_core_limit()

    def __exit__(self, *exc_info: object) -> None:
        if self.lifted:
            no_core_dumps()
