"""Steps per second of the navigation stack: the same as ``continual-side nav perf`` (envs/perf.py).

    python -m benchmarks.perf_env --steps 3000 --out runs/nav-perf

It goes through the CLI, so bad options print one line and exit with code 2 as they do there.
"""

from __future__ import annotations

import sys

from continual_side.cli import main

if __name__ == "__main__":
    main(["nav", "perf", *sys.argv[1:]])
