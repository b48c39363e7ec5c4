"""Training as an iterator of typed metric records, mirrored into the run store when one is given.

    for record in train(spec, data, recipe, seed=0):
        print(record)          # TrainMetrics every iteration, TestMetrics every evaluation, RunEnd last

Iterations are 1-based counts of optimizer steps: a record or checkpoint at iteration i is the state after
i steps. Which images form a batch and how they are augmented depend only on (seed, iteration), and a
checkpoint holds everything else, so a run resumed from its checkpoint at iteration i records exactly
iterations i+1, i+2, … again (the metrics a killed process wrote after i are deleted first).
Under torchrun every rank runs this loop on its shard of each batch; only rank 0 writes the store.
"""
from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, Literal

import torch
from torch import nn

from ..errors import CheckpointError, UserError, folder_full_error
from ..nets.model import ResNet
from ..nets.specs import NetSpec
from ..runs.store import Store
from .augment import Pipeline, epoch_order, iteration_generator
from .checkpoint import Checkpoint, load_training_checkpoint, save_checkpoint
from .data import ImageData
from .device import autocast, pick_device, pick_precision
from .evaluate import loss_and_error
from .recipe import SCHEDULES_BY_ITERATION, Recipe

SMOOTHING = 0.98  # EMA factor of the smoothed training values: a memory of ~50 iterations
FLUSH_SECONDS = 1.0  # how often buffered per-iteration rows go to the store

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainMetrics:
    iteration: int
    epoch: int  # 0-based epoch the iteration belongs to
    loss: float  # cross-entropy of this batch, nats
    error: float  # fraction of this batch misclassified
    smoothed_loss: float
    smoothed_error: float
    lr: float
    images_per_s: float
    elapsed_s: float  # training time so far, summed over resumes
    eta_s: float
    kind: Literal["train"] = "train"


@dataclass(frozen=True)
class TestMetrics:
    iteration: int
    epoch: int
    loss: float
    error: float
    lr: float
    images_per_s: float
    elapsed_s: float
    eta_s: float
    kind: Literal["test", "validation"] = "test"


@dataclass(frozen=True)
class RunEnd:
    iteration: int
    status: Literal["finished", "cancelled", "diverged"]
    message: str = ""


Record = TrainMetrics | TestMetrics | RunEnd


def train(spec: NetSpec, data: ImageData, recipe: Recipe, *, seed: int = 0, device: str | None = None,
          precision: str | None = None, compile: bool = False, store: Store | None = None, run_id: int | None = None,
          should_stop: Callable[[], bool] = lambda: False) -> Iterator[Record]:
    """Train `spec` on `data`; yields a record per iteration and evaluation, and a `RunEnd` last.

    With `store` and `run_id` (a run claimed by this process) the records and checkpoints go to the store,
    training continues from the run's latest checkpoint, and the run's status is set when it ends
    (`failed` with the exception's message if one escapes). `should_stop` is polled every iteration:
    True ends the run as `cancelled` after a final checkpoint.
    """
    try:
        loop = _Loop(spec, data, recipe, seed=seed, device=pick_device(device), compile=compile,
                     store=store if _rank() == 0 else None, run_id=run_id, should_stop=should_stop,
                     precision=precision)
    except BaseException as error:  # e.g. a damaged checkpoint: the run must not stay `running`
        if store is not None and run_id is not None and _rank() == 0:
            store.finish(run_id, "failed", f"{type(error).__name__}: {error}")
        raise
    try:
        yield from loop.run()
    except GeneratorExit:  # the caller stopped iterating: keep what was done
        # Only a lone process may checkpoint here: under torchrun the others are not at this point.
        loop.stop("cancelled", "Stopped by its caller.", checkpoint=loop.world == 1)
        raise
    except BaseException as error:
        full = folder_full_error(error, store.home) if store is not None else None
        loop.fail(str(full) if full else f"{type(error).__name__}: {error}")
        if full:
            raise full from error  # a user's problem with one sentence to say, not a bug
        raise


def _rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


def _world() -> int:
    return torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1


class _Loop:
    def __init__(self, spec: NetSpec, data: ImageData, recipe: Recipe, *, seed: int, device: torch.device,
                 precision: str | None, compile: bool, store: Store | None, run_id: int | None,
                 should_stop: Callable[[], bool]) -> None:
        self.spec, self.recipe, self.seed, self.device = spec, recipe, seed, device
        self.precision = pick_precision(device, precision)
        self.store, self.run_id, self.should_stop = store, run_id, should_stop
        self.data = data.to(device)
        if len(data.classes) != spec.num_classes:
            raise UserError(f"{spec.name} has {spec.num_classes} outputs but {data.name} has {len(data.classes)} "
                            "classes; build the spec with num_classes matching the data.")
        self.rank, self.world = _rank(), _world()
        if recipe.batch_size % self.world:
            raise UserError(f"The batch size ({recipe.batch_size}) must divide evenly among {self.world} processes.")
        self.iterations_per_epoch = recipe.iterations_per_epoch(len(data.train_labels))
        self.eval_interval = recipe.eval_interval or self.iterations_per_epoch
        self.pipeline = Pipeline.for_recipe(recipe, self.data, spec.input_size, training=True)

        torch.manual_seed(seed)  # the initial weights; every rank draws the same ones
        self.model = ResNet(spec).to(device).to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                         weight_decay=recipe.weight_decay)
        self.plateau = (torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, factor=1 / recipe.lr_divisor, patience=recipe.plateau_patience)
            if recipe.schedule == "plateau" else None)
        self.forward = self.model
        if self.world > 1:
            self.forward = nn.parallel.DistributedDataParallel(self.model)
        if compile:
            self.forward = torch.compile(self.forward)
        self.loss_fn = nn.CrossEntropyLoss()

        self.iteration = 0
        self.order_epoch, self.order = -1, torch.empty(0, dtype=torch.int64)
        self.warming_up = recipe.warmup_lr is not None
        self.smoothed = {"loss": 0.0, "error": 0.0, "step_s": 0.0, "weight": 0.0}  # bias-corrected EMAs
        self.elapsed_before = 0.0  # seconds trained by earlier processes of this run
        self.pending: list[dict] = []
        self.last_flush = -math.inf  # the first record goes out at once: a watcher sees the run start
        self.ended = False
        self.started = time.monotonic()
        self._resume()

    # ---------------------------------------------------------------------------------- state
    def _resume(self) -> None:
        """Continue from the run's latest checkpoint, if any; under torchrun rank 0 tells the others which."""
        latest = self.store.latest_checkpoint(self.run_id) if self.store is not None else None
        path = [str(latest[1]) if latest else None]
        if self.world > 1:
            torch.distributed.broadcast_object_list(path, src=0)
        if path[0] is not None:
            self._load(Path(path[0]))
        if self.store is not None:
            # Whatever a killed process recorded after its last checkpoint is about to be recorded again.
            self.store.truncate_metrics(self.run_id, self.iteration)

    def _load(self, path: Path) -> None:
        checkpoint = load_training_checkpoint(path)
        if NetSpec.from_dict(checkpoint.spec) != self.spec:
            raise CheckpointError(f"Checkpoint {path} holds a {checkpoint.spec.get('name')}, not this run's "
                                  f"{self.spec.name}.")
        self.model.load_state_dict(checkpoint.model_state)
        if checkpoint.normalization is not None:  # the statistics it trained with, even if its data has changed since
            self.pipeline = replace(self.pipeline, normalization=checkpoint.normalization.to(self.device))
        self.optimizer.load_state_dict(checkpoint.optimizer_state)
        torch.set_rng_state(checkpoint.rng_state)
        state = checkpoint.trainer_state
        self.iteration = checkpoint.iteration
        self.warming_up, self.smoothed, self.elapsed_before = state["warming_up"], state["smoothed"], state["elapsed_s"]
        if self.plateau is not None:
            self.plateau.load_state_dict(state["plateau"])

    def _checkpoint(self) -> None:
        # Every rank fingerprints its weights (all ranks must join the gather); rank 0 records them so a
        # replica that drifted from the others shows in the checkpoint.
        fingerprints = [self._fingerprint()]
        if self.world > 1:
            fingerprints = [None] * self.world
            torch.distributed.all_gather_object(fingerprints, self._fingerprint())
        if self.store is None:
            return
        path = self.store.run_dir(self.run_id) / f"checkpoint-{self.iteration:07d}.safetensors"
        save_checkpoint(path, Checkpoint(
            spec=self.spec.to_dict(), recipe=self.recipe.to_dict(), iteration=self.iteration,
            model_state=self.model.state_dict(), optimizer_state=self.optimizer.state_dict(),
            rng_state=torch.get_rng_state(),
            trainer_state={"warming_up": self.warming_up, "smoothed": self.smoothed, "elapsed_s": self._elapsed(),
                           "plateau": self.plateau.state_dict() if self.plateau else None,
                           "replica_fingerprints": fingerprints},
            normalization=self.pipeline.normalization, classes=self.data.classes))
        self.store.add_checkpoint(self.run_id, self.iteration, path)

    def _fingerprint(self) -> str:
        # Parameters only: BN running statistics are per rank between DDP's broadcasts (as on the paper's
        # GPUs, whose BN was not synchronised); rank 0's go into the checkpoint.
        digest = hashlib.sha256()
        for value in self.model.parameters():
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    # ---------------------------------------------------------------------------------- loop
    def _elapsed(self) -> float:
        return self.elapsed_before + (time.monotonic() - self.started)

    def run(self) -> Iterator[Record]:
        self.model.train()
        while self.iteration < self.recipe.iterations:
            step_started = time.monotonic()
            loss, error, stop = self._step()
            self.iteration += 1
            step_s = time.monotonic() - step_started
            if not math.isfinite(loss):
                message = (f"The loss became {loss} at iteration {self.iteration} (lr {self._lr():g}); "
                           "start a new run with a lower --lr.")
                self.stop("diverged", message, checkpoint=False)
                yield RunEnd(self.iteration, "diverged", message)
                return
            record = self._train_record(loss, error, step_s)
            self._record(record)
            yield record
            if self.warming_up and record.smoothed_error < self.recipe.warmup_until_train_error:
                self.warming_up = False  # §4.2: back to the full rate once training error is below 80%
            if self.iteration % self.eval_interval == 0 or self.iteration == self.recipe.iterations:
                test = self._test_record()
                if test is not None:
                    self._record(test)
                    yield test
                self._checkpoint()
                self._flush()
            if stop and self.iteration < self.recipe.iterations:
                self.stop("cancelled", f"Cancelled at iteration {self.iteration}.")
                yield RunEnd(self.iteration, "cancelled", f"Cancelled at iteration {self.iteration}.")
                return
        self._end("finished")
        yield RunEnd(self.iteration, "finished")

    def _lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def _step(self) -> tuple[float, float, bool]:
        if self.recipe.schedule in SCHEDULES_BY_ITERATION:
            for group in self.optimizer.param_groups:
                group["lr"] = self.recipe.lr_at(self.iteration, self.warming_up)
        epoch, position = divmod(self.iteration, self.iterations_per_epoch)
        batch = self.recipe.batch_size
        if self.order_epoch != epoch:  # a 50k permutation per epoch, not per iteration
            self.order, self.order_epoch = epoch_order(len(self.data.train_labels), self.seed, epoch), epoch
        indices = self.order[position * batch:(position + 1) * batch][self.rank::self.world].to(self.device)
        generator = iteration_generator(self.seed, self.iteration)
        sizes = None if self.data.train_sizes is None else self.data.train_sizes[indices]
        images = self.pipeline.train_batch(self.data.train_images[indices], generator, sizes)
        images = images.contiguous(memory_format=torch.channels_last)  # (B, 3, H, W), NHWC in memory
        labels = self.data.train_labels[indices]
        with autocast(self.device, self.precision):
            logits = self.forward(images)
            loss = self.loss_fn(logits.float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        error = (logits.argmax(-1) != labels).float().mean()
        # Ranks agree on the reported values and on stopping, so none waits forever for a step another skipped.
        summary = torch.stack([loss.detach().float(), error, torch.tensor(float(self.should_stop()),
                                                                          device=loss.device)])
        if self.world > 1:
            torch.distributed.all_reduce(summary)
            summary[:2] /= self.world
        loss_value, error_value, stop = summary.tolist()
        return loss_value, error_value, stop > 0

    def _train_record(self, loss: float, error: float, step_s: float) -> TrainMetrics:
        smoothed = self.smoothed
        smoothed["weight"] = SMOOTHING * smoothed["weight"] + (1 - SMOOTHING)
        for key, value in (("loss", loss), ("error", error), ("step_s", step_s)):
            smoothed[key] = SMOOTHING * smoothed[key] + (1 - SMOOTHING) * value
        step = smoothed["step_s"] / smoothed["weight"]
        return TrainMetrics(
            iteration=self.iteration, epoch=(self.iteration - 1) // self.iterations_per_epoch, loss=loss, error=error,
            smoothed_loss=smoothed["loss"] / smoothed["weight"], smoothed_error=smoothed["error"] / smoothed["weight"],
            lr=self._lr(), images_per_s=self.recipe.batch_size / step, elapsed_s=self._elapsed(),
            eta_s=step * (self.recipe.iterations - self.iteration))

    def _test_record(self) -> TestMetrics | None:
        if self.rank != 0:
            return None  # rank 0 evaluates alone; the others go on to the next all-reduce and wait there
        loss, error = loss_and_error(self.model, self.data.test_images, self.data.test_labels, self.pipeline,
                                     precision=self.precision, sizes=self.data.test_sizes)
        if self.plateau is not None:
            self.plateau.step(error)
        last = self.smoothed["step_s"] / max(self.smoothed["weight"], 1e-12)
        return TestMetrics(iteration=self.iteration, epoch=(self.iteration - 1) // self.iterations_per_epoch,
                           loss=loss, error=error, lr=self._lr(), images_per_s=self.recipe.batch_size / last,
                           elapsed_s=self._elapsed(), eta_s=last * (self.recipe.iterations - self.iteration),
                           kind=self.data.test_split)

    # ---------------------------------------------------------------------------------- store
    def _record(self, record: TrainMetrics | TestMetrics) -> None:
        if self.store is None:
            return
        self.pending.append(asdict(record))
        if time.monotonic() - self.last_flush > FLUSH_SECONDS:
            self._flush()

    def _flush(self) -> None:
        if self.store is not None:
            self.store.add_metrics(self.run_id, self.pending)
        self.pending = []
        self.last_flush = time.monotonic()

    def _end(self, status: str, message: str | None = None) -> None:
        self._flush()
        if self.store is not None and not self.ended:
            self.store.finish(self.run_id, status, message)
        self.ended = True

    def stop(self, status: str, message: str, checkpoint: bool = True) -> None:
        """End early but cleanly: keep every recorded row and, unless the weights are garbage, a checkpoint."""
        if self.ended:
            return
        if checkpoint and self.iteration > 0:
            self._checkpoint()
        self._end(status, message)

    def fail(self, message: str) -> None:
        """Mark the run failed, with the rows recorded so far if they can still be written (a full disk may
        refuse them: the status, a smaller write, is tried on its own)."""
        if not self.ended and self.store is not None:
            for write in (self._flush, lambda: self.store.finish(self.run_id, "failed", message)):
                try:
                    write()
                except Exception as error:  # the store itself may be what failed; the original error matters more
                    logger.warning("Run %s: could not record its failure in the store (%s: %s).", self.run_id,
                                   type(error).__name__, error)
        self.ended = True
