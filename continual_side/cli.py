"""The ``continual-side`` command line (tyro over the configuration dataclasses).

Errors the user can fix (:class:`~continual_side.errors.ContinualSideError`) print one line and exit
with code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass


import tyro

from continual_side.bench import BenchConfig, ComparisonTable, run_bench, table_markdown
from continual_side.errors import ConfigError, ContinualSideError
from continual_side.methods import MethodConfig
from continual_side.perf import PerfConfig, format_table, run_perf
from continual_side.runner import RunConfig, RunOutcome, StreamConfig, run


@dataclass
class DemoConfig:
    """Side-tuning on the packaged CIFAR-10 sample (5 tasks x 2 classes), offline, a few minutes on a CPU.

    The paper's settings (ResNet-44 base, distilled FCN4 side, alpha merge, Adam 1e-3, 4 epochs) with
    mini-batches of 32 instead of 128, since each task has only 700 training images here.

    :param epochs: training epochs per task.
    :param batch_size: training mini-batch size.
    :param seed: random seed.
    :param device: cpu or cuda.
    :param out: root folder of the run folders.
    """

    epochs: int = 4
    batch_size: int = 32
    seed: int = 0
    device: str = "cpu"
    out: str = "runs"

    def run_config(self) -> RunConfig:
        return RunConfig(
            data=StreamConfig(stream="demo"),
            method="sidetune",
            train=MethodConfig(epochs=self.epochs, batch_size=self.batch_size, device=self.device),
            seed=self.seed,
            out=self.out,
            overwrite=True,
        )


def format_matrix(outcome: RunOutcome) -> str:
    """The accuracy matrix as text: rows = after training task i, columns = task j (upper triangle '-')."""
    acc = outcome.acc_matrix
    n = len(acc)
    header = "after \\ task " + " ".join(f"{j:>6d}" for j in range(n))
    rows = [
        f"{i:>12d} " + " ".join(f"{100 * acc[i, j]:6.1f}" if j <= i else f"{'-':>6}" for j in range(n))
        for i in range(n)
    ]
    s = outcome.summary
    footer = (
        f"average accuracy {100 * s['average_accuracy']:.2f}%  forgetting {100 * s['forgetting']:.2f}%  "
        f"BWT {100 * s['backward_transfer']:+.2f}%  ({s['wall_time_s']:.0f} s)\nrun folder: {outcome.run_dir}"
    )
    return "\n".join(["accuracy (%) on each task's test set:", header, *rows, footer])


def demo(config: DemoConfig) -> RunOutcome:
    outcome = run(config.run_config())
    print(format_matrix(outcome))
    return outcome


def stream(config: RunConfig) -> RunOutcome:
    """Train one method over a task stream and write runs/<stream>/<method>/seed-<n>/."""
    outcome = run(config)
    print(format_matrix(outcome))
    return outcome


def bench(config: BenchConfig) -> ComparisonTable:
    """Every method x every seed over one stream, then the comparison table and figures."""
    table = run_bench(config)
    print(table_markdown(table))
    print(f"comparison folder: {table.folder}")
    return table


def perf(config: PerfConfig) -> dict:
    """Speed and memory of fine-tuning, side-tuning (cache off/on), features and Avalanche's Naive."""
    report = run_perf(config)
    print(format_table(report))
    print(f"results written to {config.out}")
    return report


@dataclass
class NavCommand:
    """Point-goal navigation in habitat-lab on the built-in simulator (needs the habitat extra).

    Its subcommands live in ``envs.cli`` and are imported only when ``nav`` is the command, so no
    other command loads habitat; ``continual-side nav --help`` lists them.
    """


def run_nav(argv: list[str]) -> None:
    """``continual-side nav ...``: hand the remaining arguments to the navigation package's CLI."""
    if importlib.util.find_spec("habitat") is None:
        raise ConfigError("navigation needs habitat-lab: install the extra with pip install -e '.[habitat]'")
    importlib.import_module("envs.cli").main(argv)


COMMANDS = {
    "demo": (demo, DemoConfig),
    "stream": (stream, RunConfig),
    "bench": (bench, BenchConfig),
    "perf": (perf, PerfConfig),
    "nav": (run_nav, NavCommand),
}


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``continual-side`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv[:1] == ["nav"]:
            run_nav(argv[1:])
            return
        config = tyro.extras.subcommand_cli_from_dict(
            {name: config_type for name, (_, config_type) in COMMANDS.items()},
            args=argv,
            prog="continual-side",
            description="Side-tuning benchmarks for continual learning and embodied navigation.",
        )
        command = next(fn for fn, config_type in COMMANDS.values() if type(config) is config_type)
        command(config)
    except ContinualSideError as error:
        print(f"continual-side: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
