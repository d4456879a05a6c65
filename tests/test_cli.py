"""The CLI's tables agree: every command the parser offers has a handler."""

from mfa_session import cli


def test_every_command_has_a_handler() -> None:
    assert set(cli._HANDLERS) == set(cli._COMMANDS)
