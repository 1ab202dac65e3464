"""continual_side/streams."""
