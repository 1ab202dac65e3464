"""continual_side/methods."""
