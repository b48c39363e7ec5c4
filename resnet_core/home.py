"""The data folder: runs, checkpoints and cached datasets all live under one folder, chosen by one rule.

Neutral ground: training reads its datasets from here and the run store keeps its runs here, and neither
imports the other for it.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import StoreError

HOME_VARIABLE = "RESNET_EXPLORER_HOME"
DEFAULT_HOME = "~/.resnet-explorer"

_writable_homes: set[Path] = set()


def resolve_home(home: str | os.PathLike | None = None) -> Path:
    """The data folder: `home`, else $RESNET_EXPLORER_HOME, else ~/.resnet-explorer; created and checked writable."""
    if home is not None and not str(home).strip():  # "" would quietly mean the default folder, someone else's store
        raise StoreError("The data folder given is empty; pass --home DIR with a folder, or leave it out for "
                         f"${HOME_VARIABLE} or {DEFAULT_HOME}.")
    # Absolute: a job's process starts in another folder.
    path = Path(home or os.environ.get(HOME_VARIABLE) or DEFAULT_HOME).expanduser().absolute()
    if path in _writable_homes and path.is_dir():  # probed once per process: pages resolve it on every poll
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):  # a unique name: threads of one process probe at once
            pass
    except OSError as error:
        raise StoreError(f"Cannot write to the data folder {path} ({error.strerror or error}); pass --home DIR or set "
                         f"{HOME_VARIABLE} to a writable folder.") from None
    _writable_homes.add(path)
    return path
