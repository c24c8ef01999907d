"""How long ``koa-cal demo`` takes from a cold start, as a user runs it.

Run::

    python3 bench/demo.py [RUNS]

It runs ``koa-cal demo`` RUNS times (default 3) as a subprocess and prints each
wall-clock time, the median, and the command. The target is under 30 s.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    command = [sys.executable, "-m", "koa_middleware.cli", "demo"]
    times = []
    for run in range(1, runs + 1):
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            sys.exit(f"run {run} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        times.append(elapsed)
        print(f"run {run}: {elapsed:.1f} s")
    print(f"median of {runs}: {statistics.median(times):.1f} s (target: under 30 s)")
    print(f"command: {' '.join(command)}  (measured by: python3 bench/demo.py {runs})")


if __name__ == "__main__":
    main()
