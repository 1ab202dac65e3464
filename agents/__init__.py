"""Navigation agents (side-tuned visual encoders for Stable-Baselines3); see docs/agents.md.

``envs`` is imported first: it silences gym 0.23's banner, which Stable-Baselines3 would otherwise
trigger by importing gym.
"""

import envs  # noqa: F401  (before stable_baselines3)
