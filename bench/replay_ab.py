"""Replay of this tree against another checkout (``--base``), in the same run: wall and CPU seconds.

    git worktree add /tmp/replay-main main    # or: mkdir D && git archive main | tar -x -C D
    .venv/bin/python bench/replay_ab.py --base /tmp/replay-main --jobs 2 --rounds 5

Both trees replay the same generated file (``replay_bench.write_input``) in turn, ``--rounds``
times each, interleaved so that a change of the machine's load hits both; the minimum of each
figure is printed, with the load average. CPU seconds are those of the replaying process and of
the job processes it forked: on a shared machine they say what a change costs when the wall
clock cannot (the other core may be busy).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

#: Run inside a tree (its directory first on sys.path): one replay, its figures on one line.
_ONE = """
import os, sys, time
sys.path.insert(0, os.getcwd())
from pathlib import Path
from leadflow.replay import Source, replay
from lifecycle.policy import Policy
path, jobs, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
started = time.perf_counter()
replay([Source(path)], out, Policy(), jobs=jobs)
wall = time.perf_counter() - started
t = os.times()
print(wall, t.user + t.system, t.children_user + t.children_system)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="another checkout of leadflow (its own code is replayed)")
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=None, help="default: 10 per lead")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE / "bench"))
    sys.path.insert(0, str(HERE))
    from replay_bench import write_input

    trees = {"this": HERE, "base": Path(args.base).resolve()}
    with tempfile.TemporaryDirectory(prefix="leadflow-ab-") as tmp:
        path = Path(tmp) / "events.jsonl"
        lines = write_input(path, args.leads, args.events or args.leads * 10)
        best: dict[str, list[float]] = {name: [float("inf")] * 4 for name in trees}
        for round_ in range(1, args.rounds + 1):
            for name, tree in trees.items():
                load = os.getloadavg()[0]
                done = subprocess.run([sys.executable, "-c", _ONE, str(path), str(args.jobs), str(Path(tmp) / name)],
                                      cwd=tree, capture_output=True, text=True, check=True)
                wall, own, children = map(float, done.stdout.split())
                figures = [wall, own, children, own + children]
                best[name] = [min(a, b) for a, b in zip(best[name], figures)]
                print(f"round {round_} {name:4s} load {load:.2f}: wall {wall:.2f} s ({lines / wall:,.0f} events/s), "
                      f"CPU {own:.2f} s here + {children:.2f} s forked", flush=True)
        for name in trees:
            wall, own, children, total = best[name]
            print(f"{name:4s} --jobs {args.jobs}, minimum of {args.rounds}: wall {wall:.2f} s ({lines / wall:,.0f} "
                  f"events/s), CPU {own:.2f} s here, {children:.2f} s forked, {total:.2f} s in all "
                  f"({total / lines * 1e6:.1f} µs per event)")
        this, base = best["this"], best["base"]
        print(f"this / base: wall {this[0] / base[0]:.2f}, CPU in all {this[3] / base[3]:.2f}")


if __name__ == "__main__":
    main()
