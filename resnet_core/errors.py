"""Errors a user can cause: each is one sentence naming what is allowed.

They derive from `ValueError` so Python callers can catch them as bad input; the CLI turns them
into a one-line message and exit status 2, and keeps tracebacks for bugs.
"""
from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

# What a full disk or an exceeded quota or file-size limit looks like from Python and from SQLite.
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class UserError(ValueError):
    """Bad input from a user: a name, a path, a folder or a run that cannot be used as asked."""


class DatasetError(UserError):
    """A dataset that cannot be found, downloaded or read."""


class StoreError(UserError):
    """A data folder that cannot be written, or a run that does not exist or cannot do what was asked."""


class StoreUnavailableError(StoreError):
    """The database could not be reached (a PostgreSQL server down or restarting); the write may be retried."""


class CheckpointError(UserError):
    """A checkpoint that is missing, truncated or written by something else."""


class RunLimitError(StoreError):
    """A person already has as many queued or running runs as each may have."""


class ServerFullError(StoreError):
    """The queue is at its bound: nobody can queue more runs until some have started."""


class DataFolderFullError(StoreError):
    """The data folder's disk, quota or file-size limit is exhausted."""


def folder_full_error(error: BaseException, home: Path) -> DataFolderFullError | None:
    """The one-line error for an exception caused by a full data folder, or None for any other exception.

    Python raises OSError with the errno; SQLite says "database or disk is full"; safetensors (Rust) only
    names the OS error in its message.
    """
    cause = getattr(error, "orig", error)  # SQLAlchemy wraps the driver's error
    if isinstance(error, OSError) and error.errno in FULL_ERRNOS:
        reason = error.strerror
    elif isinstance(cause, sqlite3.OperationalError) and "full" in str(cause):
        reason = str(cause)
    else:
        reason = next((os.strerror(code) for code in FULL_ERRNOS if os.strerror(code) in str(error)), None)
    if reason is None:
        return None
    return DataFolderFullError(f"The data folder {home} is full ({reason}); free some space there (delete old runs) "
                               "and resume the run.")
