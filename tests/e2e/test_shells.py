"""`mfa-session init bash|zsh|fish`, evaluated by the real shells: prompt segment,
prompt integration, completion, and proof that rendering starts no Python.

Every shell runs with a temporary HOME, a clean environment (no AWS_* from
outside) and a cache folder of hand-written expiry files.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from mfa_session.cli import build_parser
from tests.conftest import MFA_SESSION, clean_environment

SHELLS = ("bash", "zsh", "fish")
ROLE = "arn:aws:iam::210987654321:role/admin"
ESCAPES = re.compile(r"\x1b\[[0-9;]*m|\x1b\(B|[\x01\x02]")
YELLOW, RED, GREEN = "\x1b[33m", "\x1b[31m", "\x1b[32m"
# Run only by the no-Python proof: each trap records its name and fails.
TRAPPED = ("python", "python3", "mfa-session", "aws", "awk", "sed", "grep", "cat")
# How each shell loads the init text, as the documented setup lines do.
LOAD = {"bash": 'eval "$(<{path})"', "zsh": 'eval "$(<{path})"', "fish": "source {path}"}


def shell_argv(shell: str) -> list[str]:
    """The shell with an absolute path (PATH may hold only traps) and no user config."""
    executable = shutil.which(shell)
    if executable is None:
        pytest.fail(f"{shell} is not installed (.ci/run installs it)")
    flags = {"bash": ["--noprofile", "--norc"], "zsh": ["-f"], "fish": ["--no-config"]}
    return [executable, *flags[shell], "-c"]


def init_text(shell: str, env: Mapping[str, str], prompt: bool = True) -> str:
    """What `eval "$(mfa-session init SHELL)"` evaluates."""
    argv = [MFA_SESSION, "init", shell, *([] if prompt else ["--no-prompt"])]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True, timeout=30)
    return done.stdout


def strip(text: str) -> str:
    return ESCAPES.sub("", text)


@dataclass
class Shell:
    """One shell with a temporary HOME, a clean environment and a cache folder."""

    name: str
    home: Path
    env: dict[str, str]

    @property
    def cache(self) -> Path:
        return Path(self.env["MFA_SESSION_CACHE_DIR"])

    def load(self, prompt: bool = True, env: Mapping[str, str] | None = None) -> str:
        """The line that evaluates the init text, written to a file once per variant."""
        path = self.home / f"init-{'prompt' if prompt else 'no-prompt'}.{self.name}"
        if env is not None or not path.exists():
            path.write_text(init_text(self.name, {**self.env, **(env or {})}, prompt))
        return LOAD[self.name].format(path=shlex.quote(str(path)))

    def run(self, script: str, env: Mapping[str, str] | None = None) -> str:
        done = subprocess.run(
            [*shell_argv(self.name), script],
            env={**self.env, **(env or {})},
            cwd=self.home,
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        return done.stdout

    def prompt(self, *args: str, **env: str) -> str:
        return self.run(f"{self.load()}\nmfa_session_prompt {' '.join(args)}", env)

    def expiry(self, name: str, seconds_left: float, profile: str, *fields: str) -> None:
        """An expiry file as the cache writes it: EPOCH, PROFILE, ROLE or -, [SESSION]."""
        epoch = int(time.time() + seconds_left)
        line = "\t".join((str(epoch), profile, *fields)) + "\n"
        (self.cache / name).write_text(line)

    def complete(self, *lines: str) -> list[list[str]]:
        """Candidates for each command line (the cursor at its end), filtered by the
        word under the cursor as the shell shows them."""
        script = [self.load(prompt=False)]
        for line in lines:
            words = shlex.split(line) + ([""] if line.endswith(" ") else [])
            if self.name == "bash":
                script.append(
                    f"COMP_WORDS=({' '.join(shlex.quote(word) for word in words)})\n"
                    f"COMP_CWORD={len(words) - 1}\n_mfa_session_complete\n"
                    'printf "%s\\n" "${COMPREPLY[@]}"'
                )
            elif self.name == "zsh":
                script.append(
                    f"words=({' '.join(shlex.quote(word) for word in words)})\n"
                    f"CURRENT={len(words)}\n_mfa_session"
                )
            else:
                script.append(f"complete -C {shlex.quote(line)} | string replace -r '\\t.*' ''")
            script.append("echo @@@")
        if self.name == "zsh":
            # Outside a completion widget compadd and friends do not work: record them.
            script.insert(
                0,
                "compadd() { print -rl -- ${@[${@[(i)--]}+1,-1]} }\n"
                "_message() { print -r -- '<message>' }\n"
                '_normal() { print -r -- "<normal $CURRENT ${words[*]}>" }\n'
                "_command_names() { print -r -- '<commands>' }\n"
                "_files() { print -r -- '<files>' }",
            )
        out = self.run("\n".join(script)).split("@@@\n")[:-1]
        results = []
        for line, text in zip(lines, out, strict=True):
            current = "" if line.endswith(" ") else shlex.split(line)[-1]
            # zsh's recorded helpers (<normal ...>) are kept whatever the prefix.
            results.append([w for w in text.splitlines() if w and w.startswith((current, "<"))])
        return results


def make_shell(name: str, root: Path) -> Shell:
    root.mkdir()
    env = clean_environment(root)
    env.update(TERM="xterm-256color", MFA_SESSION_CACHE_DIR=str(root / "cache"))
    (root / "cache").mkdir(mode=0o700)
    return Shell(name, root, env)


@pytest.fixture(params=SHELLS)
def shell(request: pytest.FixtureRequest, tmp_path: Path) -> Shell:
    return make_shell(request.param, tmp_path / "home")


# --- the segment ------------------------------------------------------------


def test_hours_and_zero_padded_minutes_in_green(shell: Shell) -> None:
    shell.expiry("session-a1.expiry", 3 * 3600 + 5 * 60 + 30, "alice", "-")
    assert shell.prompt("--plain", AWS_PROFILE="alice") == "aws:alice 3h05m"
    coloured = shell.prompt(AWS_PROFILE="alice")
    if shell.name == "zsh":
        assert coloured == "%F{green}aws:alice 3h05m%f"
    else:
        assert coloured.startswith(("\x01" + GREEN, GREEN))
        assert strip(coloured) == "aws:alice 3h05m"


def test_under_fifteen_minutes_is_yellow(shell: Shell) -> None:
    shell.expiry("session-a1.expiry", 10 * 60 + 30, "alice", "-")
    coloured = shell.prompt(AWS_PROFILE="alice")
    if shell.name == "zsh":
        assert coloured == "%F{yellow}aws:alice 10m%f"
    else:
        assert YELLOW in coloured
        assert strip(coloured) == "aws:alice 10m"
    shell.expiry("session-a1.expiry", 20 * 60 + 30, "alice", "-")
    assert shell.prompt("--plain", AWS_PROFILE="alice") == "aws:alice 20m"


def test_expired_is_red(shell: Shell) -> None:
    shell.expiry("session-a1.expiry", -5, "alice", "-")
    coloured = shell.prompt(AWS_PROFILE="alice")
    if shell.name == "zsh":
        assert coloured == "%F{red}aws:alice expired%f"
    else:
        assert RED in coloured
        assert strip(coloured) == "aws:alice expired"


def test_plain_text_switches(shell: Shell) -> None:
    shell.expiry("session-a1.expiry", 7200 + 60 * 7 + 30, "alice", "-")
    expected = "aws:alice 2h07m"
    assert shell.prompt(AWS_PROFILE="alice", MFA_SESSION_PROMPT_COLOR="0") == expected
    assert shell.prompt(AWS_PROFILE="alice", NO_COLOR="1") == expected
    assert shell.prompt("--plain", AWS_PROFILE="alice") == expected


def test_nothing_without_a_profile_or_a_session(shell: Shell) -> None:
    shell.expiry("session-a1.expiry", 3600, "alice", "-")
    assert shell.prompt() == ""
    assert shell.prompt(AWS_PROFILE="bob") == ""
    assert shell.prompt(AWS_PROFILE="alice", MFA_SESSION_CACHE_DIR=str(shell.home / "none")) == ""


def test_an_alias_names_the_profile_whose_credential_process_ran(shell: Shell) -> None:
    shell.expiry("session-a1.expiry", 3 * 3600 + 90, "alice", "-")
    shell.expiry("alias-d1.expiry", 3 * 3600 + 90, "dev", ROLE, "a1")
    assert shell.prompt("--plain", AWS_PROFILE="dev") == "aws:dev 3h01m"


def test_a_role_session_is_not_the_source_profiles_own(shell: Shell) -> None:
    shell.expiry("session-r1.expiry", 11 * 3600, "alice", ROLE)
    assert shell.prompt(AWS_PROFILE="alice") == ""
    shell.expiry("session-a1.expiry", 2 * 3600 + 90, "alice", "-")
    assert shell.prompt("--plain", AWS_PROFILE="alice") == "aws:alice 2h01m"


def test_the_latest_matching_session_wins_and_other_files_are_ignored(shell: Shell) -> None:
    shell.expiry("session-a1.expiry", 600, "alice", "-")
    shell.expiry("session-a2.expiry", 4 * 3600 + 90, "alice", "-")
    shell.expiry("alias-a3.expiry", 3600 + 90, "alice", "-", "a1")
    shell.expiry("session-b1.expiry", 9 * 3600, "alicebob", "-")
    for name, text in {
        "session-a2.json": "{}",
        "device-x.json": "9999999999\talice\t-\n",
        "device-x.lock": "",
        "session-x1.json.expiry.tmp": "9999999999\talice\t-\n",
        "session-bad.expiry": "soon\talice\t-\n",
        "session-empty.expiry": "",
        "alias-short.expiry": "9999999999",
    }.items():
        (shell.cache / name).write_text(text)
    assert shell.prompt("--plain", AWS_PROFILE="alice") == "aws:alice 4h01m"


def test_exec_variables_win_over_the_cache(shell: Shell) -> None:
    shell.expiry("session-a1.expiry", 9 * 3600 + 30, "alice", "-")
    expiration = str(int(time.time()) + 42 * 60 + 30)
    env = {"MFA_SESSION_PROFILE": "alice", "MFA_SESSION_EXPIRATION": expiration}
    assert shell.prompt("--plain", AWS_PROFILE="other", **env) == "aws:alice 42m"
    # A malformed expiration falls back to the cache, for the exec'd profile.
    env["MFA_SESSION_EXPIRATION"] = "tomorrow"
    assert shell.prompt("--plain", **env) == "aws:alice 9h00m"


def test_a_cache_folder_name_needing_quotes(shell: Shell) -> None:
    odd = shell.home / "it's a $cache"
    odd.mkdir()
    shell.env["MFA_SESSION_CACHE_DIR"] = str(odd)
    shell.expiry("session-a1.expiry", 3600 + 90, "alice", "-")
    assert shell.prompt("--plain", AWS_PROFILE="alice") == "aws:alice 1h01m"


def test_the_default_cache_folder_comes_from_init(shell: Shell) -> None:
    """Without MFA_SESSION_CACHE_DIR the script reads the folder init filled in."""
    xdg = shell.home / "it's cache"
    folder = xdg / "mfa-session"
    folder.mkdir(parents=True)
    del shell.env["MFA_SESSION_CACHE_DIR"]
    shell.env["XDG_CACHE_HOME"] = str(xdg)
    (folder / "session-a1.expiry").write_text(f"{int(time.time()) + 5430}\talice\t-\n")
    script = f"{shell.load()}\nmfa_session_prompt --plain"
    assert shell.run(script, {"AWS_PROFILE": "alice"}) == "aws:alice 1h30m"


# --- the prompt ---------------------------------------------------------------

PROMPTS = {
    # The user's own prompt and hook, init evaluated twice, one prompt drawn.
    "bash": """PS1='user> '
PROMPT_COMMAND='user_hook'
user_hook() {{ hooked=$((${{hooked:-0}} + 1)); }}
{load}
{load}
eval "$PROMPT_COMMAND"
printf '%s|%s|%s' "${{PS1@P}}" "$hooked" "$PROMPT_COMMAND"
""",
    "zsh": """PROMPT='user> '
user_hook() {{ hooked=$((${{hooked:-0}} + 1)) }}
precmd_functions=(user_hook)
{load}
{load}
for hook in $precmd_functions; do $hook; done
print -rn -- "$(print -Pn -- $PROMPT)|$hooked|$precmd_functions"
""",
    "fish": """function fish_prompt
    printf 'user> '
end
{load}
{load}
printf '%s|' (fish_prompt)
""",
}


def test_the_segment_leads_the_prompt_once(shell: Shell) -> None:
    shell.expiry("session-a1.expiry", 5 * 60 + 30, "alice", "-")
    out = shell.run(PROMPTS[shell.name].format(load=shell.load()), {"AWS_PROFILE": "alice"})
    drawn = out.split("|")[0]
    assert YELLOW in drawn
    assert strip(drawn) == "aws:alice 5m user> "
    if shell.name == "bash":
        assert out.split("|")[1:] == ["1", "user_hook\n__mfa_session_prompt_command"]
    if shell.name == "zsh":
        assert out.split("|")[1] == "1"
        assert out.split("|")[2].split().count("__mfa_session_precmd") == 1


def test_no_segment_no_space(shell: Shell) -> None:
    out = shell.run(PROMPTS[shell.name].format(load=shell.load()), {"AWS_PROFILE": "alice"})
    assert out.split("|")[0] == "user> "


def test_opting_out_leaves_the_prompt_alone(shell: Shell) -> None:
    shell.expiry("session-a1.expiry", 59 * 60 + 30, "alice", "-")
    script = PROMPTS[shell.name].format(load=shell.load(prompt=False))
    out = shell.run(f"{script}\nprintf '|'\nmfa_session_prompt --plain", {"AWS_PROFILE": "alice"})
    assert out.split("|")[0] == "user> "
    if shell.name == "bash":
        assert out.split("|")[2] == "user_hook"
    # The function is still there for a theme of one's own.
    assert out.split("|")[-1] == "aws:alice 59m"


def test_no_prompt_by_variable(shell: Shell) -> None:
    shell.expiry("session-a1.expiry", 3600, "alice", "-")
    script = PROMPTS[shell.name].format(load=shell.load())
    out = shell.run(script, {"AWS_PROFILE": "alice", "MFA_SESSION_NO_PROMPT": "1"})
    assert out.split("|")[0] == "user> "


def test_bash_keeps_an_array_prompt_command_strict_mode_and_the_exit_status(
    tmp_path: Path,
) -> None:
    bash = make_shell("bash", tmp_path / "home")
    bash.expiry("session-a1.expiry", 3600 + 90, "alice", "-")
    script = f"""set -u
PS1='user> '
PROMPT_COMMAND=(user_hook)
user_hook() {{ :; }}
{bash.load()}
{bash.load()}
declare -p PROMPT_COMMAND
false
__mfa_session_prompt_command || echo "status $?"
printf '%s\\n' "${{PS1@P}}"
unset AWS_PROFILE
__mfa_session_prompt_command
printf '%s\\n' "${{PS1@P}}"
"""
    lines = bash.run(script, {"AWS_PROFILE": "alice"}).splitlines()
    assert (
        lines[0] == 'declare -a PROMPT_COMMAND=([0]="user_hook" [1]="__mfa_session_prompt_command")'
    )
    assert lines[1] == "status 1"
    assert strip(lines[2]) == "aws:alice 1h01m user> "
    assert lines[3] == "user> "


def test_bash_with_failglob_and_nullglob(tmp_path: Path) -> None:
    bash = make_shell("bash", tmp_path / "home")
    script = f"""{bash.load()}
shopt -s failglob
mfa_session_prompt; echo "[$?]"
shopt -s nullglob
printf '%s\\talice\\t-\\n' $((EPOCHSECONDS + 150)) >"$MFA_SESSION_CACHE_DIR/session-a1.expiry"
mfa_session_prompt --plain; echo
shopt failglob
"""
    out = bash.run(script, {"AWS_PROFILE": "alice", "PATH": "/usr/bin:/bin"})
    assert out.splitlines() == ["[0]", "aws:alice 2m", "failglob       \ton"]


def test_fish_wrapped_prompt_still_sees_the_last_status(tmp_path: Path) -> None:
    fish = make_shell("fish", tmp_path / "home")
    script = f"""function fish_prompt
    echo "status=$status pipestatus=$pipestatus"
end
{fish.load()}
false
fish_prompt
true | false
fish_prompt
"""
    out = fish.run(script, {"AWS_PROFILE": "alice"})
    assert out.splitlines() == ["status=1 pipestatus=1", "status=1 pipestatus=0 1"]


# --- no Python, no AWS client, no text tools -----------------------------------

RENDER = {
    "bash": """eval "$PROMPT_COMMAND"
printf '%s|' "$(mfa_session_prompt --plain)" "${PS1@P}"
AWS_PROFILE=dev
eval "$PROMPT_COMMAND"
printf '%s|' "${PS1@P}"
""",
    "zsh": """__mfa_session_precmd
printf '%s|' "$(mfa_session_prompt --plain)" "$(print -Pn -- $PROMPT)"
AWS_PROFILE=dev
__mfa_session_precmd
printf '%s|' "$(print -Pn -- $PROMPT)"
""",
    "fish": """function fish_prompt
    printf 'user> '
end
{load}
printf '%s|' (mfa_session_prompt --plain) (fish_prompt)
set AWS_PROFILE dev
printf '%s|' (fish_prompt)
""",
}


def test_rendering_runs_no_python_and_no_aws_client(shell: Shell) -> None:
    traps = shell.home / "traps"
    traps.mkdir()
    record = shell.home / "trapped.log"
    for name in TRAPPED:
        trap = traps / name
        trap.write_text(f"#!/bin/sh\necho {name} >> {shlex.quote(str(record))}\nexit 1\n")
        trap.chmod(0o755)
    if shell.name == "fish":
        (traps / "date").symlink_to("/bin/date")
    shell.expiry("session-a1.expiry", 2 * 3600 + 90, "alice", "-")
    shell.expiry("session-r1.expiry", 9 * 3600, "alice", ROLE)
    shell.expiry("alias-d1.expiry", 10 * 60 + 30, "dev", ROLE, "r1")
    (shell.cache / "session-a1.json").write_text("{}")
    load = shell.load()
    if shell.name == "fish":
        script = RENDER["fish"].format(load=load)
    else:
        script = f"PS1='user> '\nPROMPT='user> '\n{load}\n{RENDER[shell.name]}"
    out = shell.run(script, {"AWS_PROFILE": "alice", "PATH": str(traps)})
    assert [strip(part) for part in out.split("|")] == [
        "aws:alice 2h01m",
        "aws:alice 2h01m user> ",
        "aws:dev 10m user> ",
        "",
    ]
    assert not record.exists(), record.read_text()


# --- completion -----------------------------------------------------------------


def write_aws_files(shell: Shell) -> Shell:
    aws = shell.home / ".aws"
    aws.mkdir()
    (aws / "config").write_text(
        "[default]\nregion = eu-west-1\n\n[profile alice]\nmfa_serial = x\n"
        "[ profile  dev ]\ncredential_process = mfa-session credential-process\n"
        "[sso-session corp]\nsso_region = eu-west-1\n[services s3]\n"
        "[profile ops]"  # no newline at the end
    )
    (aws / "credentials").write_text("[alice]\naws_access_key_id = x\n[legacy]\n")
    return shell


def test_completion_of_commands_options_and_values(shell: Shell) -> None:
    write_aws_files(shell)
    commands, options, exports, formats, profiles, shells, partial = shell.complete(
        "mfa-session ",
        "mfa-session -",
        "mfa-session export --",
        "mfa-session export --format ",
        "mfa-session exec --profile ",
        "mfa-session init ",
        "mfa-session st",
    )
    assert set(commands) >= {"credential-process", "exec", "export", "status", "clear", "init"}
    assert set(options) == {"--debug", "--version", "--help"}
    assert set(exports) >= {"--profile", "--format", "--duration", "--token-code"}
    assert sorted(formats) == ["dotenv", "fish", "json", "powershell", "sh"]
    assert sorted(profiles) == ["alice", "default", "dev", "legacy", "ops"]
    assert sorted(shells) == ["bash", "fish", "zsh"]
    assert partial == ["status"]


def test_completion_of_profiles_from_the_files_the_environment_names(shell: Shell) -> None:
    write_aws_files(shell)
    other = shell.home / "elsewhere"
    other.write_text("[profile staging]\n[default]\n")
    shell.env["AWS_CONFIG_FILE"] = str(other)
    shell.env["AWS_SHARED_CREDENTIALS_FILE"] = str(shell.home / "missing")
    (profiles,) = shell.complete("mfa-session credential-process --profile ")
    assert sorted(profiles) == ["default", "staging"]


def test_completion_after_exec_double_dash_is_the_commands(shell: Shell) -> None:
    first, later = shell.complete("mfa-session exec --profile alice -- ech", "mfa-session exec -- ")
    if shell.name == "zsh":
        assert first == ["<normal 1 ech>"]
        assert later == ["<normal 1 >"]
    else:
        assert "echo" in first
        assert "--profile" not in later


def test_zsh_completion_registers_with_compinit_before_or_after(tmp_path: Path) -> None:
    zsh = make_shell("zsh", tmp_path / "home")
    compinit = "autoload -U compinit && compinit -u -D"
    after = f"{zsh.load()}\n{compinit}\nfor hook in $precmd_functions; do $hook; done\n"
    before = f"{compinit}\n{zsh.load()}\n"
    show = "print -r -- $_comps[mfa-session] $+functions[__mfa_session_register_completion]"
    assert zsh.run(after + show) == "_mfa_session 1\n"
    assert zsh.run(before + show) == "_mfa_session 1\n"
    # Opted out of the prompt, the completion still registers at the first prompt.
    assert zsh.run(after.replace(zsh.load(), zsh.load(prompt=False)) + show) == "_mfa_session 1\n"


def test_zsh_profile_helper(tmp_path: Path) -> None:
    zsh = write_aws_files(make_shell("zsh", tmp_path / "home"))
    script = f"{zsh.load()}\nlocal -a reply\n__mfa_session_profiles\nprint -rl -- $reply"
    assert zsh.run(script).split() == ["default", "alice", "dev", "ops", "legacy"]


def parser_commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("the parser has no commands")


def long_options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        action
        for action in parser._actions
        if any(option.startswith("--") for option in action.option_strings)
    ]


def names(actions: list[argparse.Action]) -> set[str]:
    return {option for action in actions for option in action.option_strings if option[1] == "-"}


def test_completion_knows_every_command_and_option_of_the_parser(shell: Shell) -> None:
    """Whatever the parser has today: a new command or option without completion fails here."""
    commands = parser_commands()
    queries: list[tuple[str, set[str], bool]] = [
        ("mfa-session ", set(commands), True),
        ("mfa-session --", names(long_options(build_parser())), True),
    ]
    for name, sub in commands.items():
        actions = long_options(sub)
        queries.append((f"mfa-session {name} --", names(actions), True))
        for action in sub._actions:
            if not action.option_strings and action.choices:
                queries.append((f"mfa-session {name} ", set(action.choices), True))
        for action in actions:
            option = next(o for o in action.option_strings if o.startswith("--"))
            if action.nargs == 0:
                # A flag: the next word is an option again, not its value.
                queries.append((f"mfa-session {name} {option} --", {"--help"}, True))
            elif action.choices:
                queries.append((f"mfa-session {name} {option} ", set(action.choices), True))
            else:
                # A value: no option may be offered in its place.
                queries.append((f"mfa-session {name} {option} ", set(), False))
    answers = shell.complete(*(line for line, _, _ in queries))
    for (line, wanted, _), got in zip(queries, answers, strict=True):
        assert wanted <= set(got), f"{shell.name}: {line!r} misses {sorted(wanted - set(got))}"
    for (line, _, options_allowed), got in zip(queries, answers, strict=True):
        if not options_allowed:
            offered = [word for word in got if word.startswith("-")]
            assert not offered, f"{shell.name}: {line!r} offers {offered}"
