"""The local launcher: each job its own process on this machine, in a session of its own so it outlives the app that
started it: `python -m resnet_core.runs.job --run-id ID`, or a warm spare.

A spare imports torch, torch._dynamo (the optimizer's first construction pulls it in) and the executor's modules,
~3 s of a ~5 s start on this 2-core machine, before Start is pressed; then it waits until the queue hands it a
job, executes that job exactly as `python -m resnet_core.runs.job --run-id ID` would, and exits. One job per
process, so no state leaks from one job into the next. `keep_spares` starts them:

    python -m resnet_core.runs.launchers.local HOME
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .. import processes
from ..schema import Run
from ..settings import spares_wanted, this_node, threads_per_run
from ..store import Store

LOG_NAME = "train.log"
SPARE_IDLE_S = 300  # an idle spare (~300 MB) retires after this long
POLL_S = 0.05
_PACKAGE_ROOT = Path(__file__).resolve().parents[3]  # the folder that holds resnet_core


def start_run(store: Store, run_id: int, threads: int, spares: int) -> int:
    """Start a process executing job `run_id` on `threads` torch threads: a waiting spare, else a new one; then top
    the spares up to `spares`. Returns its pid."""
    pid = _hand_to_spare(store, run_id, threads)
    if pid is None:
        pid = _spawn(["resnet_core.runs.job", "--run-id", str(run_id), "--home", str(store.home),
                      "--threads", str(threads)], store.run_dir(run_id) / LOG_NAME, threads)
    keep_spares(store, threads, spares)
    return pid


def _spawn(module_and_args: list[str], log_path: Path, threads: int) -> int:
    path = os.pathsep.join(filter(None, [str(_PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))
    with open(log_path, "ab") as log:
        # A session of its own: the run outlives the app that started it and ignores the app's Ctrl-C.
        process = subprocess.Popen([sys.executable, "-m", *module_and_args], stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True, cwd=_PACKAGE_ROOT,
                                   env={**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": str(threads)})
    return process.pid


def spare_paths(home: Path, pid: int) -> tuple[Path, Path]:
    """A spare's two files: `<pid>.spare` while it waits, `<pid>.run` with the run it is handed."""
    folder = home / "workers"
    return folder / f"{pid}.spare", folder / f"{pid}.run"


def _hand_to_spare(store: Store, run_id: int, threads: int) -> int | None:
    """Give the run to a waiting spare; its pid, or None when there is none."""
    for spare in sorted((store.home / "workers").glob("*.spare")):
        pid = int(spare.stem)
        claimed = spare.with_suffix(".claimed")
        try:
            os.rename(spare, claimed)  # atomic: of two dispatchers (or a retiring spare) only one gets it
        except FileNotFoundError:
            continue
        alive = processes.running(pid)
        if alive:
            order = spare_paths(store.home, pid)[1]
            staged = order.with_suffix(".tmp")
            staged.write_text(json.dumps({"run_id": run_id, "threads": threads,
                                             "log": str(store.run_dir(run_id) / LOG_NAME)}))
            os.replace(staged, order)  # the spare never reads half an order
        claimed.unlink()
        if alive:
            return pid
    return None


def keep_spares(store: Store | None = None, threads: int | None = None, spares: int | None = None) -> None:
    """Start spares until `spares` (default: `settings.spares_wanted()`) wait; call it where a run may soon start
    (the Train page)."""
    store = store or Store()
    wanted = spares_wanted() if spares is None else spares
    folder = store.home / "workers"
    folder.mkdir(exist_ok=True)
    with open(folder / "spares.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two sessions counting at once would both start the missing spares
        waiting = 0
        for spare in folder.glob("*.spare"):
            if processes.running(int(spare.stem)):
                waiting += 1
            else:
                spare.unlink(missing_ok=True)
        for _ in range(wanted - waiting):
            pid = _spawn(["resnet_core.runs.launchers.local", str(store.home)], folder / "spares.log",
                         threads or threads_per_run())
            spare_paths(store.home, pid)[0].touch()


class LocalLauncher:
    """Starts a job's process with `threads` torch threads (default: the cores shared by the cap), keeping `spares`
    warm spares (default: the server's setting)."""

    def __init__(self, threads: int | None = None, spares: int | None = None) -> None:
        # Read now: a bad setting starts nothing.
        self.threads = threads_per_run() if threads is None else threads
        self.spares = spares_wanted() if spares is None else spares

    def launch(self, store: Store, run: Run) -> None:
        store.run_dir(run.id).mkdir(parents=True, exist_ok=True)  # its log's folder
        pid = start_run(store, run.id, self.threads, self.spares)
        store.launched(run.id, pid, processes.start_time(pid))

    resumes_lost_jobs = False  # a process killed for memory would only be killed again: a person resumes it
    launches = True

    def alive(self, run: Run) -> bool | None:
        if run.pid is None or run.node not in (None, this_node()):
            return None  # not launched yet, or another machine's process: only its lease can tell
        return processes.running(run.pid, run.process_started)

    def last_words(self, store: Store, run: Run) -> str:
        # Progress bars use carriage returns; the last line is e.g. an exception's message.
        try:
            tail = (store.run_dir(run.id) / LOG_NAME).read_bytes()[-4096:].decode(errors="replace")
        except OSError:
            return ""
        lines = [line.strip() for line in tail.replace("\r", "\n").splitlines() if line.strip()]
        return lines[-1][:300] if lines else ""

    def upkeep(self, store: Store) -> int | None:
        return None  # the server's cap

    def hurry(self, run: Run) -> bool | None:
        if run.node not in (None, this_node()):
            return None  # its lease renewal reads the request within seconds
        # Only the run's own process: its pid, if it exited, may already be another's.
        return processes.signal_if_same(run.pid, run.process_started, signal.SIGTERM)


# ------------------------------------------------------------------------------------------- a spare's own side
def serve_one_run(home: Path, idle_s: float) -> int:
    import torch._dynamo  # noqa: F401  (the slow imports are the point of a spare)

    from .. import job

    spare, order = spare_paths(home, os.getpid())
    deadline = time.monotonic() + idle_s
    while not order.exists():
        if not home.is_dir():  # a deleted data folder (a test's) has no runs to hand out
            return 0
        if time.monotonic() > deadline:
            try:  # retire, unless a dispatcher claimed this spare at this very moment
                os.rename(spare, spare.with_suffix(".retired"))
            except FileNotFoundError:
                deadline = float("inf")
                continue
            spare.with_suffix(".retired").unlink(missing_ok=True)
            return 0
        time.sleep(POLL_S)
    assignment = json.loads(order.read_text())
    order.unlink()
    run_id = assignment["run_id"]
    with open(assignment["log"], "ab") as log:  # from here on, this process is the run's
        os.dup2(log.fileno(), sys.stdout.fileno())
        os.dup2(log.fileno(), sys.stderr.fileno())
    return job.run(home, run_id, assignment["threads"])


if __name__ == "__main__":
    from ...shutdown import exit_now

    exit_now(serve_one_run(Path(sys.argv[1]), SPARE_IDLE_S))
