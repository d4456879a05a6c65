"""The IAM calls of enrollment: the seed document's console steps as API calls.

Signed like the STS calls (botocore, the profile's settings), with the long-term
keys or, when the user already has an active device, with an MFA session.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from mfa_session.config import MfaProfile
from mfa_session.credentials import Credentials
from mfa_session.deadline import within
from mfa_session.debug import debug
from mfa_session.errors import IamError, sensitive
from mfa_session.sts import (
    DEFAULT_TIMEOUT,
    clean_message,
    new_client,
    replace_key_hint,
    transport_error,
)

if TYPE_CHECKING:
    BaseClient = Any

MAX_MFA_DEVICES = 8  # per IAM user

PERMISSIONS_HINT = (
    "the user needs to manage its own MFA device (iam:CreateVirtualMFADevice, "
    "iam:EnableMFADevice, iam:ListMFADevices, iam:DeleteVirtualMFADevice); see docs/enroll.md"
)


class IamUnavailable(IamError):
    """IAM did not answer, or failed on its side: the call may or may not have happened."""


class IamNotFound(IamError):
    """IAM has no such device (or user)."""


class CodesRejected(IamError):
    """EnableMFADevice refused the two codes."""


class AccessKey:
    """An access key as IAM lists it: id, Active/Inactive and its creation date (ISO)."""

    __slots__ = ("access_key_id", "created", "status")

    def __init__(self, access_key_id: str, status: str, created: str) -> None:
        self.access_key_id, self.status, self.created = access_key_id, status, created


def _when(key: dict[str, Any]) -> str:
    created = key.get("CreateDate")
    if created is None:
        return ""
    from mfa_session.credentials import format_utc

    return format_utc(created) if hasattr(created, "astimezone") else str(created)


class NewDevice:
    """A virtual MFA device IAM just created: not yet enabled, holding its seed."""

    __slots__ = ("qr_png", "seed", "serial")

    def __init__(self, serial: str, seed: str, qr_png: bytes) -> None:
        self.serial = serial
        self.seed = seed
        self.qr_png = qr_png

    def __repr__(self) -> str:
        return f"NewDevice({self.serial!r})"  # never the seed


class Iam:
    """IAM for one user, signed with its keys or (``via``) a session of them."""

    def __init__(
        self, mfa: MfaProfile, via: Credentials | None = None, budget: float = DEFAULT_TIMEOUT
    ) -> None:
        # One attempt per call: a retried create or enable that had in fact succeeded
        # would fail as "already exists" and hide what happened.
        self._client: BaseClient = new_client(mfa, via, "iam", attempts=1, budget=budget)
        self._budget = budget
        self._mfa = mfa

    def mfa_devices(self, user_name: str) -> list[str]:
        """Serials of the user's enabled MFA devices."""
        response = self._call("list_mfa_devices", "iam:ListMFADevices", UserName=user_name)
        return [str(device["SerialNumber"]) for device in response.get("MFADevices", [])]

    def create_virtual_device(self, name: str) -> NewDevice:
        response = self._call(
            "create_virtual_mfa_device", "iam:CreateVirtualMFADevice", VirtualMFADeviceName=name
        )
        device = response["VirtualMFADevice"]
        seed = device["Base32StringSeed"]
        return NewDevice(
            serial=str(device["SerialNumber"]),
            seed=sensitive(seed.decode("ascii") if isinstance(seed, bytes) else str(seed)),
            qr_png=bytes(device.get("QRCodePNG") or b""),
        )

    def enable(self, user_name: str, serial: str, first_code: str, second_code: str) -> None:
        """EnableMFADevice: the console's two consecutive codes."""
        self._call(
            "enable_mfa_device",
            "iam:EnableMFADevice",
            UserName=user_name,
            SerialNumber=serial,
            AuthenticationCode1=first_code,
            AuthenticationCode2=second_code,
        )

    def access_keys(self) -> list[AccessKey]:
        """The caller's access keys (ListAccessKeys: the self-manage policy wants MFA)."""
        response = self._call("list_access_keys", "iam:ListAccessKeys")
        return [
            AccessKey(str(key["AccessKeyId"]), str(key.get("Status", "")), _when(key))
            for key in response.get("AccessKeyMetadata", [])
        ]

    def create_access_key(self) -> tuple[AccessKey, str]:
        """A new access key of the caller, and its secret (shown by AWS this once)."""
        response = self._call("create_access_key", "iam:CreateAccessKey")
        key = response.get("AccessKey") or {}
        key_id, secret = key.get("AccessKeyId"), key.get("SecretAccessKey")
        if not isinstance(key_id, str) or not isinstance(secret, str) or not key_id or not secret:
            raise IamUnavailable("IAM sent an answer that could not be read (CreateAccessKey)")
        return AccessKey(key_id, str(key.get("Status", "")), _when(key)), sensitive(secret)

    def delete_access_key(self, key_id: str) -> None:
        self._call("delete_access_key", "iam:DeleteAccessKey", AccessKeyId=key_id)

    def delete_virtual_device(self, serial: str) -> None:
        self._call("delete_virtual_mfa_device", "iam:DeleteVirtualMFADevice", SerialNumber=serial)

    def _call(self, operation: str, action: str, **arguments: Any) -> dict[str, Any]:
        debug("IAM %s", action)
        try:
            response: dict[str, Any] = within(
                self._budget, functools.partial(getattr(self._client, operation), **arguments)
            )
        except Exception as exc:
            translated = self._translate(exc, action, arguments)
            if translated is None:
                raise
            raise translated from None
        return response

    def _translate(self, exc: Exception, action: str, arguments: dict[str, Any]) -> IamError | None:
        from botocore.exceptions import ClientError

        if not isinstance(exc, ClientError):
            endpoint = self._client.meta.endpoint_url
            name = action.split(":")[-1]
            failure = transport_error(exc, "IAM", endpoint, "AWS_ENDPOINT_URL_IAM", name)
            return None if failure is None else IamUnavailable(failure.message, failure.hint)
        error = exc.response.get("Error", {})
        code, message = str(error.get("Code", "")), clean_message(str(error.get("Message", "")))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if status >= 500:
            return IamUnavailable(f"IAM failed in {action} ({code}, HTTP {status})")
        return client_error(code, message, action, arguments, self._mfa)


def client_error(
    code: str, message: str, action: str, arguments: dict[str, Any], mfa: MfaProfile
) -> IamError:
    """One clear error per way IAM says no to an enrollment or key step."""
    profile = mfa.name
    serial = str(arguments.get("SerialNumber", ""))
    if code == "EntityAlreadyExists" and action == "iam:CreateVirtualMFADevice":
        name = arguments.get("VirtualMFADeviceName")
        return IamError(
            f"a virtual MFA device named {name!r} already exists in this account",
            hint="choose another name with --device-name, or delete the unused device: "
            "aws iam delete-virtual-mfa-device --serial-number ARN",
        )
    if code == "EntityAlreadyExists":
        return IamError(f"MFA device {serial} is already enabled for a user")
    key_action = "AccessKey" in action
    if code == "LimitExceeded" and key_action:
        return IamError(
            "the user already has the two access keys AWS allows",
            hint="delete the one no tool uses (IAM console, or 'aws iam delete-access-key')",
        )
    if code == "LimitExceeded":
        return IamError(
            f"the user already has the {MAX_MFA_DEVICES} MFA devices AWS allows",
            hint="remove one in IAM before adding another",
        )
    if code == "InvalidAuthenticationCode":
        return CodesRejected(
            "IAM rejected the two MFA codes",
            hint="they must be two consecutive codes of the new device; check this "
            "computer's clock (TOTP codes need it right)",
        )
    if code in ("AccessDenied", "AccessDeniedException") and key_action:
        return IamError(
            f"IAM denied {action} to profile {profile!r}",
            hint="the user needs iam:ListAccessKeys, iam:CreateAccessKey and "
            "iam:DeleteAccessKey on itself, usually allowed only with MFA",
        )
    if code in ("AccessDenied", "AccessDeniedException"):
        if "explicit deny" in message:
            return IamError(
                f"IAM denied {action} to profile {profile!r} by an explicit deny",
                hint="policies often deny MFA changes without an MFA session: set mfa_serial "
                "to your active device so that enroll can get one; " + PERMISSIONS_HINT,
            )
        return IamError(f"IAM denied {action} to profile {profile!r}", hint=PERMISSIONS_HINT)
    if code == "InvalidClientTokenId":
        return IamError(
            f"AWS does not accept the access key of profile {profile!r}: it is deleted, "
            "inactive or mistyped",
            hint=replace_key_hint(mfa),
        )
    if code == "NoSuchEntity":
        what = serial or arguments.get("AccessKeyId") or "that entity"
        return IamNotFound(f"IAM does not know {what}: {message}")
    return IamError(f"IAM error {code} in {action}: {message}")
