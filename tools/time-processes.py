#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Whole processes timed as a user runs them, several builds alternated run
by run, so that a machine's slow minutes fall on all of them alike:

    time-processes.py [--runs N] PROGRAM [PROGRAM ...] -- ARGUMENTS...

runs each PROGRAM with the same ARGUMENTS N times (default 60), in turn,
and prints for each the median and quartiles of the wall time, the median
CPU time (user + system) and the largest peak RSS, each process's own
(wait4). Standard output is discarded; a failed run stops it.
Compare builds in one call: figures from separate calls on a shared
machine differ by more than most changes do (docs/bench-cpu.md)."""

import argparse
import os
import statistics
import subprocess
import sys
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("programs", nargs="+", metavar="PROGRAM")
    argv = sys.argv[1:]
    if "--" not in argv:
        parser.error("the programs' arguments follow --")
    split = argv.index("--")
    args = parser.parse_args(argv[:split])
    arguments = argv[split + 1:]

    wall = {p: [] for p in args.programs}
    cpu = {p: [] for p in args.programs}
    rss = {p: 0 for p in args.programs}
    for _ in range(args.runs):
        for program in args.programs:
            start = time.perf_counter()
            child = subprocess.Popen([program] + arguments,
                                     stdout=subprocess.DEVNULL)
            _, status, usage = os.wait4(child.pid, 0)
            wall[program].append((time.perf_counter() - start) * 1e3)
            child.returncode = os.waitstatus_to_exitcode(status)
            if child.returncode != 0:
                sys.exit(f"{program} exited with {child.returncode}")
            cpu[program].append((usage.ru_utime + usage.ru_stime) * 1e3)
            rss[program] = max(rss[program], usage.ru_maxrss)

    for program in args.programs:
        q1, median, q3 = statistics.quantiles(wall[program], n=4)
        print(f"{program}: wall median {median:.2f} ms (quartiles {q1:.2f}, "
              f"{q3:.2f}; min {min(wall[program]):.2f}), CPU median "
              f"{statistics.median(cpu[program]):.2f} ms, peak RSS up to "
              f"{rss[program] / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
