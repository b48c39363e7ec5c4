"""The server's settings: the data folder and every RESNET_EXPLORER_* environment variable, each read and checked here.

A bad value is a user's error with one sentence naming the variable, what it counts and what it got; an unset or
empty variable means its default.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import StoreError, UserError

HOME_VARIABLE = "RESNET_EXPLORER_HOME"
DEFAULT_HOME = "~/.resnet-explorer"
CAP_VARIABLE = "RESNET_EXPLORER_MAX_RUNS"
THREADS_VARIABLE = "RESNET_EXPLORER_THREADS_PER_RUN"
# A CIFAR run on a GPU: CUDA context (~0.5 GB), weights, and ResNet-110's activations at batch 128 (~1.5 GB),
# rounded up, so an 80 GB card takes up to 20 runs at once.
GPU_RUN_BYTES = 4_000_000_000
# A workshop: each person may queue a plain/residual pair; past MAX_WAITING runs waiting, Start says the server
# is full (on 2 cores, 20 waiting runs of a few hundred iterations are about a quarter of an hour).
PER_USER_VARIABLE = "RESNET_EXPLORER_RUNS_PER_USER"
DEFAULT_RUNS_PER_USER = 2
WAITING_VARIABLE = "RESNET_EXPLORER_MAX_WAITING"
DEFAULT_MAX_WAITING = 20
# Warm processes kept ready to take the next runs (runs.workers): a run starts ~3 s sooner. Each idle spare holds
# ~300 MB. Default: enough for a plain/residual pair, within the cap.
SPARES_VARIABLE = "RESNET_EXPLORER_SPARES"
DEFAULT_SPARES = 2

# Whoever opens the Class page with ?key= equal to this may hand out Fig. 6's cells and cancel anyone's run;
# unset, nobody can (runs.classroom).
TEACHER_KEY_VARIABLE = "RESNET_EXPLORER_TEACHER_KEY"

_writable_homes: set[Path] = set()


def resolve_home(home: str | os.PathLike | None = None) -> Path:
    """The data folder: `home`, else $RESNET_EXPLORER_HOME, else ~/.resnet-explorer; created and checked writable."""
    if home is not None and not str(home).strip():  # "" would quietly mean the default folder, someone else's store
        raise StoreError("The data folder given is empty; pass --home DIR with a folder, or leave it out for "
                         f"${HOME_VARIABLE} or {DEFAULT_HOME}.")
    # Absolute: the queue's workers start in another folder.
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


def whole_number(variable: str, value, unit: str, minimum: int = 1) -> int:
    """`value` of `variable` as a count of `unit`s, at least `minimum`; a UserError naming the variable otherwise."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise UserError(f"${variable} must be a whole number of {unit}s; got {value!r}.") from None
    if number < minimum:
        raise UserError(f"${variable} must be at least {minimum} {unit if minimum == 1 else unit + 's'}; "
                        f"got {number}.")
    return number


def _variable(variable: str, unit: str, minimum: int = 1) -> int | None:
    """The environment variable's count, or None when it is unset or empty."""
    value = os.environ.get(variable)
    return whole_number(variable, value, unit, minimum) if value else None


def threads_per_run(cap: int | None = None) -> int:
    """Torch threads of each run: $RESNET_EXPLORER_THREADS_PER_RUN, else the cores shared by `cap` (or the
    $RESNET_EXPLORER_MAX_RUNS) runs, else 1; so the runs together use the cores once and never oversubscribe."""
    if (threads := _variable(THREADS_VARIABLE, "thread")) is not None:
        return threads
    if cap is not None or os.environ.get(CAP_VARIABLE):
        return max(1, (os.cpu_count() or 1) // max_concurrent_runs(cap))
    return 1


def max_concurrent_runs(cap: int | None = None) -> int:
    """`cap`, else $RESNET_EXPLORER_MAX_RUNS, else CPU cores / threads per run; with a GPU, as many runs as its
    memory holds at GPU_RUN_BYTES each, up to one per core (each run still drives it from one CPU thread)."""
    if cap is not None:
        return whole_number(CAP_VARIABLE, cap, "run")
    if (runs := _variable(CAP_VARIABLE, "run")) is not None:
        return runs
    import torch  # here, not above: the data folder's readers (`python -m resnet_core runs`) need no torch

    by_cores = max(1, (os.cpu_count() or 1) // threads_per_run())
    if torch.cuda.is_available():
        return max(1, min(by_cores, torch.cuda.mem_get_info()[1] // GPU_RUN_BYTES))
    return by_cores


def runs_per_user() -> int:
    """How many runs one person may have queued or running: $RESNET_EXPLORER_RUNS_PER_USER, else 2."""
    runs = _variable(PER_USER_VARIABLE, "run")
    return DEFAULT_RUNS_PER_USER if runs is None else runs


def max_waiting_runs() -> int:
    """How many runs may wait for a slot before Start answers that the server is full."""
    runs = _variable(WAITING_VARIABLE, "run")
    return DEFAULT_MAX_WAITING if runs is None else runs


def spares_wanted(cap: int | None = None) -> int:
    """How many warm spare processes to keep: $RESNET_EXPLORER_SPARES (0 for none), else 2 within the cap."""
    spares = _variable(SPARES_VARIABLE, "spare", minimum=0)
    return min(max_concurrent_runs(cap), DEFAULT_SPARES) if spares is None else spares


def teacher_key() -> str | None:
    """The teacher's key: $RESNET_EXPLORER_TEACHER_KEY, or None (no teacher) when it is unset or empty."""
    return os.environ.get(TEACHER_KEY_VARIABLE) or None
