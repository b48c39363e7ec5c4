"""Errors a user can cause: each is one sentence naming what is allowed.

They derive from `ValueError` so Python callers can catch them as bad input; the CLI turns them
into a one-line message and exit status 2, and keeps tracebacks for bugs.
"""
from __future__ import annotations


class UserError(ValueError):
    """Bad input from a user: a name, a path, a folder or a run that cannot be used as asked."""


class DatasetError(UserError):
    """A dataset that cannot be found, downloaded or read."""


class StoreError(UserError):
    """A data folder that cannot be written, or a run that does not exist or cannot do what was asked."""


class CheckpointError(UserError):
    """A checkpoint that is missing, truncated or written by something else."""
