"""The one use case: cached session, or lock, code, STS and cache.

Everything heavy (botocore, keyring, pyotp, filelock) is imported only on a miss.
"""

from __future__ import annotations

from collections.abc import Mapping

from mfa_session import environment
from mfa_session.cache import SessionCache, SessionKey
from mfa_session.config import DEFAULT_DURATION, AwsFiles, MfaProfile
from mfa_session.credentials import Credentials
from mfa_session.debug import debug
from mfa_session.errors import ConfigError, WrongCodeError

DEFAULT_MIN_REMAINING = 900  # botocore refreshes 15 minutes before expiry


class SessionRequest:
    """What the caller asked for; None means "from the profile or the default"."""

    __slots__ = ("duration", "min_remaining", "profile", "token_code")

    def __init__(
        self,
        profile: str,
        duration: int | None = None,
        token_code: str | None = None,
        min_remaining: int | None = None,
    ) -> None:
        self.profile = profile
        self.duration = duration
        self.token_code = token_code
        self.min_remaining = min_remaining


class Session:
    """Credentials ready to hand to a tool, with the profile's region."""

    __slots__ = ("credentials", "profile", "region")

    def __init__(self, profile: str, region: str | None, credentials: Credentials) -> None:
        self.profile = profile
        self.region = region
        self.credentials = credentials


def get_session(
    request: SessionRequest, environ: Mapping[str, str], caller_profile: str | None = None
) -> Session:
    """A session with enough time left, from the cache when possible.

    caller_profile is the AWS_PROFILE of the SDK that ran us: when it names a profile
    whose credential_process leads here, the shell prompt can find the session by it.
    """
    files = AwsFiles(environ)
    target, role_arn = files.follow_own_command(request.profile)
    if role_arn is not None:
        raise ConfigError(
            f"profile {request.profile!r} asks for role {role_arn}; roles are not supported yet"
        )
    mfa = files.mfa_profile(target)
    region = files.profile(request.profile).region or files.profile(target).region
    region = region or mfa.profile.region
    key = SessionKey(mfa.name, mfa.keys.access_key_id, mfa.mfa_serial)
    cache = SessionCache.from_environ(environ)
    credentials = _cached_or_new(request, mfa, key, cache, environ)

    aliases = {request.profile, caller_profile} - {None, mfa.name}
    for alias in sorted(name for name in aliases if name is not None):
        if alias == request.profile or _leads_to(files, alias, (target, role_arn)):
            cache.note_alias(alias, key, credentials)
    return Session(request.profile, region, credentials)


def _leads_to(files: AwsFiles, name: str, target: tuple[str, str | None]) -> bool:
    try:
        return files.follow_own_command(name) == target
    except ConfigError:
        return False


def _cached_or_new(
    request: SessionRequest,
    mfa: MfaProfile,
    key: SessionKey,
    cache: SessionCache,
    environ: Mapping[str, str],
) -> Credentials:
    duration = request.duration or mfa.profile.session_duration() or DEFAULT_DURATION
    # A 15-minute session with a 15-minute margin would never be reused.
    min_remaining = min(_min_remaining(request, environ), duration // 2)
    cached = cache.read(key)
    if cached is not None and cached.seconds_left() > min_remaining:
        debug("cache hit for profile %s: %d s left", mfa.name, cached.seconds_left())
        return cached

    with cache.device_lock(mfa.mfa_serial):
        # Another process may have prompted while we waited for the lock.
        cached = cache.read(key)
        if cached is not None and cached.seconds_left() > min_remaining:
            debug("a session for %s arrived while waiting for the lock", mfa.name)
            return cached
        credentials = _new_mfa_session(mfa, request, duration, cache, environ)
        cache.write(key, credentials)
    return credentials


def _min_remaining(request: SessionRequest, environ: Mapping[str, str]) -> int:
    if request.min_remaining is not None:
        return request.min_remaining
    raw = environ.get(environment.MIN_REMAINING)
    if not raw:
        return DEFAULT_MIN_REMAINING
    try:
        seconds = int(raw)
    except ValueError:
        raise ConfigError(f"{environment.MIN_REMAINING} must be a number of seconds") from None
    if seconds < 0:
        raise ConfigError(f"{environment.MIN_REMAINING} must not be negative")
    return seconds


def _new_mfa_session(
    mfa: MfaProfile,
    request: SessionRequest,
    duration: int,
    cache: SessionCache,
    environ: Mapping[str, str],
) -> Credentials:
    """Get a code and call GetSessionToken, retrying as the code source allows."""
    from mfa_session import codes, sts

    given, origin = request.token_code, "--token-code"
    if given is None and environ.get(environment.TOKEN_CODE):
        given, origin = environ[environment.TOKEN_CODE], environment.TOKEN_CODE
    terminal = codes.Terminal.open()
    device = codes.DeviceContext(mfa.mfa_serial, mfa.name, cache, environ, terminal=terminal)
    try:
        source = codes.choose_source(device, given, origin, mfa.profile.mfa_process)
        debug("MFA code source for profile %s: %s", mfa.name, source.label)
        attempt = 0
        while True:
            code = source.next_code(attempt)
            try:
                credentials = sts.get_session_token(mfa, code, duration)
            except WrongCodeError:
                attempt += 1
                if attempt >= source.tries:
                    raise
                source.after_rejection()
                continue
            device.remember(code, source.step)
            return credentials
    finally:
        if terminal is not None:
            terminal.close()
