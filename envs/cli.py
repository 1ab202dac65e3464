"""``continual-side nav ...``: the navigation commands, parsed here so that only ``nav`` loads habitat."""

from __future__ import annotations

from typing import Annotated, Union

import tyro

from envs.nav_demo import NavDemoConfig, run_nav_demo
from envs.perf import NavPerfConfig, run_nav_perf


def main(argv: list[str]) -> dict:
    """Parse ``argv`` (the words after ``nav``) and run the chosen navigation command."""
    config = tyro.cli(
        Union[
            Annotated[NavDemoConfig, tyro.conf.subcommand("demo", prefix_name=False)],
            Annotated[NavPerfConfig, tyro.conf.subcommand("perf", prefix_name=False)],
        ],
        args=argv,
        prog="continual-side nav",
    )
    if isinstance(config, NavPerfConfig):
        return run_nav_perf(config)
    return run_nav_demo(config)
