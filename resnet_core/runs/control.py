"""Controlling queued and running jobs from anywhere the store is reached: cancel, resume, delete.

Cancel is a row (`cancel_requested`) that the job's executor reads when it renews its lease and then stops after a
checkpoint; the launcher may make it notice at once (a local process gets SIGTERM). No UI code here.
"""
from __future__ import annotations

import logging
import shutil

from ..errors import StoreError
from .admission import Limits
from .dispatch import dispatch
from .launchers import Launcher, default_launcher
from .schema import Status
from .store import Store

logger = logging.getLogger(__name__)


def _refuse_reference(store: Store, run_id: int, done: str) -> None:
    reference = store.reference_of(run_id)  # also: no such run
    if reference:
        raise StoreError(f"Run {run_id} is the shipped {reference} reference; it is read-only and cannot be {done}.")


def cancel(run_id: int, store: Store | None = None, launcher: Launcher | None = None) -> str:
    """Cancel a run that has not started at once, or ask a running one to stop after a checkpoint; returns what
    was done."""
    store = store or Store()
    _refuse_reference(store, run_id, "cancelled")
    if store.cancel_queued(run_id):
        return f"Run {run_id} was cancelled before it started."
    run = store.run(run_id)
    launcher = launcher or default_launcher()
    if run.status != Status.RUNNING:
        raise StoreError(f"Run {run_id} is already {run.status}; only queued or running runs can be cancelled.")
    if run.cancel_requested:
        raise StoreError(f"Run {run_id} is already stopping; it saves a checkpoint first.")
    if launcher.alive(run) is False:
        dispatch(store, launcher=launcher)  # marks it interrupted
        raise StoreError(f"Run {run_id} had already stopped: its process {run.pid} is gone.")
    if not store.request_cancel(run_id):  # it ended meanwhile
        raise StoreError(f"Run {run_id} is already {store.run(run_id).status}; only queued or running runs can be "
                         "cancelled.")
    if launcher.hurry(run) is False:  # it exited between the check above and now
        dispatch(store, launcher=launcher)
        raise StoreError(f"Run {run_id} had already stopped: its process {run.pid} is gone.")
    return f"Run {run_id} stops after saving a checkpoint."


def resume(run_id: int, store: Store | None = None, limits: Limits | None = None) -> str:
    """Queue a cancelled, failed or interrupted run again (within `limits`, a shared server's); it continues from its
    last checkpoint."""
    store = store or Store()
    _refuse_reference(store, run_id, "resumed")
    # Refuses queued, finished, diverged and running runs, and a person or a queue without room.
    store.requeue_for_resume(run_id, **(limits.room() if limits else {}))
    dispatch(store)
    return f"Run {run_id} is queued to continue from its last checkpoint."


def delete(run_id: int, store: Store | None = None, launcher: Launcher | None = None) -> str:
    """Forget a run that is not running, with its metrics, checkpoints and log."""
    store = store or Store()
    _refuse_reference(store, run_id, "deleted")
    if not store.delete_run(run_id):  # it is running, or there is no such run (store.run says so)
        run = store.run(run_id)
        launcher = launcher or default_launcher()
        if run.status in (Status.STARTING, Status.RUNNING) and launcher.alive(run) is not False:
            raise StoreError(f"Run {run_id} is running; cancel it and wait until it has stopped before deleting it.")
        dispatch(store, launcher=launcher)  # its executor is gone: mark it interrupted, which makes it deletable
        if not store.delete_run(run_id):
            raise StoreError(f"Run {run_id} started again meanwhile; cancel it before deleting it.")
    folder = store.run_dir(run_id)
    if folder.exists():  # a run cancelled before it started has no folder
        # The run is gone from the store either way; what cannot be removed is only left behind, with a trace.
        shutil.rmtree(folder, onerror=lambda _, path, error: logger.warning(
            "Run %s was deleted, but %s could not be removed: %s", run_id, path, error[1]))
    return f"Run {run_id} was deleted."
