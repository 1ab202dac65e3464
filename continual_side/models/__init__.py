"""continual_side/models."""
