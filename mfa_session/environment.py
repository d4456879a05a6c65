"""Names of the environment variables mfa-session reads or sets, in one place."""

CACHE_DIR = "MFA_SESSION_CACHE_DIR"
TOKEN_CODE = "MFA_SESSION_TOKEN_CODE"
MIN_REMAINING = "MFA_SESSION_MIN_REMAINING"
# Set for the children of a code lookup (mfa_process) so that an mfa_process
# which ends up calling mfa-session again fails at once instead of recursing.
RESOLVING = "MFA_SESSION_RESOLVING"
# Set by `exec` (and `export`): which profile's session the environment holds and
# when it ends, so nested calls and the shell prompt need not start Python.
PROFILE = "MFA_SESSION_PROFILE"
EXPIRATION = "MFA_SESSION_EXPIRATION"
NO_PROMPT = "MFA_SESSION_NO_PROMPT"
# The federation endpoint for console sign-in (`login`), instead of the partition's own.
SIGNIN_URL = "MFA_SESSION_SIGNIN_URL"
