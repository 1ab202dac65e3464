"""Task heads on top of the merged feature."""

from torch import nn


def make_head(in_dim: int, num_classes: int) -> nn.Module:
    """A linear classifier, as side-tuning uses for each iCIFAR task.

    :param in_dim: width of the merged feature.
    :param num_classes: number of classes of the task.
    """
    return nn.Linear(in_dim, num_classes)
