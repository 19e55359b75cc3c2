"""The command line's throughput beside kcat's, one run, one embedded broker.

Issue 14's goal: ``pykaf produce`` and ``pykaf consume`` each at least 0.5x kcat. One
embedded broker runs in a subprocess (``pykaf broker``, 6 partitions); a file of
``--messages`` lines (``--size`` bytes each) is produced by each tool to a topic of its
own (``pykaf produce TOPIC FILE`` beside ``kcat -P -t TOPIC -l FILE``), then each topic is
consumed to the end into a file (``pykaf consume TOPIC -e`` beside ``kcat -C -e``), and the
output is checked to hold every line. Wall time of the whole process, start-up included;
the median of ``--runs``. A produce and a consume of ten lines first fill the bytecode
cache, as an installed pykaf has it. Each process's CPU time (user + system) is printed
beside: on a shared machine wall time swings with the load, CPU time much less.

    python benchmarks/cli.py [--messages 1000000] [--size 100] [--runs 1]

Prints msgs/s per tool and direction and the pykaf/kcat ratios (and CPU seconds); exit
status 1 if a ratio is below 0.5 or a tool lost lines.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL = 0.5


def start_broker() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pykaf", "broker", "--port", "0", "--partitions", "6"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    bootstrap = proc.stdout.readline().strip()
    if not bootstrap:
        proc.kill()
        raise SystemExit(f"the broker did not start (exit {proc.poll()})")
    return proc, bootstrap


def child_env(work: Path) -> dict[str, str]:
    """The environment of the timed commands: Python may cache bytecode (in ``work``), as
    an installed pykaf has its .pyc files; a checkout run with PYTHONDONTWRITEBYTECODE
    would otherwise compile every module at each start."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    return env


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(
    cmd: list[str], env: dict[str, str], *, stdout: Path | None = None
) -> tuple[float, float]:
    """(wall seconds, CPU seconds) ``cmd`` took (it must succeed). CPU time is the
    process's own (user + system, every thread): a busy machine stretches wall time far
    more than it changes what the work costs."""
    cpu = children_cpu()
    started = time.perf_counter()
    with stdout.open("wb") if stdout is not None else open(os.devnull, "wb") as out:
        subprocess.run(cmd, check=True, timeout=900, stdin=subprocess.DEVNULL, stdout=out, env=env)
    return time.perf_counter() - started, children_cpu() - cpu


def commands(tool: str, bootstrap: str, topic: str, lines: Path) -> tuple[list[str], list[str]]:
    """(produce, consume) command lines of ``tool``."""
    if tool == "pykaf":
        pykaf = [sys.executable, "-m", "pykaf"]
        return (
            [*pykaf, "produce", "-b", bootstrap, topic, str(lines)],
            [*pykaf, "consume", "-b", bootstrap, topic, "-e"],
        )
    kcat = ["kcat", "-b", bootstrap, "-t", topic, "-q"]
    return ([*kcat, "-P", "-l", str(lines)], [*kcat, "-C", "-e", "-o", "beginning"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    if shutil.which("kcat") is None:
        raise SystemExit("kcat is not installed (apt-get install kcat)")
    work = Path(tempfile.mkdtemp(prefix="pykaf-bench-cli-"))
    lines = work / "lines.txt"
    with lines.open("wb") as out:
        pad = b"x" * max(0, args.size - 11)
        out.write(b"".join(b"%010d%s\n" % (i, pad) for i in range(args.messages)))
    broker, bootstrap = start_broker()
    env = child_env(work)
    rates: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    try:
        # Fill the .pyc cache with every module a produce and a consume load (the kio
        # schemas of the requests they send included), as an installed pykaf has them.
        warm_up = work / "warm-up.txt"
        warm_up.write_bytes(b"".join(b"%d\n" % i for i in range(10)))
        produce, consume = commands("pykaf", bootstrap, "bench-cli-warm-up", warm_up)
        timed(produce, env)
        timed(consume, env)
        for run in range(args.runs):
            for tool in ("kcat", "pykaf"):
                topic = f"bench-cli-{tool}-{run}"
                produce, consume = commands(tool, bootstrap, topic, lines)
                took, used = timed(produce, env)
                rates.setdefault((tool, "produce"), []).append(args.messages / took)
                cpu.setdefault((tool, "produce"), []).append(used)
                got = work / f"{topic}.out"
                took, used = timed(consume, env, stdout=got)
                rates.setdefault((tool, "consume"), []).append(args.messages / took)
                cpu.setdefault((tool, "consume"), []).append(used)
                with got.open("rb") as read_back:
                    count = sum(
                        chunk.count(b"\n") for chunk in iter(lambda: read_back.read(1 << 20), b"")
                    )
                if count != args.messages:
                    raise SystemExit(f"{tool} consumed {count:,} lines of {args.messages:,}")
                got.unlink()
    finally:
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()[0]
    print(
        f"{args.messages:,} lines x {args.size} B, {args.runs} run(s), medians, wall time"
        f" with start-up; load average {load:.2f} on {os.cpu_count()} cores"
    )
    ok = True
    for direction in ("produce", "consume"):
        ours = statistics.median(rates["pykaf", direction])
        theirs = statistics.median(rates["kcat", direction])
        ratio = ours / theirs
        ok = ok and ratio >= GOAL
        print(
            f"{direction:<8} pykaf {ours:>10,.0f} msgs/s  kcat {theirs:>10,.0f} msgs/s"
            f"  pykaf/kcat {ratio:.2f}x (goal >= {GOAL})"
        )
        our_cpu = statistics.median(cpu["pykaf", direction])
        their_cpu = statistics.median(cpu["kcat", direction])
        print(
            f"{'':<8} CPU   {our_cpu:>8.2f} s          kcat {their_cpu:>8.2f} s"
            f"          kcat/pykaf CPU {their_cpu / our_cpu:.2f}x (not a goal)"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
