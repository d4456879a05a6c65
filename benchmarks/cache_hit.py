"""Time a credential-process cache hit side by side with `python -c pass` and
`python -c "import boto3"`, interleaved so machine noise hits every command alike.

Scenarios: a config of 10 profiles or of 5,000 (an Organization's accounts x roles),
1, 100 or 1,000 cached sessions, a role profile in the large config, and the first
call right after an edit (the full parse the hit avoids). Prints a Markdown table of
medians, ratios to `python -c pass` (target: a hit within 2.0x) and peak memory
(max RSS of each process, from wait4).
"""

from __future__ import annotations

import compileall
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import mfa_session
from mfa_session.cache import SessionCache, SessionKey
from mfa_session.credentials import Credentials
from mfa_session.plan_records import SETTLE_SECONDS

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "40"))
SERIAL = "arn:aws:iam::123456789012:mfa/alice"
KEY_ID = "AKIABENCHMARK0000000"
ROLE = "arn:aws:iam::100000000625:role/Admin"  # profile acct-0625-admin
MFA_SESSION = str(Path(sys.executable).parent / "mfa-session")
GNU_TIME = "/usr/bin/time"


def prepare(home: Path, profiles: int, sessions: int) -> dict[str, str]:
    """A HOME with alice's keys, ``profiles`` profiles and ``sessions`` cached sessions."""
    aws = home / ".aws"
    aws.mkdir(parents=True)
    (aws / "credentials").write_text(
        f"[alice]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = secret\n"
    )
    lines = [f"[profile alice]\nmfa_serial = {SERIAL}\nregion = eu-west-1\n"]
    for index in range(profiles - 1):
        account, role = divmod(index, 4)
        name = ("Admin", "ReadOnly", "Deploy", "Billing")[role]
        lines.append(
            f"[profile acct-{account:04d}-{name.lower()}]\n"
            f"role_arn = arn:aws:iam::1000000{account:05d}:role/{name}\n"
            "source_profile = alice\nregion = eu-west-1\n"
        )
    (aws / "config").write_text("\n".join(lines))
    env = {
        "HOME": str(home),
        "PATH": os.environ["PATH"],
        "XDG_CACHE_HOME": str(home / ".cache"),
    }
    cache = SessionCache.from_environ(env)
    now = datetime.now(timezone.utc)
    cache.write(
        SessionKey("alice", KEY_ID, SERIAL),
        Credentials("ASIABENCHMARK", "secret", "token", now + timedelta(hours=12)),
    )
    cache.write(
        SessionKey("alice", KEY_ID, SERIAL, ROLE),
        Credentials("ASIABENCHROLE", "secret", "token", now + timedelta(hours=1)),
    )
    for index in range(sessions - 1):
        cache.write(
            SessionKey("alice", KEY_ID, SERIAL, f"arn:aws:iam::2{index:011d}:role/Other"),
            Credentials(f"ASIA{index:016d}", "secret", "token", now + timedelta(hours=1)),
        )
    return env


def run(argv: list[str], env: dict[str, str]) -> float:
    """Wall time (s) of one run, stdout discarded."""
    started = time.perf_counter()
    pid = os.posix_spawn(
        argv[0], argv, env, file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)]
    )
    _, status = os.waitpid(pid, 0)
    elapsed = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"{argv} failed with status {status}")
    return elapsed


def peak_memory(argv: list[str], env: dict[str, str]) -> float | None:
    """Max RSS in MiB, measured by GNU time: a child's maxrss keeps its parent's high-water
    mark across exec, so it must come from a small parent, not from this process."""
    if not Path(GNU_TIME).exists():
        return None
    with tempfile.NamedTemporaryFile("r") as report:
        pid = os.posix_spawn(
            GNU_TIME,
            [GNU_TIME, "-f", "%M", "-o", report.name, *argv],
            env,
            file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)],
        )
        os.waitpid(pid, 0)
        return int(report.read().split()[-1]) / 1024


def main() -> None:
    # pip compiles bytecode at install time; an editable checkout may not have it yet.
    compileall.compile_dir(str(Path(mfa_session.__file__).parent), quiet=1)
    hit = [MFA_SESSION, "credential-process", "--profile", "alice"]
    with tempfile.TemporaryDirectory() as root:
        homes = {
            (profiles, sessions): prepare(Path(root) / f"{profiles}-{sessions}", profiles, sessions)
            for profiles, sessions in ((10, 1), (5000, 1), (10, 100), (10, 1000))
        }
        edited = prepare(Path(root) / "edited", 5000, 1)
        time.sleep(SETTLE_SECONDS + 0.1)  # files this fresh are parsed, never remembered
        small, large = homes[(10, 1)], homes[(5000, 1)]
        commands: dict[str, tuple[list[str], dict[str, str]]] = {
            "python -c pass": ([sys.executable, "-c", "pass"], small),
            "hit: 10 profiles, 1 session": (hit, small),
            "hit: 5,000 profiles, 1 session": (hit, large),
            "hit: 5,000 profiles, a role profile": (
                [MFA_SESSION, "credential-process", "--profile", "acct-0625-admin"],
                large,
            ),
            "hit: 10 profiles, 100 sessions": (hit, homes[(10, 100)]),
            "hit: 10 profiles, 1,000 sessions": (hit, homes[(10, 1000)]),
            "first call after an edit: 5,000 profiles": (hit, edited),
            'python -c "import boto3"': ([sys.executable, "-c", "import boto3"], small),
        }
        for argv, env in commands.values():
            run(argv, env)  # warm the page cache; the hit's records are written here
        config = Path(edited["HOME"]) / ".aws" / "config"
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(ROUNDS):
            for name, (argv, env) in commands.items():
                if env is edited:
                    os.utime(config)  # just edited: the file is parsed in full
                samples[name].append(run(argv, env))
        memory = {name: peak_memory(argv, env) for name, (argv, env) in commands.items()}
    medians = {name: statistics.median(values) for name, values in samples.items()}
    base = medians["python -c pass"]
    print(f"{ROUNDS} interleaved rounds on {os.cpu_count()} cores, medians\n")
    print("| command | wall time | vs `python -c pass` | peak memory |")
    print("| --- | ---: | ---: | ---: |")
    for name, median in medians.items():
        peak = "n/a" if memory[name] is None else f"{memory[name]:.1f} MiB"
        print(f"| {name} | {median * 1000:.1f} ms | {median / base:.2f}x | {peak} |")
    hits = [name for name in medians if name.startswith("hit:")]
    worst = max(medians[name] for name in hits) / base
    boto3 = medians['python -c "import boto3"']
    fastest = min(medians[name] for name in hits)
    print(f"\nslowest hit / python -c pass = {worst:.2f}x   (target <= 2.0)")
    print(f"import boto3 / fastest hit   = {boto3 / fastest:.2f}x   (target >= 5)")


if __name__ == "__main__":
    main()
