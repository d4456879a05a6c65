"""Names of the environment variables mfa-session reads or sets, in one place."""

CACHE_DIR = "MFA_SESSION_CACHE_DIR"
TOKEN_CODE = "MFA_SESSION_TOKEN_CODE"
MIN_REMAINING = "MFA_SESSION_MIN_REMAINING"
# Set for the children of a code lookup (mfa_process) so that an mfa_process
# which ends up calling mfa-session again fails at once instead of recursing.
RESOLVING = "MFA_SESSION_RESOLVING"
