"""One function runs every job to its end, whoever launched it: a training run, a lesion study, a loss landscape, a
segmentation run.

    outcome = execute(store, run_id, should_stop=stop_asked)   # the job was taken by this process
    print(f"run {run_id} {outcome}")                           # "run 3 finished at iteration 450"

It reads the job from the store, loads what it needs, runs it (`training.train`, `explain.jobs` or `pixels.jobs`),
hands every record to the job's `Recorder`, and ends the job's status; a `LeaseKeeper` renews the job's lease
meanwhile and turns a cancel asked for in the store into a stop. Launchers (the CLI's `train` and `segment train`,
`runs.job` for the queue's processes and warm spares) only take the job and call this.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..errors import UserError, folder_full_error
from ..explain.jobs import experiment_steps
from ..nets.specs import NetSpec
from ..pixels.jobs import KIND as SEGMENT, SegmentationJob, speed_name
from ..pixels.segment_train import SegmentCheckpointDue
from ..speed import book as speed_book
from ..speed.meter import RunMeter
from ..training.checkpoint import load_training_checkpoint
from ..training.data import ImageData, load_data, storage
from ..training.device import pick_device
from ..training.recipe import Recipe
from ..training.train import CheckpointDue, Record, RunEnd, train
from .lease import LeaseKeeper
from .recorder import Recorder
from .schema import Run, Status
from .settings import lease_renew_seconds
from .store import Store

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """How a job ended: its final status and message, and how far it got (`done` `unit`s)."""

    status: str  # finished, cancelled or diverged; a failed job raises instead
    message: str
    done: int
    unit: str  # "iteration" of a training run, "step" of an experiment

    def __str__(self) -> str:
        return f"{self.status} at {self.unit} {self.done}" + (f": {self.message}" if self.message else "")


@dataclass(frozen=True)
class _TrainingJob:
    """What every rank needs to train a run; under torchrun rank 0 reads it from the store and sends it."""

    spec: dict
    recipe: dict
    source: str
    seed: int
    precision: str
    home: Path
    checkpoint: Path | None  # the latest checkpoint, to resume from


def execute(store: Store | None, run_id: int, *, should_stop: Callable[[], bool] = lambda: False,
            device: str | None = None, compile: bool = False, data: ImageData | None = None,
            on_event: Callable[[Record], None] | None = None) -> Outcome:
    """Run job `run_id`, which this process has taken (`Store.confirm`, or created or resumed `taken_by` it), to its
    end and record it; how it ended.

    `should_stop` (e.g. a signal) and a cancel in the store both stop it cleanly: a training run after a final
    checkpoint, an experiment after its current step. An exception fails the job with its message (a UserError's
    own sentence, a full data folder's DataFolderFullError, raised in its place) and is raised. A training run takes
    `device`, `compile`, `data` already loaded by the caller (the CLI reads a new run's data before recording it),
    and calls `on_event` with each of `train`'s records; a segmentation run takes `device` and `data` (the scenes'
    source) and calls `on_event` with each of `train_segmentation`'s. Under torchrun every rank calls this: rank 0
    with the store, the others with None, which train their share and record nothing.
    """
    if store is None:
        return _train(_shared(None), None, should_stop, device, compile, data, on_event)
    run = store.run(run_id)
    recorder = Recorder(store, run_id)
    with LeaseKeeper(store.home, run_id, lease_renew_seconds()) as lease:
        def stop() -> bool:
            return should_stop() or lease.stop_requested

        try:
            if run.kind == SEGMENT:
                outcome = _segment(run, store, recorder, stop, device or run.device, data, on_event)
            elif run.experiment is not None:
                outcome = _measure(run, store.home, recorder, stop)
            else:
                job = _shared(_training_job(store, run))
                # The device the run was queued for: a CPU run must not take a GPU it did not ask for (a cluster's
                # GPU machine shares its GPUs between the runs that did).
                outcome = _train(job, recorder, stop, device or run.device, compile, data, on_event)
            recorder.finish(outcome.status, outcome.message or None)
        except BaseException as error:
            full = folder_full_error(error, store.home)
            reason = full or error
            recorder.fail(str(reason) if isinstance(reason, UserError) else f"{type(reason).__name__}: {reason}")
            if full:
                raise full from error  # a user's problem with one sentence to say, not a bug
            raise
    return outcome


def _training_job(store: Store, run: Run) -> _TrainingJob:
    latest = store.latest_checkpoint(run.id)
    return _TrainingJob(spec=run.spec, recipe=run.recipe, source=run.data, seed=run.seed, precision=run.precision,
                        home=store.home, checkpoint=latest[1] if latest else None)


def _shared(job: _TrainingJob | None) -> _TrainingJob:
    """Rank 0's job on every rank of a torchrun (the others pass None); the job itself in a lone process."""
    if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        box = [job]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]
    return job


def _train(job: _TrainingJob, recorder: Recorder | None, should_stop: Callable[[], bool], device: str | None,
           compile: bool, data: ImageData | None, on_event: Callable[[Record], None] | None) -> Outcome:
    spec, recipe = NetSpec.from_dict(job.spec), Recipe.from_dict(job.recipe)
    started = time.monotonic()
    if data is None:  # e.g. a folder deleted or changed since, or CIFAR offline: a UserError says why
        data = load_data(job.source, **storage(spec.family, spec.input_size), home=job.home)
    if recipe.validation_images:
        data = data.with_validation_split(recipe.validation_images, job.seed)
    resume = load_training_checkpoint(job.checkpoint) if job.checkpoint else None
    meter = None
    if recorder is not None:
        recorder.start(resume.iteration if resume else 0)
        meter = RunMeter(recorder.run_id, spec.name, recipe, test_images=len(data.test_labels),
                         device=pick_device(device).type, precision=job.precision, threads=torch.get_num_threads(),
                         started=None if resume else started)
    for event in train(spec, data, recipe, seed=job.seed, device=device, precision=job.precision, compile=compile,
                       resume=resume, should_stop=should_stop):
        if meter is not None:
            meter.see(event)
        if on_event is not None:
            on_event(event)
        if isinstance(event, RunEnd):  # always the last
            end = event
        elif recorder is None:  # a rank after the first: rank 0 records
            pass
        elif isinstance(event, CheckpointDue):
            recorder.checkpoint(event)
        else:
            recorder.record(event)
    if meter is not None:
        _add_to_speed_book(meter, job.home)
    return Outcome(end.status, end.message, end.iteration, "iteration")


def _add_to_speed_book(meter: RunMeter, home: Path) -> None:
    """What the run measured, for the estimates of later work on this machine; a run that could not record it has
    still trained, so a failure only warns."""
    measurement = meter.measurement()
    if measurement is None:
        return
    try:
        speed_book.record([measurement], home)
    except OSError as error:
        logger.warning("Run %s: its speeds could not be added to %s (%s).", meter.run_id, home, error)


def _measure(run: Run, home: Path, recorder: Recorder, should_stop: Callable[[], bool]) -> Outcome:
    recorder.start(0)
    steps = 0
    for steps, payload in enumerate(experiment_steps(run, home), start=1):
        recorder.result(steps - 1, payload)
        if should_stop():
            return Outcome(Status.CANCELLED, f"Cancelled after {steps} steps; resume it to measure again from the "
                                             "start.", steps, "step")
    return Outcome(Status.FINISHED, "", steps, "step")


def _segment(run: Run, store: Store, recorder: Recorder, should_stop: Callable[[], bool], device: str | None,
             data: ImageData | None, on_event: Callable[[Record], None] | None) -> Outcome:
    started = time.monotonic()
    latest = store.latest_checkpoint(run.id)
    job = SegmentationJob(run, store.home, data, checkpoint=latest[1] if latest else None)
    recorder.start(job.resumed_at)
    meter = RunMeter(run.id, speed_name(run), Recipe.from_dict(run.recipe), test_images=len(job.scenes.test_masks),
                     device=pick_device(device).type, precision=run.precision, threads=torch.get_num_threads(),
                     started=None if job.resumed_at else started)
    for event in job.train(device=device, should_stop=should_stop):
        meter.see(event)
        if on_event is not None:
            on_event(event)
        if isinstance(event, RunEnd):  # always the last
            end = event
        elif isinstance(event, SegmentCheckpointDue):
            recorder.segmenter(event.iteration, event.segmenter, event.training, **job.metadata())
        else:
            recorder.record(event)
    _add_to_speed_book(meter, store.home)
    return Outcome(end.status, end.message, end.iteration, "iteration")
