"""User-facing errors: the CLI prints their message on one line and exits non-zero.

Everything the user can cause (a bad name, a bad file, a diverging run) raises a
subclass of ``LeptonError``; anything else is a bug and keeps its traceback.
"""


class LeptonError(Exception):
    """An error whose message is meant for the user, not a traceback."""


class ConfigError(LeptonError):
    """A bad name, flag or configuration value."""


class DataError(LeptonError):
    """A missing, corrupt or malformed dataset file, column, split or row."""


class TrainingError(LeptonError):
    """A run that cannot go on: non-finite loss, out of memory."""
