"""Errors caused by the user's input or environment.

Each carries a one-line message that says what was wrong and how to fix it; the CLI prints that
line and exits with code 2 instead of showing a traceback.
"""


class ContinualSideError(Exception):
    """Base class: bad input that the user can fix."""


class DataRootError(ContinualSideError):
    """A data root is missing, has the wrong class folders, or holds unreadable files."""


class WeightsError(ContinualSideError):
    """A weights file is missing, cannot be loaded, or does not fit the architecture."""


class ChecksumError(WeightsError):
    """A file's sha256 differs from the published one."""


class ConfigError(ContinualSideError):
    """A configuration value is out of range or names something that does not exist."""
