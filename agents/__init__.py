"""Navigation agents (side-tuned visual encoders for Stable-Baselines3); see the navigation issues."""
