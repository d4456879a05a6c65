"""mfa-session: one MFA code, shared by every AWS tool."""

__version__ = "0.1.0"
PROG = "mfa-session"
