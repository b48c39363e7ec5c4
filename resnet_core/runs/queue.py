"""The job queue over the run store: admit runs, start them under a cap, report their places, control them.

    run_ids = [submit("plain20", "synthetic", iterations=200), submit("resnet20", "synthetic", iterations=200)]
    dispatch()        # starts queued runs while fewer than the cap run

A run submitted here is the same thing as one the CLI trains: `python -m resnet_core train --run-id ID` in its
own session (so it outlives the app that started it), writing metrics and checkpoints to the store. The CLI's
`train --model` submits through `submit_all` too, so the same settings give the same recipe and checks.

Dispatching: whoever changes the queue dispatches (a submission, a cancel, a training process as it ends), and
a server runs a `Dispatcher` thread that does so when a read shows something to do (a dead process, a free
slot); page polls only read. One dispatcher at a time per data folder (a file lock): it reads the active runs,
decides outside any transaction which processes died (by pid and start time, `runs.processes`), then in one short
write transaction applies that and claims free slots (`starting`), and only after the commit launches their
processes. A launched process confirms its run (`Store.confirm`); a claim whose dispatcher died before launching
goes back to the queue after STARTING_TIMEOUT_S. `runs.workers` starts the processes and `runs.settings` gives
the limits. No UI code here.
"""
from __future__ import annotations

import fcntl
import logging
import shutil
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from ..errors import StoreError, UserError, folder_full_error
from ..nets.specs import NetSpec, get_spec
from ..training import memory
from ..training.data import SOURCE_HELP, list_split
from ..training.device import pick_precision
from ..training.recipe import Recipe, training_recipe
from . import processes
from .schema import DamagedRunError, Status
from .settings import max_concurrent_runs, max_waiting_runs, runs_per_user, spares_wanted, threads_per_run
from .store import Run, Store, Verdict
from .workers import LOG_NAME, start_run

logger = logging.getLogger(__name__)

CANCEL_MARKER = "cancel-requested"  # holds the pid that was sent SIGTERM, so a second cancel cannot kill it
# Train sizes of the built-in sources; synthetic matches load_data's default synthetic_sizes.
SOURCE_SIZES = {"cifar10": (10, 50_000), "cifar100": (100, 50_000), "synthetic": (10, 2048)}
# A CPU trains ResNet-20 at ~400-700 img/s (docs/BENCHMARKS.md): 10 CIFAR-10 epochs take ~15 min, ResNet-110's
# ~1.5 h. The limit counts images, so a small dataset (synthetic: 2,048) may run more epochs of it.
CPU_MAX_EPOCHS = 10
CPU_MAX_IMAGES = CPU_MAX_EPOCHS * SOURCE_SIZES["cifar10"][1]
CPU_MAX_DEPTH = 110
# A dispatcher launches right after its claim commits (milliseconds); a claim this old with no process recorded
# lost its dispatcher in between, and the run goes back to the queue.
STARTING_TIMEOUT_S = 60.0


def workshop_limits() -> dict[str, int]:
    """The store's limits on a person's runs (`Store.create_runs`): per person, waiting, and the cap."""
    return dict(per_owner=runs_per_user(), max_waiting=max_waiting_runs(), cap=max_concurrent_runs())


def recorded_source(source: str) -> str:
    """The data as a run records it: a built-in source by its name, a folder by its absolute path (as load_data names
    it), so the run's worker (started in another folder) and every later command find it from wherever they run."""
    return source if source in SOURCE_SIZES else str(Path(source).expanduser().resolve())


def dataset_shape(source: str) -> tuple[int, int]:
    """(classes, training images) of a source, without decoding it."""
    if source in SOURCE_SIZES:
        return SOURCE_SIZES[source]
    folder = Path(source).expanduser()
    if not folder.is_dir():
        raise UserError(f"Unknown dataset {source!r}; allowed: {SOURCE_HELP}.")
    listing = list_split(folder, "train")
    return len(listing), sum(len(files) for files in listing.values())


def submit(model: str, data: str, **settings) -> int:
    """Queue one run; `submit_all`'s arguments. Returns its id."""
    return submit_all([model], data, **settings)[0]


def planned_runs(models: list[str], data: str, *, iterations: int | None = None, epochs: int | None = None,
                 batch_size: int | None = None, lr: float | None = None, eval_every: int | None = None,
                 recipe: str | None = None, validation_images: int | None = None,
                 normalization: str | None = None) -> list[tuple[NetSpec, Recipe]]:
    """The net and the recipe each model would train with (`recipe.training_recipe`; `recipe`: its kind), checked
    as far as it can be without the data: what `submit_all` queues and the Train page describes before Start."""
    classes, train_images = dataset_shape(data)
    planned = []
    for model in models:
        try:
            spec = get_spec(model, num_classes=classes)
        except ValueError as error:
            raise UserError(str(error)) from None
        planned.append((spec, training_recipe(spec, iterations=iterations, epochs=epochs, train_images=train_images,
                                              kind=recipe, batch_size=batch_size, lr=lr, eval_interval=eval_every,
                                              validation_images=validation_images, normalization=normalization)))
    return planned


def submit_all(models: list[str], data: str, *, seed: int = 0, device: str = "cpu", precision: str | None = None,
               name: str | None = None, owner: str | None = None, store: Store | None = None,
               server_limits: bool = True, taken_by: int | None = None, **settings) -> list[int]:
    """Queue one run per model with the recipe `planned_runs` gives it for `settings` (iterations or epochs,
    batch_size, lr, eval_every, recipe, validation_images, normalization), all or none; returns their ids.

    Checks what can be checked without the data (names, sizes, the memory a run needs, and with `server_limits`
    the CPU limits of a shared server) and, for an `owner` (a person using the app), the per-person limit and the
    queue's bound; a dataset that cannot be loaded makes the run fail with its reason when it starts. The CLI's
    `train` submits here without `server_limits` (the machine is its user's) and trains the run itself: `taken_by`
    its pid records the run running for it at once, so no dispatcher starts it too.
    """
    store = store or Store()
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("This server has no usable CUDA GPU; train on the cpu.")
    data = recorded_source(data)
    train_images = dataset_shape(data)[1]
    runs = []
    for spec, recipe in planned_runs(models, data, **settings):
        _check_fits(spec, recipe, device, train_images, server_limits)
        runs.append(dict(name=name or f"{spec.name} on {data}", spec=spec.to_dict(), recipe=recipe.to_dict(),
                         data=data, device=device, precision=pick_precision(torch.device(device), precision),
                         seed=seed))
    return store.create_runs(runs, owner=owner, taken_by=taken_by, **workshop_limits())


def _check_fits(spec: NetSpec, recipe: Recipe, device: str, train_images: int, server_limits: bool) -> None:
    """Refuse a run this machine cannot train: more memory than it has, or (`server_limits`) too long or too deep
    for a shared CPU server."""
    if device == "cpu" and server_limits:
        if spec.depth > CPU_MAX_DEPTH:
            raise UserError(f"{spec.name} is too deep to train on this CPU-only server; pick a depth up to "
                            f"{CPU_MAX_DEPTH}.")
        if recipe.iterations * recipe.batch_size > CPU_MAX_IMAGES:
            raise UserError(f"{recipe.iterations:,} iterations of {recipe.batch_size} are too long for this CPU-only "
                            f"server; train on at most {CPU_MAX_IMAGES:,} images ({CPU_MAX_EPOCHS} CIFAR-10 epochs, "
                            f"{CPU_MAX_IMAGES // recipe.batch_size:,} iterations of {recipe.batch_size}).")
    needed = memory.training_bytes(spec, recipe.batch_size, train_images, device)
    available = memory.available_bytes(device)
    if needed > available:
        raise UserError(f"{spec.name} with batches of {recipe.batch_size:,} needs about {memory.gigabytes(needed)} of "
                        f"memory to train, but this server has {memory.gigabytes(available)} free; use a smaller "
                        "batch or a shallower net.")


def dispatch(store: Store | None = None, cap: int | None = None) -> list[int]:
    """Settle runs whose process died, then start queued runs while fewer than the cap run; the ids started."""
    store = store or Store()
    cap = max_concurrent_runs(cap)
    threads, spares = threads_per_run(cap), spares_wanted()  # read first: a bad value starts nothing
    with _one_dispatcher(store.home):
        active = store.active_runs()
        verdicts = _verdicts(store, active)
        if not verdicts and not _free_slot_for_queued(active, cap):
            return []  # nothing to write: no write lock taken
        claimed = store.claim_slots(cap, verdicts)
        started = []
        for run in claimed:  # after the claim committed: no process starts under the write lock
            try:
                pid = _launch(store, run, threads, spares)
            except Exception as error:  # e.g. a full disk for its log; the queue behind it must not stall
                logger.warning("Run %s could not start.", run.id, exc_info=True)
                store.fail_start(run.id, f"It could not start: {folder_full_error(error, store.home) or error}")
                continue
            store.launched(run.id, pid, processes.start_time(pid))
            started.append(run.id)
        return started


def needs_dispatch(store: Store, cap: int | None = None) -> bool:
    """Whether `dispatch` has anything to do: a process died, a claim went stale, or a queued run has a free
    slot. Only reads, so a server can ask every second without taking the write lock."""
    active = store.active_runs()
    return bool(_verdicts(store, active)) or _free_slot_for_queued(active, max_concurrent_runs(cap))


def _free_slot_for_queued(active: list[Run | DamagedRunError], cap: int) -> bool:
    busy = sum(run.status in (Status.STARTING, Status.RUNNING) for run in active)
    return busy < cap and any(run.status == Status.QUEUED for run in active)


@contextmanager
def _one_dispatcher(home: Path) -> Iterator[None]:
    """Dispatchers of one data folder take turns, in this process (threads) and across processes."""
    with open(home / "dispatch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _verdicts(store: Store, active: list[Run | DamagedRunError]) -> list[Verdict]:
    """What became of busy runs, decided from one read: interrupted (its process died), failed (it died before
    it could confirm), or queued again (its dispatcher died between claim and launch)."""
    verdicts = []
    for run in active:
        if run.status == Status.RUNNING and not processes.running(run.pid, run.process_started):
            reason = str(run) if isinstance(run, DamagedRunError) else _lost_reason(store, run)
            verdicts.append(Verdict(run.id, run.status, run.pid, Status.INTERRUPTED, reason))
        elif run.status == Status.STARTING and run.pid is None:
            if isinstance(run, DamagedRunError) or time.time() - (run.claimed or 0) > STARTING_TIMEOUT_S:
                logger.warning("Run %s was claimed but never launched; it goes back to the queue.", run.id)
                verdicts.append(Verdict(run.id, run.status, None, Status.QUEUED))
        elif run.status == Status.STARTING and not processes.running(run.pid, run.process_started):
            last = "" if isinstance(run, DamagedRunError) else _last_log_line(store, run.id)
            verdicts.append(Verdict(run.id, run.status, run.pid, Status.FAILED,
                                    f"It could not start: its process {run.pid} ended before it began "
                                    f"({last or 'killed'})."))
    return verdicts


class Dispatcher:
    """Advances one data folder's queue from a thread of a long-lived process (the app's server), so page polls
    only read: every `interval_s` it reads whether there is anything to do and dispatches when there is. The
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
        store = Store(self.home)  # a connection of this thread's own
        try:
            while (not self._stop.is_set() and self.home.is_dir()
                   and time.monotonic() - self._wanted < self.idle_s):
                try:
                    if needs_dispatch(store):
                        dispatch(store)
                except Exception:  # e.g. a bad setting: logged, and tried again at the next tick
                    logger.exception("Dispatching the queue of %s failed.", self.home)
                self._stop.wait(self.interval_s)
        finally:
            store.close()


def _launch(store: Store, run: Run, threads: int, spares: int) -> int:
    folder = store.run_dir(run.id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CANCEL_MARKER).unlink(missing_ok=True)
    return start_run(store, run.id, threads, spares)


def _lost_reason(store: Store, run: Run) -> str:
    checkpoint = store.latest_checkpoint(run.id)
    where = f"from its checkpoint at iteration {checkpoint[0]}" if checkpoint else "from the start"
    last = _last_log_line(store, run.id)
    return (f"Interrupted: its process {run.pid} stopped without finishing ({last or 'killed'}); resume it to "
            f"continue {where}.")


def _last_log_line(store: Store, run_id: int) -> str:
    """The last line a run's process wrote, e.g. an exception's message (progress bars use carriage returns)."""
    try:
        tail = (store.run_dir(run_id) / LOG_NAME).read_bytes()[-4096:].decode(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def queue_positions(store: Store | None = None) -> dict[int, int]:
    """Queued run id -> its place in the queue (1 starts next)."""
    store = store or Store()
    return {run_id: position for position, run_id in enumerate(store.queued_ids(), start=1)}


def cancel_requested(store: Store, run: Run) -> bool:
    """Whether this run's current process was already asked to stop (it saves a checkpoint before it does)."""
    try:
        return (store.run_dir(run.id) / CANCEL_MARKER).read_text() == str(run.pid)
    except OSError:
        return False


def _refuse_reference(store: Store, run_id: int, done: str) -> None:
    reference = store.reference_of(run_id)  # also: no such run
    if reference:
        raise StoreError(f"Run {run_id} is the shipped {reference} reference; it is read-only and cannot be {done}.")


def cancel(run_id: int, store: Store | None = None) -> str:
    """Cancel a run that has not started at once, or ask a running one to stop after a checkpoint; returns what
    was done."""
    store = store or Store()
    _refuse_reference(store, run_id, "cancelled")
    if store.cancel_queued(run_id):
        return f"Run {run_id} was cancelled before it started."
    run = store.run(run_id)
    if run.status != Status.RUNNING:
        raise StoreError(f"Run {run_id} is already {run.status}; only queued or running runs can be cancelled.")
    if cancel_requested(store, run):
        raise StoreError(f"Run {run_id} is already stopping; it saves a checkpoint first.")
    # Mark before signalling: a second SIGTERM would stop the process without its final checkpoint.
    marker = store.run_dir(run.id) / CANCEL_MARKER
    store.run_dir(run.id).mkdir(parents=True, exist_ok=True)
    marker.write_text(str(run.pid))
    # Only the run's own process: its pid, if it exited, may already be another's.
    if not (processes.running(run.pid, run.process_started)
            and processes.signal_if_same(run.pid, run.process_started, signal.SIGTERM)):
        marker.unlink(missing_ok=True)
        dispatch(store)  # marks it interrupted
        raise StoreError(f"Run {run_id} had already stopped: its process {run.pid} is gone.")
    return f"Run {run_id} stops after saving a checkpoint."


def resume(run_id: int, store: Store | None = None) -> str:
    """Queue a cancelled, failed or interrupted run again; it continues from its last checkpoint."""
    store = store or Store()
    _refuse_reference(store, run_id, "resumed")
    store.requeue_for_resume(run_id, **workshop_limits())  # refuses queued, finished, diverged, running runs, and
    dispatch(store)                                        # full queues
    return f"Run {run_id} is queued to continue from its last checkpoint."


def delete(run_id: int, store: Store | None = None) -> str:
    """Forget a run that is not running, with its metrics, checkpoints and log."""
    store = store or Store()
    _refuse_reference(store, run_id, "deleted")
    if not store.delete_run(run_id):  # it is running, or there is no such run (store.run says so)
        run = store.run(run_id)
        if processes.running(run.pid, run.process_started):
            raise StoreError(f"Run {run_id} is running; cancel it and wait until it has stopped before deleting it.")
        dispatch(store)  # its process is gone: mark it interrupted, which makes it deletable
        if not store.delete_run(run_id):
            raise StoreError(f"Run {run_id} started again meanwhile; cancel it before deleting it.")
    folder = store.run_dir(run_id)
    if folder.exists():  # a run cancelled before it started has no folder
        # The run is gone from the store either way; what cannot be removed is only left behind, with a trace.
        shutil.rmtree(folder, onerror=lambda _, path, error: logger.warning(
            "Run %s was deleted, but %s could not be removed: %s", run_id, path, error[1]))
    return f"Run {run_id} was deleted."
