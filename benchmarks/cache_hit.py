"""Time a credential-process cache hit side by side with `python -c pass` and
`python -c "import boto3"`, interleaved so machine noise hits all three alike.

Prints medians and the two ratios the design sets targets for:
hit / pass (target: at most 3) and import-boto3 / hit (target: at least 5).
"""

from __future__ import annotations

import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import mfa_session
from mfa_session.cache import SessionCache, SessionKey
from mfa_session.credentials import Credentials

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "40"))
SERIAL = "arn:aws:iam::123456789012:mfa/alice"


def prepare(home: Path) -> dict[str, str]:
    """A HOME with alice's files and a cached 12-hour session, as after the first call."""
    aws = home / ".aws"
    aws.mkdir()
    (aws / "credentials").write_text(
        "[alice]\naws_access_key_id = AKIABENCHMARK0000000\naws_secret_access_key = x\n"
    )
    (aws / "config").write_text(f"[profile alice]\nmfa_serial = {SERIAL}\nregion = eu-west-1\n")
    env = {"HOME": str(home), "PATH": os.environ["PATH"], "XDG_CACHE_HOME": str(home / ".cache")}
    cache = SessionCache.from_environ(env)
    expiry = datetime.now(timezone.utc) + timedelta(hours=12)
    cache.write(
        SessionKey("alice", "AKIABENCHMARK0000000", SERIAL),
        Credentials("ASIABENCHMARK", "secret", "token", expiry),
    )
    return env


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def main() -> None:
    # pip compiles bytecode at install time; an editable checkout may not have it yet.
    compileall.compile_dir(str(Path(mfa_session.__file__).parent), quiet=1)
    executable = str(Path(sys.executable).parent / "mfa-session")
    with tempfile.TemporaryDirectory() as home:
        env = prepare(Path(home))
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "mfa-session credential-process (cache hit)": [
                executable,
                "credential-process",
                "--profile",
                "alice",
            ],
            'python -c "import boto3"': [sys.executable, "-c", "import boto3"],
        }
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for argv in commands.values():
            timed(argv, env)  # warm the page cache
        for _ in range(ROUNDS):
            for name, argv in commands.items():
                samples[name].append(timed(argv, env))
    medians = {name: statistics.median(values) * 1000 for name, values in samples.items()}
    print(f"{ROUNDS} interleaved rounds, median wall time")
    for name, value in medians.items():
        print(f"  {name:<45} {value:7.1f} ms")
    bare, hit, boto3 = medians.values()
    print(f"cache hit / python -c pass  = {hit / bare:4.2f}x   (target <= 3)")
    print(f"import boto3 / cache hit    = {boto3 / hit:4.2f}x   (target >= 5)")


if __name__ == "__main__":
    main()
