"""``ContinualSideNav-v0``: habitat-lab's Nav-v0 task with a reset that skips the OmegaConf rewrite.

habitat's ``NavigationTask.overwrite_sim_config`` copies every episode's scene id and start pose into
the OmegaConf config before ``habitat.Env`` hands it to the simulator: about 1 ms, most of a reset,
while an untrained agent's episodes last a few steps. ``habitat.Env.reconfigure`` passes the episode
to the simulator too, and ContinualSideSim reads the scene and start pose from it, so the copy is
skipped for that simulator. Sensors, measures and actions are Nav-v0's own; any other simulator
(habitat-sim's ``Sim-v0``) gets Nav-v0's behaviour unchanged.
"""

from __future__ import annotations

from habitat.core.registry import registry
from habitat.tasks.nav.nav import NavigationTask

from envs.simulator import ContinualSideSim


@registry.register_task(name="ContinualSideNav-v0")
class ContinualSideNavigationTask(NavigationTask):
    """Nav-v0 whose episode start reaches ContinualSideSim without a config rewrite."""

    def overwrite_sim_config(self, config, episode):
        if isinstance(self._sim, ContinualSideSim):
            return config
        return super().overwrite_sim_config(config, episode)
