"""Training as an iterator of typed records; it knows nothing of where they are kept.

    for record in train(spec, data, recipe, seed=0):
        print(record)  # TrainMetrics every iteration, TestMetrics and CheckpointDue every evaluation, RunEnd last

Iterations are 1-based counts of optimizer steps: a record or checkpoint at iteration i is the state after
i steps. Which images form a batch and how they are augmented depend only on (seed, iteration), and a
`CheckpointDue` holds everything else, so `train(..., resume=due.checkpoint)` yields exactly the records of
iterations i+1, i+2, … that the uninterrupted run yielded (wall-clock speeds and times aside). Keeping records and
checkpoints is the caller's job (`runs.executor` hands them to `runs.recorder`). Under torchrun every rank runs this
loop on its shard of each batch; rank 0 alone evaluates and yields `TestMetrics` and `CheckpointDue`.
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, replace
from typing import Callable, Iterator, Literal

import torch
from torch import nn

from ..errors import CheckpointError, UserError
from ..nets.model import ResNet
from ..nets.specs import NetSpec
from .augment import Pipeline, epoch_order, iteration_generator
from .checkpoint import Checkpoint
from .data import ImageData
from .device import autocast, pick_device, pick_precision
from .evaluate import loss_and_error
from .recipe import SCHEDULES_BY_ITERATION, Recipe, test_stride

SMOOTHING = 0.98  # EMA factor of the smoothed training values: a memory of ~50 iterations


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
class CheckpointDue:
    """Everything needed to continue after `iteration`: due after each evaluation and when a run stops early. Its
    weights and optimizer state are copies on the CPU, so it stays valid while training goes on."""

    iteration: int
    checkpoint: Checkpoint


@dataclass(frozen=True)
class RunEnd:
    iteration: int
    status: Literal["finished", "cancelled", "diverged"]
    message: str = ""


Record = TrainMetrics | TestMetrics | CheckpointDue | RunEnd


def train(spec: NetSpec, data: ImageData, recipe: Recipe, *, seed: int = 0, device: str | None = None,
          precision: str | None = None, compile: bool = False, resume: Checkpoint | None = None,
          should_stop: Callable[[], bool] = lambda: False) -> Iterator[Record]:
    """Train `spec` on `data`; yields a record per iteration and evaluation, a `CheckpointDue` after each evaluation,
    and a `RunEnd` last.

    `resume`: a checkpoint of this spec (a `CheckpointDue`'s, or `load_training_checkpoint`'s) to continue from;
    CheckpointError if it holds another net. `should_stop` is polled every iteration: True ends the run as
    `cancelled` after a final `CheckpointDue`. An exception is raised as it is: the caller records the failure.
    """
    loop = _Loop(spec, data, recipe, seed=seed, device=pick_device(device), compile=compile, resume=resume,
                 should_stop=should_stop, precision=precision)
    yield from loop.run()


def _rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


def _world() -> int:
    return torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1


def _cpu_copy(state):
    """`state` (tensors in dicts and lists, e.g. a state_dict) with every tensor copied to the CPU."""
    if isinstance(state, torch.Tensor):
        return state.detach().to("cpu", copy=True)
    if isinstance(state, dict):
        return {key: _cpu_copy(value) for key, value in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_cpu_copy(value) for value in state)
    return state


class _Loop:
    def __init__(self, spec: NetSpec, data: ImageData, recipe: Recipe, *, seed: int, device: torch.device,
                 precision: str | None, compile: bool, resume: Checkpoint | None,
                 should_stop: Callable[[], bool]) -> None:
        self.spec, self.recipe, self.seed, self.device = spec, recipe, seed, device
        self.precision = pick_precision(device, precision)
        self.should_stop = should_stop
        self.data = data.to(device)
        if len(data.classes) != spec.num_classes:
            raise UserError(f"{spec.name} has {spec.num_classes} outputs but {data.name} has {len(data.classes)} "
                            "classes; build the spec with num_classes matching the data.")
        self.rank, self.world = _rank(), _world()
        if recipe.batch_size % self.world:
            raise UserError(f"The batch size ({recipe.batch_size}) must divide evenly among {self.world} processes.")
        self.iterations_per_epoch = recipe.iterations_per_epoch(len(data.train_labels))
        self.eval_interval = recipe.eval_interval or self.iterations_per_epoch
        self.test_points = recipe.test_points(len(data.train_labels))
        self.test_s_per_image: float | None = None  # measured by the last test pass
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
        self.checkpointed = -1  # the iteration of the last CheckpointDue: a stop right after one needs no other
        self.started = time.monotonic()
        if resume is not None:
            self._load(resume)

    # ---------------------------------------------------------------------------------- state
    def _load(self, checkpoint: Checkpoint) -> None:
        if NetSpec.from_dict(checkpoint.spec) != self.spec:
            raise CheckpointError(f"The checkpoint to resume from (iteration {checkpoint.iteration}) holds a "
                                  f"{checkpoint.spec.get('name')}, not this run's {self.spec.name}.")
        self.model.load_state_dict(checkpoint.model_state)
        if checkpoint.normalization is not None:  # the statistics it trained with, even if its data has changed since
            self.pipeline = replace(self.pipeline, normalization=checkpoint.normalization.to(self.device))
        # Copies of what training updates in place (SGD's momentum buffers on the CPU, the smoothed values): the
        # caller's checkpoint stays as it was, to resume from again.
        self.optimizer.load_state_dict(_cpu_copy(checkpoint.optimizer_state))
        torch.set_rng_state(checkpoint.rng_state)
        state = checkpoint.trainer_state
        self.iteration = checkpoint.iteration
        self.warming_up, self.smoothed = state["warming_up"], dict(state["smoothed"])
        self.elapsed_before = state["elapsed_s"]
        if self.plateau is not None:
            self.plateau.load_state_dict(state["plateau"])

    def _checkpoint_due(self) -> Iterator[CheckpointDue]:
        """The state after this iteration, unless it was just checkpointed; yielded on rank 0 only."""
        if self.checkpointed == self.iteration:
            return
        self.checkpointed = self.iteration
        # Every rank fingerprints its weights (all ranks must join the gather); rank 0 records them so a
        # replica that drifted from the others shows in the checkpoint.
        fingerprints = [self._fingerprint()]
        if self.world > 1:
            fingerprints = [None] * self.world
            torch.distributed.all_gather_object(fingerprints, self._fingerprint())
        if self.rank != 0:
            return
        yield CheckpointDue(self.iteration, Checkpoint(
            spec=self.spec.to_dict(), recipe=self.recipe.to_dict(), iteration=self.iteration,
            model_state=_cpu_copy(self.model.state_dict()), optimizer_state=_cpu_copy(self.optimizer.state_dict()),
            rng_state=torch.get_rng_state(),
            trainer_state=_cpu_copy({"warming_up": self.warming_up, "smoothed": self.smoothed,
                                     "elapsed_s": self._elapsed(),
                                     "plateau": self.plateau.state_dict() if self.plateau else None,
                                     "replica_fingerprints": fingerprints}),
            normalization=self.pipeline.normalization, classes=self.data.classes))

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
            if not math.isfinite(loss):  # no checkpoint: its weights are garbage
                yield RunEnd(self.iteration, "diverged", f"The loss became {loss} at iteration {self.iteration} "
                                                         f"(lr {self._lr():g}); start a new run with a lower --lr.")
                return
            record = self._train_record(loss, error, step_s)
            yield record
            if self.warming_up and record.smoothed_error < self.recipe.warmup_until_train_error:
                self.warming_up = False  # §4.2: back to the full rate once training error is below 80%
            if self.iteration % self.eval_interval == 0 or self.iteration == self.recipe.iterations:
                test = self._test_record()
                if test is not None:
                    yield test
                yield from self._checkpoint_due()
            if stop and self.iteration < self.recipe.iterations:
                yield from self._checkpoint_due()
                yield RunEnd(self.iteration, "cancelled", f"Cancelled at iteration {self.iteration}.")
                return
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
            eta_s=self._eta(step))

    def _test_record(self) -> TestMetrics | None:
        if self.rank != 0:
            return None  # rank 0 evaluates alone; the others go on to the next all-reduce and wait there
        started = time.monotonic()
        images, labels, sizes = self._test_set()
        loss, error = loss_and_error(self.model, images, labels, self.pipeline, precision=self.precision, sizes=sizes)
        self.test_s_per_image = (time.monotonic() - started) / len(labels)
        if self.plateau is not None:
            self.plateau.step(error)
        last = self.smoothed["step_s"] / max(self.smoothed["weight"], 1e-12)
        return TestMetrics(iteration=self.iteration, epoch=(self.iteration - 1) // self.iterations_per_epoch,
                           loss=loss, error=error, lr=self._lr(), images_per_s=self.recipe.batch_size / last,
                           elapsed_s=self._elapsed(), eta_s=self._eta(last), kind=self.data.test_split)

    def _test_set(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The test images of the test point after this iteration: all of them, or the recipe's even stride."""
        data, available = self.data, len(self.data.test_labels)
        if self.recipe.test_images(self.iteration, available) == available:
            return data.test_images, data.test_labels, data.test_sizes
        chosen = slice(0, available, test_stride(self.recipe.intermediate_test_images, available))
        return (data.test_images[chosen], data.test_labels[chosen],
                None if data.test_sizes is None else data.test_sizes[chosen])

    def _eta(self, step_s: float) -> float:
        """Seconds to the end: the remaining steps and the remaining test passes, each at the speed measured so far
        (a test image before the first pass: a third of a training image's step, forward without backward)."""
        per_test_image = self.test_s_per_image or step_s / self.recipe.batch_size / 3
        available = len(self.data.test_labels)
        test_images = sum(self.recipe.test_images(point, available) for point in self.test_points
                          if point > self.iteration)
        return step_s * (self.recipe.iterations - self.iteration) + per_test_image * test_images
