"""Keep secrets out of core dumps and out of reach of same-user debuggers.

``no_core_dumps`` (one setrlimit, cheap enough for the cache hit) runs before any
secret is read; ``undumpable`` adds Linux's PR_SET_DUMPABLE 0 on the other paths,
which also stops core_pattern pipes and ptrace attachment by the user's other
processes (ctypes costs ~3 ms, too much for the hit). Commands we start get the
user's own core limit back; execve makes them dumpable again by itself.
"""

from __future__ import annotations

import sys

_PR_SET_DUMPABLE = 4
_saved_core_limit: tuple[int, int] | None = None


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


def undumpable() -> None:
    no_core_dumps()
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
        except (OSError, AttributeError):  # no libc prctl (e.g. a static build)
            pass


def restore_core_limit() -> None:
    """Before exec'ing the user's command: its core limit is the user's business."""
    if _saved_core_limit is not None:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, _saved_core_limit)
