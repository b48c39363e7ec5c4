"""How long the queue holds SQLite's write lock (issue 12): per page poll and per dispatch, p50 / p95.

Every training process writes its metrics through the same write lock, so each millisecond a poll or a dispatch
holds it is a millisecond every run's flush may wait. The benchmark times each write transaction of the store
(from BEGIN IMMEDIATE to COMMIT, by wrapping `Store._transaction`) in a fresh data folder, with the cap at 2:

- poll: the Train page's poll (`explorer.training.live_runs.poll`) and the Runs page's read
  (`explorer.training.run_history.history`), with two runs "running" (their processes are `sleep`s, so alive) and
  four queued behind them;
- dispatch, nothing to start: `dispatch.dispatch` in the same state;
- dispatch, one to start: a slot is freed (one `sleep` is killed), so the dispatch notices the dead run and
  launches the next queued run (a real training process, killed again at once).

Reported: write transactions per call and the lock hold time summed per call, p50 / p95 over --repeats calls.

    .venv/bin/python -m benchmarks.bench_queue_lock [--repeats 40]
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

from resnet_core.runs import admission, dispatch
from resnet_core.runs.store import Store

HOLDS: list[float] = []


def _timed_transactions() -> None:
    """Record the duration of every write transaction any Store in this process makes."""
    original = Store._transaction

    @contextmanager
    def timed(self):
        with original(self) as db:
            start = time.perf_counter()  # the lock is held from here (BEGIN IMMEDIATE has returned)
            try:
                yield db
            finally:
                HOLDS.append(time.perf_counter() - start)  # COMMIT's own time is not counted, in both versions
    Store._transaction = timed


def measure(call, repeats: int, between=None) -> tuple[list[int], list[float]]:
    counts, totals = [], []
    for _ in range(repeats):
        if between:
            between()
        HOLDS.clear()
        call()
        counts.append(len(HOLDS))
        totals.append(sum(HOLDS) * 1000)
    return counts, totals


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="bench-queue-lock-")
    os.environ.update(RESNET_EXPLORER_HOME=home, RESNET_EXPLORER_MAX_RUNS="2", RESNET_EXPLORER_SPARES="0",
                      RESNET_EXPLORER_RUNS_PER_USER="1000", RESNET_EXPLORER_MAX_WAITING="1000")
    from explorer.training import live_runs, run_history  # after the environment: they read the data folder from it

    _timed_transactions()
    store = Store(home)
    sleepers = []

    def occupy(run_id: int) -> None:
        """Make `run_id` a running run whose process is alive (a sleep), without training anything."""
        sleeper = subprocess.Popen(["sleep", "3600"])
        sleepers.append(sleeper)
        assert store.claim(run_id, sleeper.pid)

    ids = [admission.submit("resnet8", "synthetic", iterations=20, store=store) for _ in range(6)]
    occupy(ids[0])
    occupy(ids[1])
    results = {
        "poll: Train page (live_runs.poll)": measure(lambda: live_runs.poll(ids), args.repeats),
        "poll: Runs page (run_history.history)": measure(run_history.history, args.repeats),
        "dispatch, nothing to start": measure(lambda: dispatch.dispatch(store), args.repeats),
    }
    launched = []

    def free_a_slot() -> None:
        # Stop whatever holds the slot (a sleep or a run started by the previous dispatch), and queue one more.
        running = [run for run in store.runs() if run.status in ("running", "starting") and run.pid]
        for run in running[:1]:
            os.kill(run.pid, signal.SIGKILL)
            try:
                os.waitpid(run.pid, 0)
            except ChildProcessError:
                pass
        admission.submit("resnet8", "synthetic", iterations=20, store=store)

    def dispatch_and_note() -> None:
        launched.extend(dispatch.dispatch(store))

    results["dispatch, one to start"] = measure(dispatch_and_note, args.repeats, between=free_a_slot)
    for run in store.runs():
        if run.status in ("running", "starting") and run.pid:
            try:
                os.kill(run.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for sleeper in sleepers:
        sleeper.kill()
    print(f"{args.repeats} calls each; write lock held per call (ms); runs launched by the last case: {len(launched)}")
    print(f"{'operation':<42} {'write txns':>10} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for name, (counts, totals) in results.items():
        print(f"{name:<42} {statistics.median(counts):>10.0f} {p(totals, 50):>8.2f} {p(totals, 95):>8.2f} "
              f"{max(totals):>8.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
