"""The CLI's table agrees with mfa_session/commands/: every verb has a module with both halves."""

from pathlib import Path

from mfa_session import cli


def test_every_command_has_a_module_with_a_parser_and_a_runner() -> None:
    folder = Path(cli.__file__).parent / "commands"
    modules = {path.stem for path in folder.glob("*.py")} - {"__init__", "common"}
    assert set(cli.COMMANDS.values()) == modules
    for name in cli.COMMANDS:
        module = cli.command_module(name)
        assert callable(module.add_parser) and callable(module.run), name


def test_the_parser_offers_every_command() -> None:
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    assert set(subparsers.choices) == set(cli.COMMANDS)
