"""Policy entropy of every PPO run under a folder (see agents/diagnostics.py), beside its test success:

    python -m benchmarks.nav_ppo_entropy runs/nav

Prints a Markdown table: encoder, seed, entropy of the first and the last logged update (nats; the uniform
policy over the 3 PointNav actions has ln 3 = 1.099), and the test success of the run's greedy policy.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from agents.diagnostics import entropy_row
from agents.evaluate import EVAL_SUMMARY, evaluation_folder


def main(root: Path) -> None:
    runs = sorted(path for path in root.glob("ppo-*/seed-*") if path.is_dir())
    if not runs:
        raise SystemExit(f"no PPO runs (ppo-<encoder>/seed-<n>) under {root}")
    print("| encoder | seed | entropy, first logged update | entropy at the end (step) | end / ln 3 | test success (%) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for run in runs:
        row = entropy_row(run)
        evaluation = evaluation_folder(run, "test") / EVAL_SUMMARY
        success = (f"{100 * json.loads(evaluation.read_text(encoding='utf-8'))['success']:.1f}"
                   if evaluation.exists() else "not evaluated")
        print(f"| {run.parent.name.removeprefix('ppo-')} | {run.name.removeprefix('seed-')} | "
              f"{row['first_entropy']:.3f} | {row['last_entropy']:.3f} ({row['last_step']}) | "
              f"{row['last_over_uniform']:.2f} | {success} |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/nav"))
