"""The only writer of a job's rows and checkpoint bytes: what `runs.executor` hands it goes to the store.

    recorder = Recorder(store, run_id)
    recorder.start(resumed_at_iteration)
    recorder.record(metrics)         # buffered: one write a second at most, the first row at once
    recorder.checkpoint(due)         # a training.train.CheckpointDue
    recorder.segmenter(iteration, segmenter, classes=[…])  # a segmentation run's model, at its end
    recorder.result(step, payload)   # an experiment's step
    recorder.finish("finished")      # or recorder.fail(message), which never raises

Every store write is retried while the database cannot be reached (StoreUnavailableError), for up to RETRY_S, so a
PostgreSQL restart of a few seconds loses nothing: metric rows are keyed by (run, kind, iteration) and results by
(run, step), so writing a batch again is harmless.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, TypeVar

from ..errors import StoreUnavailableError
from ..pixels.segment_train import SegmentTestMetrics, SegmentTrainMetrics
from ..pixels.segmenter import Segmenter, SegmenterTraining, save_segmenter
from ..training.checkpoint import save_checkpoint
from ..training.train import CheckpointDue, TestMetrics, TrainMetrics
from .store import Store

FLUSH_SECONDS = 1.0  # how often buffered per-iteration rows go to the store
RETRY_S = 120.0  # how long a write waits for an unreachable database before the job fails
FIRST_BACKOFF_S, LAST_BACKOFF_S = 0.2, 5.0  # the wait between tries doubles from the first to the last

logger = logging.getLogger(__name__)
Result = TypeVar("Result")


def retrying(what: str, write: Callable[..., Result], *args) -> Result:
    """`write(*args)`, tried again with backoff while the database is unreachable, until RETRY_S have passed; a
    warning says so once per outage, and once more when the write got through. `what` names it in the log."""
    deadline = None
    backoff = FIRST_BACKOFF_S
    while True:
        try:
            result = write(*args)
        except StoreUnavailableError as error:
            now = time.monotonic()
            if deadline is None:
                deadline = now + RETRY_S
                logger.warning("%s: the store cannot be reached (%s); trying again for up to %g s.", what, error,
                               RETRY_S)
            if now + backoff > deadline:
                raise
            time.sleep(backoff)
            backoff = min(2 * backoff, LAST_BACKOFF_S)
            continue
        if deadline is not None:
            logger.warning("%s: the store can be reached again; nothing was lost.", what)
        return result


class Recorder:
    """Writes one job's records to `store`; `run_id` is a run this process executes."""

    def __init__(self, store: Store, run_id: int) -> None:
        self.store, self.run_id = store, run_id
        self.pending: list[dict] = []
        self.last_flush = -math.inf  # the first row goes out at once: a watcher sees the job start

    def _write(self, write: Callable[..., Result], *args) -> Result:
        return retrying(f"Run {self.run_id}", write, self.run_id, *args)

    def start(self, resumed_at_iteration: int) -> None:
        """Forget what an earlier process of this job recorded past the point this one starts from: metric rows
        after its checkpoint, and every result (an experiment measures again from its first step)."""
        self._write(self.store.truncate_metrics, resumed_at_iteration)
        self._write(self.store.clear_results)

    def record(self, metrics: TrainMetrics | TestMetrics | SegmentTrainMetrics | SegmentTestMetrics) -> None:
        # Their fields carry the metric columns' names; what has no column (a test point's IoU per class) is left.
        self.pending.append(asdict(metrics))
        if time.monotonic() - self.last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self._write(self.store.add_metrics, self.pending)
            self.pending = []  # only once written: a failed job still tries to keep them (`fail`)
        self.last_flush = time.monotonic()

    def checkpoint(self, due: CheckpointDue) -> None:
        self._keep(due.iteration, lambda path: save_checkpoint(path, due.checkpoint))

    def segmenter(self, iteration: int, segmenter: Segmenter, training: SegmenterTraining, **metadata) -> None:
        """A segmentation run's model after `iteration` and where its `training` stood (pixels.segmenter's file,
        with JSON-able `metadata`), kept as a checkpoint is, so it travels with the run (`db copy`, a database that
        holds checkpoints) and the run resumes from it."""
        self._keep(iteration, lambda path: save_segmenter(path, segmenter, training, **metadata))

    def _keep(self, iteration: int, save: Callable[[Path], None]) -> None:
        # Rows first: a job resumed from this checkpoint keeps every row up to it and records only what follows.
        self.flush()
        path = self.store.run_dir(self.run_id) / f"checkpoint-{iteration:07d}.safetensors"
        save(path)
        self._write(self.store.add_checkpoint, iteration, path)

    def result(self, step: int, payload: dict) -> None:
        """Step `step` of an experiment (one deleted block, one row of a surface), written as it is measured."""
        self._write(self.store.add_result, step, payload)

    def finish(self, status: str, message: str | None = None) -> None:
        self.flush()
        self._write(self.store.finish, status, message)

    def fail(self, message: str) -> None:
        """Mark the job failed, with the rows recorded so far if they can still be written (a full disk may refuse
        them: the status, a smaller write, is tried on its own). Never raises: the job's own error matters more."""
        for write in (self.flush, lambda: self._write(self.store.finish, "failed", message)):
            try:
                write()
            except Exception as error:
                logger.warning("Run %s: could not record its failure in the store (%s: %s).", self.run_id,
                               type(error).__name__, error)
