"""The ``continual-side`` command line (tyro over the configuration dataclasses).

The options of a command are built from the registries when it runs: ``stream`` and ``bench`` show
the chosen stream's options and the chosen methods' own options (``--sidetune.merge``,
``--ewc.lambda_``), so a method or stream registered anywhere appears here without an edit.
``nav`` is handed to ``envs.cli`` and imported only then, so no other command loads habitat.

Errors the user can fix (:class:`~continual_side.errors.ContinualSideError`) print one line and exit
with code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field, make_dataclass
from typing import Annotated, Any, get_args

import tyro

from continual_side.errors import ConfigError, ContinualSideError
from continual_side.executors import ExecutorConfig
from continual_side.grid import parse_axes
from continual_side.methods import METHODS, TrainConfig, get_method
from continual_side.midlevel_training import DistillConfig, PretrainConfig, distill, pretrain
from continual_side.perf import PerfConfig, format_table, results_file, run_perf
from continual_side.report import ComparisonTable, table_markdown
from continual_side.runner import RunConfig, RunOutcome, run
from continual_side.streams import STREAMS, get_stream
from continual_side.sweep import (ALL_METHODS, Action, BenchConfig, RunReport, SweepConfig, resolve_methods, run_bench,
                                  run_sweep)


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
        return RunConfig(stream="demo", method="sidetune", seed=self.seed, out=self.out, overwrite=True,
                         train=TrainConfig(epochs=self.epochs, batch_size=self.batch_size, device=self.device))


def format_matrix(outcome: RunOutcome) -> str:
    """The run's matrix as text: rows = after training task i, columns = task j (upper triangle '-').

    Accuracy (%) for a classification stream; test loss for a dense stream (iTaskonomy), with its
    loss forgetting and the accuracy of its classification-like tasks.
    """
    dense = outcome.loss_matrix is not None
    matrix = outcome.loss_matrix if dense else 100 * outcome.acc_matrix
    n = len(matrix)
    names = outcome.task_names if dense else [str(j) for j in range(n)]
    width = max(7, *(len(name) for name in names))
    header = "after \\ task " + " ".join(f"{name:>{width}}" for name in names)
    cell = (lambda v: f"{v:{width}.4g}") if dense else (lambda v: f"{v:{width}.1f}")
    rows = [f"{i:>12d} " + " ".join(cell(matrix[i, j]) if j <= i else f"{'-':>{width}}" for j in range(n))
            for i in range(n)]
    s = outcome.summary
    if dense:
        title = "test loss on each task (lower is better):"
        scores = f"mean final loss {s['mean_final_loss']:.4g}  loss forgetting {s['loss_forgetting']:.4g}"
        if s["accuracy"]:
            final = s["accuracy"]["final_accuracy_per_task"]
            scores += "  accuracy " + ", ".join(f"{task} {100 * value:.1f}%" for task, value in final.items())
    else:
        title = "accuracy (%) on each task's test set:"
        scores = (f"average accuracy {100 * s['average_accuracy']:.2f}%  forgetting {100 * s['forgetting']:.2f}%  "
                  f"BWT {100 * s['backward_transfer']:+.2f}%")
    footer = f"{scores}  ({s['wall_time_s']:.0f} s)\nrun folder: {outcome.run_dir}"
    return "\n".join([title, header, *rows, footer])


def _arg(help_text: str, default: Any = dataclasses.MISSING, *, prefix: bool = True,
         factory: Any = dataclasses.MISSING):
    """A field of a command dataclass built at run time (its help comes from here, not a docstring)."""
    annotations = [tyro.conf.arg(help=help_text)] + ([] if prefix else [tyro.conf.OmitArgPrefixes])
    return annotations, field(default=default, default_factory=factory)


def _command(name: str, doc: str, fields: list[tuple[str, Any, list, Any]]) -> type:
    """A dataclass named ``name`` from (field, type, tyro annotations, dataclasses.field) tuples."""
    command = make_dataclass(name, [(f, Annotated[(t, *notes)] if notes else t, spec) for f, t, notes, spec in fields])
    command.__doc__ = doc
    return command


def _selection(argv: list[str], flag: str, default: Any, *, many: bool = False) -> Any:
    """The value of ``flag`` in ``argv`` (a first pass, to know which options the command has)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(flag, nargs="+" if many else None, default=default)
    known, _ = parser.parse_known_args(argv)
    return getattr(known, flag.lstrip("-").replace("-", "_"))


def _stream_fields(stream: str) -> list:
    spec = get_stream(stream)
    return [
        ("stream", str, *_arg(f"a registered stream: {', '.join(STREAMS)}.", stream)),
        ("data", spec.options, *_arg(f"{stream} options.", prefix=False, factory=spec.options)),
    ]


def _method_field(method: str) -> tuple:
    spec = get_method(method)
    return (method, spec.options, *_arg(f"{method} options (trains {spec.trained}).", factory=spec.options))


def _shared_fields() -> list:
    return [("train", TrainConfig, *_arg("training settings shared by every method.", prefix=False,
                                         factory=TrainConfig))]


def _output_fields(defaults: dict[str, Any] | None = None, **overrides: Any) -> list:
    """The output flags; ``defaults`` (a sweep's TOML file) may set their values."""
    defaults = defaults or {}
    return [
        ("out", str, *_arg("root folder of the run folders (<out>/<stream>/<method>/seed-<n>/).",
                           defaults.get("out", "runs"))),
        ("tensorboard", bool, *_arg("also log to TensorBoard in the run folder.", defaults.get("tensorboard", False))),
        ("progress", bool, *_arg("show progress bars.", defaults.get("progress", True))),
        ("overwrite", bool, *_arg(overrides.get("overwrite", "replace an earlier run in the same folder."),
                                  defaults.get("overwrite", False))),
    ]


def parse_stream(argv: list[str]) -> RunConfig:
    """``continual-side stream``: one method over one stream, one seed; only their own options are shown."""
    stream, method = _selection(argv, "--stream", "demo"), _selection(argv, "--method", "sidetune")
    command = _command("stream", "Train one method over a task stream and write runs/<stream>/<method>/seed-<n>/.", [
        *_stream_fields(stream),
        ("method", str, *_arg(f"a registered method: {', '.join(METHODS)}.", method)),
        _method_field(method),
        *_shared_fields(),
        ("seed", int, *_arg("random seed for initialisation and data order.", 0)),
        *_output_fields(),
        ("resume", bool, *_arg("continue the incomplete run in the run folder from its last checkpoint.", False)),
    ])
    parsed = tyro.cli(command, args=argv, prog="continual-side stream")
    return RunConfig(stream=stream, method=method, stream_options=parsed.data, method_options=getattr(parsed, method),
                     train=parsed.train, seed=parsed.seed, out=parsed.out, tensorboard=parsed.tensorboard,
                     progress=parsed.progress, overwrite=parsed.overwrite, resume=parsed.resume)


def parse_bench(argv: list[str]) -> BenchConfig:
    """``continual-side bench``: every chosen method x seed over one stream, then the comparison."""
    stream = _selection(argv, "--stream", "demo")
    get_stream(stream)
    methods = resolve_methods(_selection(argv, "--methods", [ALL_METHODS], many=True), [stream])
    command = _command("bench", "Every method x every seed over one stream, then the comparison table and figures.", [
        *_stream_fields(stream),
        ("methods", tuple[str, ...], *_arg(f"registered methods ({', '.join(METHODS)}) or {ALL_METHODS}.",
                                           factory=lambda: (ALL_METHODS,))),
        *[_method_field(method) for method in methods],
        *_shared_fields(),
        ("seeds", int, *_arg("number of seeds per method (seeds 0 .. n-1).", 3)),
        *_output_fields(overwrite="retrain runs that already finished (otherwise they are reused or resumed)."),
        ("aggregate_only", bool, *_arg("train nothing: rebuild the comparison from the complete run folders.", False)),
    ])
    parsed = tyro.cli(command, args=argv, prog="continual-side bench")
    return BenchConfig(stream=stream, stream_options=parsed.data, methods=tuple(parsed.methods),
                       method_options={method: getattr(parsed, method) for method in methods}, train=parsed.train,
                       seeds=parsed.seeds, out=parsed.out, tensorboard=parsed.tensorboard, overwrite=parsed.overwrite,
                       progress=parsed.progress, aggregate_only=parsed.aggregate_only)


SWEEP_FILE_KEYS = ("streams", "methods", "seeds", "out", "tensorboard", "overwrite", "progress", "grid", "train",
                   "executor")


def read_sweep_file(path: str | None) -> dict[str, Any]:
    """A sweep's TOML file: top-level keys of :data:`SWEEP_FILE_KEYS` and one table per stream or method.

    :param path: the file; None for no file.
    :raises ConfigError: the file is missing, not TOML, or has a key that is neither.
    """
    if path is None:
        return {}
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"--config {path}: {error}; give a TOML file (see docs/sweeps.md)") from None
    unknown = [key for key in document if key not in SWEEP_FILE_KEYS and key not in STREAMS and key not in METHODS]
    if unknown:
        raise ConfigError(f"--config {path}: unknown key(s) {', '.join(unknown)}; use {', '.join(SWEEP_FILE_KEYS)} "
                          "or a table named after a stream or method")
    return document


def _from_file(document: dict[str, Any], name: str, options: type) -> Any:
    """``options`` built from the file's table ``name`` (its defaults where the table is silent)."""
    try:
        return options(**document.get(name, {}))
    except TypeError as error:
        raise ConfigError(f"--config: table [{name}]: {error}; its options are "
                          f"{', '.join(f.name for f in dataclasses.fields(options))}") from None


def parse_sweep(argv: list[str]) -> SweepConfig:
    """``continual-side sweep``: streams x methods x seeds x grid values; flags override the TOML file."""
    document = read_sweep_file(_selection(argv, "--config", None))
    streams = _selection(argv, "--streams", document.get("streams", ["demo"]), many=True)
    for name in streams:
        get_stream(name)
    methods = resolve_methods(_selection(argv, "--methods", document.get("methods", [ALL_METHODS]), many=True), streams)

    def options_field(name: str, options: type, help_text: str) -> tuple:
        value = _from_file(document, name, options)
        return (name, options, *_arg(help_text, factory=lambda: dataclasses.replace(value)))

    command = _command("sweep", "A grid of streams x methods x seeds x option values on a local pool or Ray, then "
                       "each stream's comparison.", [
        ("config", str | None, *_arg("a TOML file with the sweep (see docs/sweeps.md); flags override it.", None)),
        ("streams", tuple[str, ...], *_arg(f"registered streams: {', '.join(STREAMS)}.", tuple(streams))),
        *[options_field(name, get_stream(name).options, f"{name} options.") for name in streams],
        ("methods", tuple[str, ...], *_arg(f"registered methods ({', '.join(METHODS)}) or {ALL_METHODS}.",
                                           tuple(document.get("methods", [ALL_METHODS])))),
        *[options_field(name, get_method(name).options, f"{name} options (trains {get_method(name).trained}).")
          for name in methods],
        ("grid", tuple[str, ...], *_arg("axes NAME.FIELD=VALUE,VALUE... of a stream's or method's options, e.g. "
                                        "ewc.lambda_=1e3,1e4 sidetune.merge=alpha,film (the file's [grid] too).", ())),
        ("train", TrainConfig, *_arg("training settings shared by every run.", prefix=False,
                                     factory=lambda: _from_file(document, "train", TrainConfig))),
        ("seeds", int, *_arg("number of seeds per setting (seeds 0 .. n-1).", document.get("seeds", 3))),
        ("executor", ExecutorConfig, *_arg("where the runs train.", prefix=False,
                                           factory=lambda: _from_file(document, "executor", ExecutorConfig))),
        *_output_fields(document, overwrite="retrain runs that already finished (otherwise they are skipped or "
                        "resumed)."),
    ])
    parsed = tyro.cli(command, args=argv, prog="continual-side sweep")
    from_file = {key: list(values) for key, values in document.get("grid", {}).items()}
    return SweepConfig(streams=tuple(parsed.streams), stream_options={name: getattr(parsed, name) for name in streams},
                       methods=tuple(parsed.methods), method_options={name: getattr(parsed, name) for name in methods},
                       grid={**from_file, **parse_axes(parsed.grid)}, train=parsed.train, seeds=parsed.seeds,
                       out=parsed.out, tensorboard=parsed.tensorboard, overwrite=parsed.overwrite,
                       progress=parsed.progress, executor=parsed.executor)


def parse_perf(argv: list[str]) -> tuple[PerfConfig, str, Any]:
    """``continual-side perf``: the stream's options plus the perf settings."""
    stream = _selection(argv, "--stream", "demo")
    command = _command("perf", PerfConfig.__doc__ or "", [
        *_stream_fields(stream),
        ("perf", PerfConfig, *_arg("what to measure.", prefix=False, factory=PerfConfig)),
    ])
    parsed = tyro.cli(command, args=argv, prog="continual-side perf")
    return parsed.perf, stream, parsed.data


def demo(argv: list[str]) -> None:
    """Side-tuning over the packaged 5-task CIFAR-10 sample, offline."""
    config = tyro.cli(DemoConfig, args=argv, prog="continual-side demo")
    print(format_matrix(run(config.run_config())))


def stream(argv: list[str]) -> None:
    """Train one method over a task stream and write runs/<stream>/<method>/seed-<n>/."""
    print(format_matrix(run(parse_stream(argv))))


def bench(argv: list[str]) -> None:
    """Every method x every seed over one stream, then the comparison table and figures."""
    _print_table(run_bench(parse_bench(argv)))


def _print_table(table: ComparisonTable) -> None:
    print(table_markdown(table))
    print(f"comparison folder: {table.folder}")


def sweep(argv: list[str]) -> None:
    """A grid of streams x methods x seeds x option values on a local pool or Ray, then each stream's comparison."""
    result = run_sweep(parse_sweep(argv))
    for table in result.tables:
        _print_table(table)
    report_runs(result.runs)


def report_runs(runs: Sequence[RunReport]) -> None:
    """Print how many runs were skipped, started, resumed, restarted and failed, then each failure (which run,
    its error, its log) on stderr; exit with code 1 if any failed (after what completed was reported)."""
    counts = {action: sum(report.action == action for report in runs) for action in get_args(Action)}
    failed = [report for report in runs if report.error is not None]
    print(f"{len(runs)} runs: " + ", ".join(f"{count} {action}" for action, count in counts.items())
          + f", {len(failed)} failed")
    for report in failed:
        print(f"failed: {report.job.name}: {report.error} (log: {report.job.log})", file=sys.stderr)
    if failed:
        raise SystemExit(1)


def perf(argv: list[str]) -> None:
    """Side-by-side speed and memory of fine-tuning, side-tuning (cache off/on), features and Avalanche's Naive."""
    config, stream_name, stream_options = parse_perf(argv)
    print(format_table(run_perf(config, stream_name, stream_options)))
    print(f"results written to {results_file(config)}")


AGENT_COMMANDS = ("train", "eval", "bench")  # nav subcommands of the agents package; the others are envs'


def nav(argv: list[str]) -> None:
    """Point-goal navigation in habitat-lab on the built-in simulator (needs the habitat extra)."""
    if importlib.util.find_spec("habitat") is None:
        raise ConfigError("navigation needs habitat-lab: install the extra with pip install -e '.[habitat]'")
    package = "agents" if argv[:1] and argv[0] in AGENT_COMMANDS else "envs"
    importlib.import_module(f"{package}.cli").main(argv)


def taskonomy(argv: list[str]) -> None:
    """Render the mini-Taskonomy: views of the navigation apartments in Taskonomy's 12 domains (needs numba)."""
    if importlib.util.find_spec("numba") is None:
        raise ConfigError("the mini-Taskonomy renderer needs numba: install the extra with pip install -e '.[habitat]'")
    importlib.import_module("envs.taskonomy_cli").main(argv)


def pretrain_command(argv: list[str]) -> None:
    """Pre-train the mid-level encoder on one mini-Taskonomy domain and compare it with a random one."""
    summary = pretrain(tyro.cli(PretrainConfig, args=argv, prog="continual-side pretrain"))
    print(f"{summary['task']} loss on the test buildings, decoder trained on the frozen encoder: "
          f"pre-trained {summary['frozen_pretrained_test_loss']:.5f}, random {summary['frozen_random_test_loss']:.5f}")
    print(f"encoder weights: {summary['weights']} (sha256 {summary['weights_sha256']})")


def distill_command(argv: list[str]) -> None:
    """Distill the FCN5 side network from the mid-level encoder's feature map."""
    summary = distill(tyro.cli(DistillConfig, args=argv, prog="continual-side distill"))
    print(f"feature MSE on the test buildings: distilled FCN5 {summary['distilled_test_mse']:.5f}, untrained "
          f"{summary['untrained_test_mse']:.5f}, train mean map {summary['mean_map_test_mse']:.5f}")
    print(f"FCN5 weights: {summary['weights']} (sha256 {summary['weights_sha256']})")


COMMANDS = {"demo": demo, "stream": stream, "bench": bench, "sweep": sweep, "perf": perf, "nav": nav,
            "taskonomy": taskonomy, "pretrain": pretrain_command, "distill": distill_command}


def _usage() -> str:
    lines = ["usage: continual-side {" + ",".join(COMMANDS) + "} [OPTIONS]", "",
             "Side-tuning benchmarks for continual learning and embodied navigation.", "", "commands:"]
    width = max(map(len, COMMANDS))
    lines += [f"  {name:<{width}}  {command.__doc__.splitlines()[0]}" for name, command in COMMANDS.items()]
    lines += ["", "continual-side COMMAND --help lists a command's options (stream and bench: for the chosen "
              "--stream and --method/--methods)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``continual-side`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        raise SystemExit(0 if argv else 2)
    if argv[0] not in COMMANDS:
        print(f"{_usage()}\n\ncontinual-side: error: unknown command {argv[0]!r}", file=sys.stderr)
        raise SystemExit(2)
    try:
        COMMANDS[argv[0]](argv[1:])
    except ContinualSideError as error:
        print(f"continual-side: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
