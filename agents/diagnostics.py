"""What a PPO run's TensorBoard log says about its policy: the entropy of its action distribution over
training. A policy whose entropy stays near ln(number of actions) is still close to uniform, so its greedy
(argmax) evaluation picks among near-ties and measures noise rather than what the encoder learned.

``python -m benchmarks.nav_ppo_entropy runs/nav`` prints the table for every PPO run under a folder.
"""

from __future__ import annotations

import math
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ENTROPY_TAG = "train/entropy_loss"


def policy_entropy(run_dir: Path) -> list[tuple[int, float]]:
    """(environment step, mean policy entropy in nats) of each logged PPO update, from ``run_dir/tb``.

    SB3 logs ``train/entropy_loss`` as minus the mean entropy of the action distributions over the update's
    rollout, at the step where the next rollout ends (the last update of each ``learn()`` is not logged).
    """
    files = sorted(Path(run_dir, "tb").rglob("events.out.tfevents.*"))
    if not files:
        raise FileNotFoundError(f"no TensorBoard events under {Path(run_dir, 'tb')}: train with --tensorboard")
    points: dict[int, float] = {}
    for file in files:
        events = EventAccumulator(str(file), size_guidance={"scalars": 0})
        events.Reload()
        if ENTROPY_TAG in events.Tags()["scalars"]:
            points.update({event.step: -event.value for event in events.Scalars(ENTROPY_TAG)})
    if not points:
        raise ValueError(f"{run_dir}: no {ENTROPY_TAG} in its TensorBoard log (not a PPO run, or no update yet)")
    return sorted(points.items())


def entropy_row(run_dir: Path, n_actions: int = 3) -> dict:
    """First and last logged entropy of a run, also as a fraction of the uniform policy's ln(n_actions)."""
    curve = policy_entropy(run_dir)
    uniform = math.log(n_actions)
    (first_step, first), (last_step, last) = curve[0], curve[-1]
    return {"run": str(run_dir), "first_step": first_step, "first_entropy": first, "last_step": last_step,
            "last_entropy": last, "last_over_uniform": last / uniform}
