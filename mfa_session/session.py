"""The one use case: cached session, or lock, code, STS and cache.

A profile's credentials are a GetSessionToken session with MFA, then zero or more
roles assumed from it; each level is cached on its own, so one MFA code serves
every role. Everything heavy (botocore, keyring, pyotp, filelock) is imported only
on a miss.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from mfa_session import environment
from mfa_session.cache import DEFAULT_MIN_REMAINING, SessionCache, SessionKey
from mfa_session.config import (
    CHAINED_ROLE_LIMIT,
    DEFAULT_DURATION,
    DEFAULT_ROLE_DURATION,
    AwsFiles,
    RoleHop,
    SessionPlan,
    parse_role_duration,
)
from mfa_session.credentials import Credentials
from mfa_session.debug import debug
from mfa_session.errors import CodeSpentUnseen, ConfigError, UsageError, WrongCodeError
from mfa_session.lock import DeviceLock
from mfa_session.plan_records import PlanRecord, PlanRequest, save, signature_of

TYPE_CHECKING = False
if TYPE_CHECKING:
    from mfa_session.sts import Sts

_ROLE_ARN = r"arn:aws[\w-]*:iam::\d{12}:role/[\w+=,.@/-]{1,128}"


class SessionRequest:
    """What the caller asked for; None means "from the profile or the default"."""

    __slots__ = (
        "duration",
        "external_id",
        "mfa_serial",
        "min_remaining",
        "profile",
        "role_arn",
        "role_session_name",
        "token_code",
    )

    def __init__(
        self,
        profile: str,
        duration: int | None = None,
        token_code: str | None = None,
        min_remaining: int | None = None,
        role_arn: str | None = None,
        external_id: str | None = None,
        role_session_name: str | None = None,
        mfa_serial: str | None = None,
    ) -> None:
        self.profile = profile
        self.duration = duration
        self.token_code = token_code
        self.min_remaining = min_remaining
        self.role_arn = role_arn
        self.external_id = external_id
        self.role_session_name = role_session_name
        self.mfa_serial = mfa_serial  # a device the files do not name yet (enroll)


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
    that leads to the same session, the shell prompt can find the session by it.
    """
    files = AwsFiles(environ)
    plan = files.plan(request.profile, request.mfa_serial)
    hops = _hops(plan, request)
    cache = SessionCache.from_environ(environ)
    builder = _Builder(plan, hops, request, environ, cache)
    credentials = builder.credentials(len(hops))

    region = files.profile(request.profile).region or plan.mfa.profile.region
    signature = _signature(plan, hops)
    record = PlanRecord(builder.keys[-1], builder.durations[-1], signature)
    if request.mfa_serial is None:  # enroll's device is not in the files yet
        save(cache.folder, _plan_request(files, request), files.inputs, record)
    aliases = {request.profile, caller_profile or ""} - {"", plan.mfa.name}
    for alias in sorted(aliases):
        if alias == request.profile or _record_of(files, alias, cache).signature == signature:
            cache.note_alias(alias, builder.keys[-1], credentials)
    if builder.made_new:
        _note_every_alias(environ, cache, signature, builder.keys[-1], credentials, aliases)
    return Session(request.profile, region, credentials)


def _note_every_alias(
    environ: Mapping[str, str],
    cache: SessionCache,
    signature: str,
    key: SessionKey,
    credentials: Credentials,
    done: set[str],
) -> None:
    """A new session: every profile that leads to it gets an alias, so the prompt finds
    it after `export AWS_PROFILE=dev` before dev's first call. Records only: no keyring."""
    from mfa_session.keystore import Keystore

    files = AwsFiles(environ, Keystore(environ, cache.folder, may_open=False))
    for name in files.names():
        if name in done or name == key.profile:
            continue
        try:
            plan = files.plan(name)
            hops = _hops(plan, SessionRequest(name))
        except ConfigError:
            continue
        if _signature(plan, hops) == signature:
            cache.note_alias(name, key, credentials)


def _signature(plan: SessionPlan, hops: list[RoleHop]) -> str:
    """What makes two profiles lead to the same session: the key profile and the roles."""
    return signature_of(plan.mfa.name, [hop.role_arn for hop in hops])


def _plan_request(files: AwsFiles, request: SessionRequest) -> PlanRequest:
    """The request as the cache hit sees it on the command line."""
    return PlanRequest(
        files.config_path,
        files.credentials_path,
        request.profile,
        request.role_arn,
        request.external_id,
        request.role_session_name,
        None if request.duration is None else str(request.duration),
    )


def _record_of(files: AwsFiles, name: str, cache: SessionCache) -> PlanRecord:
    """A profile's plan as the hit needs it (remembered for it), or an empty one."""
    try:
        plan = files.plan(name)
        hops = _hops(plan, SessionRequest(name))
        keys, durations, _ = _levels(plan, hops, SessionRequest(name))
        record = PlanRecord(keys[-1], durations[-1], _signature(plan, hops))
    except ConfigError:
        record = PlanRecord(None, 0, "")
    save(
        cache.folder,
        PlanRequest(files.config_path, files.credentials_path, name),
        files.inputs,
        record,
    )
    return record


def _hops(plan: SessionPlan, request: SessionRequest) -> list[RoleHop]:
    """The profile's roles, plus --role-arn on top; the role options apply to the last one."""
    hops = list(plan.hops)
    if request.role_arn:
        import re

        if not re.fullmatch(_ROLE_ARN, request.role_arn):
            raise UsageError(
                f"--role-arn {request.role_arn!r} is not a role ARN",
                hint="give the role's ARN: arn:aws:iam::ACCOUNT:role/NAME",
            )
        hops.append(RoleHop(request.role_arn, "--role-arn"))
    if not hops:
        if request.external_id or request.role_session_name:
            raise UsageError("--external-id and --role-session-name need a role (--role-arn)")
        return hops
    last = hops[-1]
    duration = last.duration
    if request.duration is not None:
        duration = parse_role_duration(request.duration, "--duration for a role")
    hops[-1] = RoleHop(
        last.role_arn,
        last.profile,
        external_id=request.external_id or last.external_id,
        session_name=request.role_session_name or last.session_name,
        duration=duration,
        mfa_serial=last.mfa_serial,
    )
    return hops


def _levels(
    plan: SessionPlan, hops: list[RoleHop], request: SessionRequest
) -> tuple[list[SessionKey], list[int], list[bool]]:
    """Each level's cache key and duration, and whether each role carries the MFA itself."""
    mfa = plan.mfa
    mfa_duration = (
        (None if hops else request.duration) or mfa.profile.session_duration() or DEFAULT_DURATION
    )
    durations = [mfa_duration] + [hop.duration or DEFAULT_ROLE_DURATION for hop in hops]
    # A role longer than an hour cannot be chained from the MFA session: the first
    # role then carries the MFA itself (AssumeRole with keys and a code), like the AWS CLI.
    direct = [
        (index == 0 and durations[1] > CHAINED_ROLE_LIMIT)
        or bool(hop.mfa_serial and hop.mfa_serial != mfa.mfa_serial)
        for index, hop in enumerate(hops)
    ]
    for index in range(1, len(hops)):
        if durations[index + 1] > CHAINED_ROLE_LIMIT:
            raise ConfigError(
                f"role {hops[index].role_arn} is assumed from another role's session, "
                "which AWS caps at 1 hour",
                hint="ask for 3600 seconds or less (duration_seconds / --duration)",
            )
    path: list[str] = []
    keys = [SessionKey(mfa.name, mfa.keys.access_key_id, mfa.mfa_serial)]
    for hop in hops:
        path.append(hop.role_arn)
        serial = hop.mfa_serial or mfa.mfa_serial
        keys.append(SessionKey(mfa.name, mfa.keys.access_key_id, serial, " > ".join(path)))
    return keys, durations, direct


class _Builder:
    """Levels of one profile's credentials: 0 is the MFA session, n the n-th role."""

    def __init__(
        self,
        plan: SessionPlan,
        hops: list[RoleHop],
        request: SessionRequest,
        environ: Mapping[str, str],
        cache: SessionCache,
    ) -> None:
        self.plan, self.hops, self.request = plan, hops, request
        self.environ, self.cache = environ, cache
        self.keys, self.durations, self.direct = _levels(plan, hops, request)
        self.made_new = False  # whether the last level was made now, not read from the cache
        self._sts: Sts | None = None

    def credentials(self, level: int) -> Credentials:
        key = self.keys[level]
        min_remaining = min(_min_remaining(self.request, self.environ), self.durations[level] // 2)
        cached = self.cache.read(key)
        if cached is not None and cached.seconds_left() > min_remaining:
            debug("cache hit for %s: %d s left", key.role_arn or key.profile, cached.seconds_left())
            return cached
        via = None
        if level > 0 and not self.direct[level - 1]:
            via = self.credentials(level - 1)
        for note in self.plan.notes:
            debug("note: %s", note)
        from mfa_session.codes import notify

        with DeviceLock(self.cache.folder, key.mfa_serial, notify, key.digest()) as lock:
            # Another process may have done the work while we waited for the lock.
            cached = self.cache.read(key)
            if cached is not None and cached.seconds_left() > min_remaining:
                return cached
            lock.fail_like_the_holder()
            fresh = self._make(level, via, lock)
            self._store(key, fresh)
        self.made_new = level == len(self.hops)
        return fresh

    def _store(self, key: SessionKey, credentials: Credentials) -> None:
        """Cache a new session; a code was spent for it, so a failed write loses nothing."""
        try:
            self.cache.write(key, credentials)
        except OSError as exc:
            from mfa_session.codes import notify

            notify(
                f"could not save the session in {self.cache.root} ({exc.strerror}); it is "
                "used this time, and the next call will need a new code"
            )

    def _make(self, level: int, via: Credentials | None, lock: DeviceLock) -> Credentials:
        sts = self._client()
        if level == 0:
            duration = self.durations[0]
            return self._with_code(
                self.plan.mfa.mfa_serial,
                lambda code: sts.get_session_token(code, duration),
                lock,
                "GetSessionToken",
            )
        hop, duration = self.hops[level - 1], self.durations[level]
        if hop.session_name:
            session_name = hop.session_name
        else:
            lock.doing("waiting for STS (GetCallerIdentity)", sts.budget)
            session_name = _session_name(sts.user_name(via))
        if not self.direct[level - 1]:
            lock.doing("waiting for STS (AssumeRole)", sts.budget)
            return sts.assume_role(hop, session_name, duration, via)
        serial = hop.mfa_serial or self.plan.mfa.mfa_serial
        note = None
        if via is None and duration > CHAINED_ROLE_LIMIT:
            note = (
                "a role session over 1 hour cannot come from the MFA session (AWS caps role "
                f"chaining at 1 hour): assuming {hop.role_arn} with its own MFA code"
            )
        return self._with_code(
            serial,
            lambda code: sts.assume_role(hop, session_name, duration, via, (serial, code)),
            lock,
            "AssumeRole",
            note,
        )

    def _client(self) -> Sts:
        if self._sts is None:
            from mfa_session.sts import Sts, time_budget

            self._sts = Sts(self.plan.mfa, time_budget(self.environ))
        return self._sts

    def _with_code(
        self,
        serial: str,
        call: Callable[[str], Credentials],
        lock: DeviceLock,
        action: str,
        note: str | None = None,
    ) -> Credentials:
        """Get a code for this device and make the call, retrying as the source allows."""
        from mfa_session import codes

        given, origin = self.request.token_code, "--token-code"
        if given is None and self.environ.get(environment.TOKEN_CODE):
            given, origin = self.environ[environment.TOKEN_CODE], environment.TOKEN_CODE
        terminal = codes.Terminal.open()
        name = self.plan.mfa.name
        device = codes.DeviceContext(
            serial, name, self.cache, self.environ, terminal=terminal, activity=lock.doing
        )
        budget = self._client().budget
        try:
            if note:
                device.tell(note)
            mfa_process = self.plan.mfa.profile.mfa_process
            if self.plan.mfa.keys.in_keyring:
                # The keys and the seed in one keyring call: one unlock request at most.
                from mfa_session import os_keyring
                from mfa_session.keystore import keyring_user

                wanted = [keyring_user(name)]
                if given is None and not mfa_process:
                    wanted.append(serial)
                lock.doing("reading the keyring", 0.0)
                os_keyring.prefetch(wanted, self.environ)
            source = codes.choose_source(device, given, origin, mfa_process)
            debug("MFA code source for %s: %s", serial, source.label)
            attempt = 0
            while True:
                code = source.next_code(attempt)
                lock.doing(f"waiting for STS ({action})", budget)
                try:
                    credentials = call(code)
                except WrongCodeError as exc:
                    if isinstance(exc, CodeSpentUnseen):
                        device.remember(code, source.step)  # never offered again
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


def _session_name(user_name: str) -> str:
    """AWS allows 2-64 characters of [\\w+=,.@-] in a role session name."""
    allowed = "".join(c if c.isalnum() or c in "_+=,.@-" else "-" for c in user_name)
    return (allowed or "mfa-session").ljust(2, "-")[:64]


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
