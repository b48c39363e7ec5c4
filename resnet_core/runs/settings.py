"""The server's settings: the data folder and every RESNET_EXPLORER_* environment variable, each read and checked here.

A bad value is a user's error with one sentence naming the variable, what it counts and what it got; an unset or
empty variable means its default.
"""
from __future__ import annotations

import math
import os
import socket
from collections.abc import Callable
from pathlib import Path

from ..errors import UserError
from ..home import DEFAULT_HOME, HOME_VARIABLE, resolve_home  # noqa: F401 (the data folder is one of the settings)

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
# Warm processes kept ready to take the next runs (runs.launchers.local): a run starts ~3 s sooner. Each idle spare
# holds ~300 MB. Default: enough for a plain/residual pair, within the cap.
SPARES_VARIABLE = "RESNET_EXPLORER_SPARES"
DEFAULT_SPARES = 2

# The database of every table (runs.database): unset, the SQLite file runs.sqlite in the data folder.
DATABASE_VARIABLE = "RESNET_EXPLORER_DATABASE_URL"
# With PostgreSQL, checkpoints live in the database unless this names a folder every machine of the deployment
# mounts at the same path.
CHECKPOINTS_VARIABLE = "RESNET_EXPLORER_CHECKPOINT_DIR"
# An executing job renews its lease every LEASE_RENEW_S; a lease older than LEASE_S means its executor is gone
# (killed, its machine lost) and the job reads as interrupted. 30 s outlasts a database restart of ~10 s.
LEASE_VARIABLE = "RESNET_EXPLORER_LEASE_S"
DEFAULT_LEASE_S = 30
LEASE_RENEW_S = 2.0

# A cluster (runs.launchers.cluster): the Ray head's address, `auto` on one of its machines; unset, jobs are local
# processes. A run on a GPU node takes this share of a GPU (0.125: eight short runs share one GPU).
RAY_ADDRESS_VARIABLE = "RESNET_EXPLORER_RAY_ADDRESS"
GPU_SHARE_VARIABLE = "RESNET_EXPLORER_GPU_SHARE"
DEFAULT_GPU_SHARE = 0.125
# The machine a job executes on, as the store records it; a cluster's worker sets it to its node, else the host name.
NODE_VARIABLE = "RESNET_EXPLORER_NODE"

# The time a preset's runs may take together on this server: each preset trains the longest length that fits
# (resnet_core.speed.fit), never shorter than the length its effect was measured to need.
DEMO_MINUTES_VARIABLE = "RESNET_EXPLORER_DEMO_MINUTES"
DEFAULT_DEMO_MINUTES = 6.0

# Whoever opens the Class page with ?key= equal to this may hand out Fig. 6's cells and cancel anyone's run;
# unset, nobody can (runs.classroom).
TEACHER_KEY_VARIABLE = "RESNET_EXPLORER_TEACHER_KEY"

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


def database_url() -> str | None:
    """$RESNET_EXPLORER_DATABASE_URL, or None for the data folder's SQLite file."""
    return os.environ.get(DATABASE_VARIABLE) or None


def shared_checkpoint_folder() -> Path | None:
    """$RESNET_EXPLORER_CHECKPOINT_DIR as an absolute folder, or None."""
    folder = os.environ.get(CHECKPOINTS_VARIABLE)
    return Path(folder).expanduser().absolute() if folder else None


def lease_seconds() -> int:
    """How long a job's lease lasts without renewal: $RESNET_EXPLORER_LEASE_S, else 30."""
    lease = _variable(LEASE_VARIABLE, "second", minimum=3)  # at least one renewal must fit in a lease
    return DEFAULT_LEASE_S if lease is None else lease


def lease_renew_seconds() -> float:
    """How often an executing job renews its lease: every LEASE_RENEW_S, or a third of a shorter lease."""
    return min(LEASE_RENEW_S, lease_seconds() / 3)


def ray_address() -> str | None:
    """$RESNET_EXPLORER_RAY_ADDRESS (`auto` or HOST:PORT of a Ray head), or None: jobs run as local processes."""
    return os.environ.get(RAY_ADDRESS_VARIABLE) or None


def _real(variable: str, default: float, accepts: Callable[[float], bool], wanted: str) -> float:
    """The environment variable's number, else `default`; one `accepts` refuses is a UserError naming `wanted`."""
    value = os.environ.get(variable)
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and accepts(number)):
        raise UserError(f"${variable} must be {wanted}; got {value!r}.")
    return number


def demo_minutes() -> float:
    """Minutes a preset's runs may take together: $RESNET_EXPLORER_DEMO_MINUTES, else 6."""
    return _real(DEMO_MINUTES_VARIABLE, DEFAULT_DEMO_MINUTES, lambda minutes: minutes > 0,
                 "a number of minutes above 0 (e.g. 6 or 2.5)")


def gpu_share() -> float:
    """The share of one GPU each run on a GPU node takes: $RESNET_EXPLORER_GPU_SHARE, else 0.125."""
    return _real(GPU_SHARE_VARIABLE, DEFAULT_GPU_SHARE, lambda share: 0 < share <= 1,
                 "a share of one GPU above 0 and at most 1 (0.125: eight runs per GPU)")


def this_node() -> str:
    """The machine this process executes jobs on: $RESNET_EXPLORER_NODE (a cluster's worker sets it), else the host's
    name."""
    return os.environ.get(NODE_VARIABLE) or socket.gethostname()
