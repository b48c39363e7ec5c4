"""Dispatching the job queue: settle jobs whose executor is gone, then start queued jobs while fewer than the cap
run, each through a launcher (`runs.launchers`).

    dispatch()        # starts queued runs while fewer than the cap run

Whoever changes the queue dispatches (a submission, a cancel, a job's executor as it ends), and a server runs a
`Dispatcher` thread that does so when a read shows something to do (an executor gone, a free slot); page polls only
read. Dispatchers of one data folder on one machine take turns (a file lock); dispatchers on several machines are
kept apart by the store's claim transaction. A dispatcher reads the active jobs, decides outside any transaction
which executors are gone (a lease that lapsed, or a local process that died), then in one short write transaction
applies that and claims free slots (`starting`), and only after the commit launches them. A launched executor
confirms its job (`Store.confirm`); a claim whose dispatcher died before launching goes back to the queue after
STARTING_TIMEOUT_S. No UI code here.
"""
from __future__ import annotations

import fcntl
import logging
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import folder_full_error
from .database import DISPATCHER_LOCK, session_lock
from .launchers import Launcher, default_launcher
from .schema import DamagedRunError, Status
from .settings import max_concurrent_runs
from .store import Run, Store, Verdict

logger = logging.getLogger(__name__)

# A dispatcher launches right after its claim commits (milliseconds); a claim this old with no process recorded
# lost its dispatcher in between, and the run goes back to the queue.
STARTING_TIMEOUT_S = 60.0


def dispatch(store: Store | None = None, cap: int | None = None, launcher: Launcher | None = None) -> list[int]:
    """Settle jobs whose executor is gone, then start queued jobs while fewer than the cap run; the ids started."""
    store = store or Store()
    cap = max_concurrent_runs(cap)
    launcher = launcher or default_launcher()  # made first: a bad setting starts nothing
    if not launcher.launches:  # a cluster's: its dispatcher process launches
        return []
    with _one_dispatcher(store.home):
        active = store.active_runs()
        verdicts = _verdicts(store, active, launcher)
        if not verdicts and not _free_slot_for_queued(active, cap):
            return []  # nothing to write: no write lock taken
        claimed = store.claim_slots(cap, verdicts)
        started = []
        for run in claimed:  # after the claim committed: nothing starts under the write lock
            try:
                launcher.launch(store, run)
            except Exception as error:  # e.g. a full disk for its log; the queue behind it must not stall
                logger.warning("Run %s could not start.", run.id, exc_info=True)
                store.fail_start(run.id, f"It could not start: {folder_full_error(error, store.home) or error}")
                continue
            started.append(run.id)
        return started


def needs_dispatch(store: Store, cap: int | None = None, launcher: Launcher | None = None) -> bool:
    """Whether `dispatch` has anything to do: an executor is gone, a claim went stale, or a queued run has a free
    slot. Only reads, so a server can ask every second without taking the write lock."""
    launcher = launcher or default_launcher()
    if not launcher.launches:  # a cluster's: its dispatcher process launches
        return False
    active = store.active_runs()
    return bool(_verdicts(store, active, launcher)) or _free_slot_for_queued(active, max_concurrent_runs(cap))


def _free_slot_for_queued(active: list[Run | DamagedRunError], cap: int) -> bool:
    busy = sum(run.status in (Status.STARTING, Status.RUNNING) for run in active)
    return busy < cap and any(run.status == Status.QUEUED for run in active)


@contextmanager
def _one_dispatcher(home: Path) -> Iterator[None]:
    """Dispatchers of one data folder take turns on this machine, in this process (threads) and across processes."""
    with open(home / "dispatch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _verdicts(store: Store, active: list[Run | DamagedRunError], launcher: Launcher) -> list[Verdict]:
    """What became of busy jobs, decided from one read: interrupted (its lease lapsed, or its process died; queued
    again to resume where the launcher resumes lost jobs), failed (it died before it could confirm), or queued again
    (its dispatcher died between claim and launch)."""
    verdicts = []
    lost = Status.QUEUED if launcher.resumes_lost_jobs else Status.INTERRUPTED
    for run in active:
        if run.lapsed:
            reason = str(run) if isinstance(run, DamagedRunError) else run.error
            verdicts.append(Verdict(run.id, Status.RUNNING, run.pid, lost, reason))
        elif run.status == Status.RUNNING and launcher.alive(run) is False:
            reason = str(run) if isinstance(run, DamagedRunError) else _lost_reason(store, run, launcher)
            verdicts.append(Verdict(run.id, run.status, run.pid, lost, reason))
        elif run.status == Status.STARTING and launcher.alive(run) is False:
            last = "" if isinstance(run, DamagedRunError) else launcher.last_words(store, run)
            verdicts.append(Verdict(run.id, run.status, run.pid, Status.FAILED,
                                    f"It could not start: its process {run.pid} ended before it began "
                                    f"({last or 'killed'})."))
        elif run.status == Status.STARTING and run.pid is None and launcher.alive(run) is None:
            if isinstance(run, DamagedRunError) or time.time() - (run.claimed or 0) > STARTING_TIMEOUT_S:
                logger.warning("Run %s was claimed but never launched; it goes back to the queue.", run.id)
                verdicts.append(Verdict(run.id, run.status, None, Status.QUEUED))
    return verdicts


def serve(store: Store, launcher: Launcher, interval_s: float = 1.0, stop: threading.Event | None = None) -> None:
    """The deployment's dispatcher in the foreground (`python -m resnet_core dispatch`): every `interval_s` the
    launcher's upkeep, then a dispatch when there is anything to do; until `stop` is set. Errors (the database
    restarting) are logged and tried again at the next tick."""
    stop = stop or threading.Event()
    while not stop.is_set():
        try:
            cap = launcher.upkeep(store)
            if cap != 0 and needs_dispatch(store, cap, launcher):
                dispatch(store, cap, launcher)
        except Exception:
            logger.exception("Dispatching the queue of %s failed; trying again in %g s.", store.where, interval_s)
        stop.wait(interval_s)


@contextmanager
def dispatcher_lock(store: Store) -> Iterator[bool]:
    """The deployment's one dispatcher holds this while it serves: yields whether this process got it (two never
    both dispatch; one that dies releases it)."""
    with session_lock(store.engine, DISPATCHER_LOCK, store.home / "dispatcher.lock") as mine:
        yield mine


def start_dispatcher_if_none(store: Store) -> bool:
    """Start `python -m resnet_core dispatch` for `store`'s deployment in a session of its own when no dispatcher
    holds the lock (a cluster's pages call this); whether one was started. Its output goes to dispatcher.log in the
    data folder."""
    with dispatcher_lock(store) as free:
        if not free:
            return False
    import subprocess
    import sys

    with open(store.home / "dispatcher.log", "ab") as log:
        subprocess.Popen([sys.executable, "-m", "resnet_core", "dispatch", "--home", str(store.home)],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                         cwd=Path(__file__).resolve().parents[2])
    logger.warning("No dispatcher was running for %s; started one (its log: %s).", store.where,
                   store.home / "dispatcher.log")
    return True


class Dispatcher:
    """Advances one data folder's queue from a thread of a long-lived process (the app's server), so page polls
    only read: every `interval_s` it reads whether there is anything to do and dispatches when there is (on a
    cluster it only sees that the deployment's dispatcher process runs, and starts one when none does). The
    thread ends after `idle_s` without a `keep_alive` call, when the data folder is gone, or at `stop`;
    `keep_alive` starts it again."""

    def __init__(self, home: Path, interval_s: float = 1.0, idle_s: float = 600.0) -> None:
        self.home, self.interval_s, self.idle_s = Path(home), interval_s, idle_s
        self._lock = threading.Lock()
        self._wanted = time.monotonic()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def keep_alive(self) -> None:
        with self._lock:
            self._wanted = time.monotonic()
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._serve, name=f"dispatcher {self.home}", daemon=True)
                self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """End the thread after the dispatch in progress, if any, and wait for it (the server's cache of
        dispatchers cleared: another takes over the data folder)."""
        with self._lock:
            self._stop.set()
            thread = self._thread
        if thread is not None:
            thread.join(timeout_s)

    def _serve(self) -> None:
        store = Store(self.home)
        while not self._stop.is_set() and self.home.is_dir() and time.monotonic() - self._wanted < self.idle_s:
            try:
                launcher = default_launcher()
                if not launcher.launches:  # a cluster's: its own dispatcher process launches; see that one runs
                    start_dispatcher_if_none(store)
                elif needs_dispatch(store, launcher=launcher):
                    dispatch(store, launcher=launcher)
            except Exception:  # e.g. a bad setting, the database restarting: logged, and tried again next tick
                logger.exception("Dispatching the queue of %s failed.", self.home)
            self._stop.wait(self.interval_s)


def _lost_reason(store: Store, run: Run, launcher: Launcher) -> str:
    checkpoint = store.latest_checkpoint(run.id)
    where = f"from its checkpoint at iteration {checkpoint[0]}" if checkpoint else "from the start"
    return (f"Interrupted: its process {run.pid} stopped without finishing "
            f"({launcher.last_words(store, run) or 'killed'}); resume it to continue {where}.")


def queue_positions(store: Store | None = None) -> dict[int, int]:
    """Queued run id -> its place in the queue (1 starts next)."""
    store = store or Store()
    return {run_id: position for position, run_id in enumerate(store.queued_ids(), start=1)}
