"""``--debug`` messages on stderr, without importing logging on the cache-hit path.

Only our own messages: botocore's debug log prints request bodies, codes and
secrets included, so it is never switched on.
"""

from __future__ import annotations

import sys

_enabled = False


def enable() -> None:
    global _enabled
    _enabled = True


def is_enabled() -> bool:
    return _enabled


def debug(message: str, *args: object) -> None:
    if _enabled:
        from mfa_session.errors import redact

        sys.stderr.write(redact(f"mfa-session: debug: {message % args}\n"))
        sys.stderr.flush()
