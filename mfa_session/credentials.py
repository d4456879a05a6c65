"""Temporary AWS credentials and the formats tools read them in.

A plain class rather than a dataclass, and datetime imported only where used: the
cache hit needs neither.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from datetime import datetime


class Credentials:
    """An STS session; secrets stay out of the repr so logs and tracebacks cannot leak them."""

    __slots__ = ("access_key_id", "expiration", "secret_access_key", "session_token")

    def __init__(
        self, access_key_id: str, secret_access_key: str, session_token: str, expiration: datetime
    ) -> None:
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.session_token = session_token
        self.expiration = expiration

    def __repr__(self) -> str:
        return f"Credentials({self.access_key_id!r}, expiration={self.expiration_iso})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Credentials):
            return NotImplemented
        return self.process_json() == other.process_json()

    __hash__ = None  # type: ignore[assignment]

    def seconds_left(self, now: datetime | None = None) -> int:
        return int((self.expiration - (now or utc_now())).total_seconds())

    @property
    def expiration_iso(self) -> str:
        return format_utc(self.expiration)

    def process_json(self) -> dict[str, object]:
        """The credential_process JSON, version 1, that every SDK understands."""
        return {
            "Version": 1,
            "AccessKeyId": self.access_key_id,
            "SecretAccessKey": self.secret_access_key,
            "SessionToken": self.session_token,
            "Expiration": self.expiration_iso,
        }


def utc_now() -> datetime:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


def format_utc(moment: datetime) -> str:
    from datetime import timezone

    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(text: str) -> datetime:
    """Parse the ISO 8601 forms STS and our cache write; naive times are UTC."""
    from datetime import datetime, timezone

    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment
