"""Time the prompt segment of `mfa-session init bash|zsh|fish`, rendered N times in
one shell process over a cache folder of ten expiry files.

Each figure is (best time of a loop of N renders - best time of the same loop with
an empty body) / N, so shell start-up and loop overhead cancel out.
The design wants rendering well under 5 ms: it runs before every prompt.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RENDERS = int(os.environ.get("BENCH_RENDERS", "2000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
TARGET_MS = 5.0
ROLE = "arn:aws:iam::210987654321:role/admin"
FLAGS = {"bash": ["--noprofile", "--norc"], "zsh": ["-f"], "fish": ["--no-config"]}
LOAD = {"bash": 'eval "$(<{path})"', "zsh": 'eval "$(<{path})"', "fish": "source {path}"}
# What runs before each prompt: the hook init installs, and the theme-snippet form.
BODIES = {
    "bash": {
        "PROMPT_COMMAND hook": "__mfa_session_prompt_command",
        'theme: "$(mfa_session_prompt)"': 'segment="$(mfa_session_prompt)"',
    },
    "zsh": {
        "precmd hook": "__mfa_session_precmd",
        'theme: "$(mfa_session_prompt)"': 'segment="$(mfa_session_prompt)"',
    },
    "fish": {"fish_prompt wrapper: (mfa_session_prompt)": "set segment (mfa_session_prompt)"},
}
EMPTY = {"bash": ":", "zsh": ":", "fish": "true"}


def loop(shell: str, body: str) -> str:
    if shell == "fish":
        return f"set i 0\nwhile test $i -lt {RENDERS}\n    set i (math $i + 1)\n    {body}\nend"
    return f"for ((i = 0; i < {RENDERS}; i++)); do\n    {body}\ndone"


def cache_folder(folder: Path) -> None:
    """Ten expiry files (alice's is one of them) plus the sessions and locks beside them."""
    now = int(time.time())
    lines = [f"{now + 3 * 3600}\talice\t-"]
    lines += [f"{now + 3600 * n}\tuser{n}\t-" for n in range(1, 5)]
    lines += [f"{now + 1800 * n}\talice\t{ROLE}{n}" for n in range(1, 3)]
    for n, line in enumerate(lines):
        (folder / f"session-{n:08x}.expiry").write_text(line + "\n")
        (folder / f"session-{n:08x}.json").write_text("{}")
    for n in range(3):
        (folder / f"alias-{n:08x}.expiry").write_text(f"{now + 7200}\tdev{n}\t-\t00000000\n")
    (folder / "device-00000000.lock").write_text("")


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def main() -> None:
    executable = str(Path(sys.executable).parent / "mfa-session")
    with tempfile.TemporaryDirectory() as home:
        cache = Path(home) / "cache"
        cache.mkdir(mode=0o700)
        cache_folder(cache)
        env = {
            "HOME": home,
            "PATH": os.environ["PATH"],
            "TERM": "xterm-256color",
            "AWS_PROFILE": "alice",
            "MFA_SESSION_CACHE_DIR": str(cache),
        }
        print(f"{RENDERS} renders per shell process, best of {ROUNDS} rounds, 10 expiry files")
        for shell, bodies in BODIES.items():
            path = shutil.which(shell)
            if path is None:
                print(f"{shell:5} not installed")
                continue
            script = Path(home) / f"init.{shell}"
            init = subprocess.run(
                [executable, "init", shell], env=env, capture_output=True, text=True, check=True
            )
            script.write_text(init.stdout)
            load = LOAD[shell].format(path=script)
            empty = [path, *FLAGS[shell], "-c", f"{load}\n{loop(shell, EMPTY[shell])}"]
            baseline = min(timed(empty, env) for _ in range(ROUNDS))
            for label, body in bodies.items():
                argv = [path, *FLAGS[shell], "-c", f"{load}\n{loop(shell, body)}"]
                best = min(timed(argv, env) for _ in range(ROUNDS))
                micros = (best - baseline) / RENDERS * 1e6
                print(f"{shell:5} {label:42} {micros:8.1f} µs per render")
        print(f"target: well under {TARGET_MS:.0f} ms ({TARGET_MS * 1000:.0f} µs) per render")


if __name__ == "__main__":
    main()
