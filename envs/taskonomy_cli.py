"""``continual-side taskonomy render``: the mini-Taskonomy, parsed here so that only this command loads envs."""

from __future__ import annotations

from tyro.extras import subcommand_cli_from_dict

from envs.taskonomy_render import RenderedSet, TaskonomyRenderConfig, render_taskonomy


def main(argv: list[str]) -> RenderedSet:
    """Parse ``argv`` (the words after ``taskonomy``), render (or find the cached set) and say where it is."""
    config = subcommand_cli_from_dict({"render": TaskonomyRenderConfig}, args=argv, prog="continual-side taskonomy")
    result = render_taskonomy(config)
    made = "cached, rendered earlier" if result.cached else "rendered"
    print(f"{result.views} views x 12 domains {made} in {result.seconds:.1f} s with {config.workers} workers: "
          f"{result.views_per_s:.1f} views/s, {result.views_per_cpu_s:.1f} views per CPU second")
    print(f"data root: {result.root}")
    print(f"one view in every domain: {config.grid or result.root / 'domains.png'}")
    return result
