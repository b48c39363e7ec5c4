"""Whether a run's process still runs: by its pid and its start time, so a pid the system reused is not mistaken
for the run's process."""
from __future__ import annotations

import os

import psutil

# psutil derives a start time from clock ticks since boot: the same process reads the same value; another
# process given the same pid later starts later than this by far more.
SAME_START_S = 0.5


def start_time(pid: int) -> float | None:
    """When process `pid` started (unix seconds); None when there is no such process."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return None


def running(pid: int | None, started: float | None = None) -> bool:
    """Whether process `pid` runs and, where `started` is known, is the process that started then.

    Reaps `pid` if it is an exited child of this process: a zombie still has its pid.
    """
    if not pid:
        return False
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped:
            return False
    except ChildProcessError:  # not our child: someone else reaps it
        pass
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(process.create_time() - started) < SAME_START_S
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # alive, someone else's
        return True


def signal_if_same(pid: int, started: float | None, signum: int) -> bool:
    """Send `signum` to `pid` only if it is still the process that started at `started`; False when it is gone."""
    try:
        process = psutil.Process(pid)
        if started is not None and abs(process.create_time() - started) >= SAME_START_S:
            return False
        process.send_signal(signum)  # psutil checks again that the pid was not reused since Process(pid)
        return True
    except psutil.NoSuchProcess:
        return False
