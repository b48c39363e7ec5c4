"""Training a segmenter on scenes as an iterator of typed records, and its evaluation; it knows nothing of where
records are kept.

    segmenter = load_backbone(build_segmenter("resnet56", len(scenes.classes)), "reference:resnet56")
    for record in train_segmentation(segmenter, scenes, iterations=300, seed=0):
        print(record)  # SegmentTrainMetrics every iteration, SegmentTestMetrics and SegmentCheckpointDue at each test
                       # point, RunEnd last
    evaluate_segmentation(segmenter, scenes).to_dict()  # pixel accuracy, mIoU, IoU per class, background share

As training.train does: iterations are 1-based counts of optimizer steps; which scenes form a batch and which of them
are flipped depend only on (seed, iteration); SGD with momentum 0.9 and weight decay 1e-4 (§3.4, §4.2); the lr of
the short-run rule (training.recipe: a linear warm-up, then a linear decay to 0 at the last iteration), which starts
a deep net's run without blowing it up. The segmenter is trained in place, on the device: its weights are the
result. The records' fields carry the names of the store's metric columns (`error` is the pixel error), so a
recorder keeps them as it keeps a classifier's. After each test point, and before a cancelled run ends, a
`SegmentCheckpointDue` says where the run stands; `resume=due.training` with the segmenter as it was then yields
exactly the records that followed (the batches and flips depend only on the seed and the iteration).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Literal

import torch
from torch import nn

from ..errors import UserError
from ..training.augment import Normalization, epoch_order, iteration_generator
from ..training.device import autocast, pick_device, pick_precision
from ..training.recipe import Recipe, test_stride, training_recipe
from ..training.train import SMOOTHING, RunEnd
from .scenes import Scenes, Split
from .scores import SegmentationScores, confusion, segmentation_scores
from .segmenter import Segmenter, SegmenterSpec, SegmenterTraining

# A fine-tuning rate (the backbone starts trained, the classifier at zero): torchvision's segmentation reference
# fine-tunes its FCNs at 0.02, on batches of 32. Not yet tuned on these scenes.
DEFAULT_LR = 0.02
DEFAULT_BATCH_SIZE = 64  # scenes per iteration
EVAL_BATCH_SIZE = 100  # scenes per forward pass of an evaluation


@dataclass(frozen=True)
class SegmentTrainMetrics:
    iteration: int
    epoch: int  # 0-based pass over the train scenes the iteration belongs to
    loss: float  # mean cross-entropy over this batch's pixels, nats
    error: float  # fraction of this batch's pixels misclassified
    smoothed_loss: float
    smoothed_error: float
    lr: float
    images_per_s: float  # scenes per second
    elapsed_s: float
    eta_s: float
    kind: Literal["train"] = "train"


@dataclass(frozen=True)
class SegmentTestMetrics:
    iteration: int
    epoch: int
    loss: float  # mean cross-entropy over the evaluated test scenes' pixels, nats
    error: float  # fraction of their pixels misclassified: 1 - pixel accuracy
    miou: float  # see scores: the mean over the classes present in targets or predictions
    iou: tuple[float, ...]  # per class of the scenes, in label order; NaN for a class in neither
    lr: float
    images_per_s: float  # training scenes per second, as SegmentTrainMetrics's
    elapsed_s: float
    eta_s: float
    kind: Literal["test"] = "test"

    @property
    def pixel_accuracy(self) -> float:
        return 1 - self.error


@dataclass(frozen=True)
class SegmentCheckpointDue:
    """Save the segmenter now, with `training`, to go on from here: the loop waits until the consumer returns."""

    iteration: int
    segmenter: Segmenter  # the one being trained, on its device: saved as it is, not copied
    training: SegmenterTraining
    kind: Literal["checkpoint"] = "checkpoint"


SegmentRecord = SegmentTrainMetrics | SegmentTestMetrics | SegmentCheckpointDue | RunEnd


@dataclass(frozen=True)
class SegmentationReport:
    """A segmenter's scores on a split of scenes, as `segment evaluate --json` prints them (to_dict)."""

    data: str  # the scenes' source dataset
    split: str
    scenes: int
    loss: float  # mean cross-entropy per pixel, nats
    scores: SegmentationScores

    def to_dict(self) -> dict:
        return {"data": self.data, "split": self.split, "scenes": self.scenes, "loss": self.loss,
                **self.scores.to_dict()}


def segmentation_recipe(spec: SegmenterSpec, train_scenes: int, *, iterations: int,
                        batch_size: int = DEFAULT_BATCH_SIZE, lr: float = DEFAULT_LR,
                        eval_interval: int | None = None) -> Recipe:
    """The recipe a segmentation run trains with: the short-run rule for its backbone (training_recipe), over
    `train_scenes`, with its test points (TEST_POINTS of them unless `eval_interval` says otherwise). One-line
    UserError for a batch larger than the scenes, or counts that are not whole numbers of at least 1."""
    return training_recipe(spec.backbone, iterations=iterations, train_images=train_scenes, kind="short",
                           batch_size=batch_size, lr=lr, eval_interval=eval_interval)


def scene_normalization(scenes: Scenes) -> Normalization:
    """Per channel, with the train scenes' statistics ([0, 1] units): how a segmenter whose backbone records no
    normalisation (a random one, an old checkpoint) sees its input."""
    sums, squares = torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    for chunk in scenes.train_images.split(256):  # float64 copies of 10,000 scenes at once would cost 1 GB
        pixels = chunk.cpu().double() / 255
        sums += pixels.sum(dim=(0, 2, 3))
        squares += pixels.pow(2).sum(dim=(0, 2, 3))
    count = scenes.train_images.numel() // 3
    mean = sums / count
    return Normalization("per-channel", mean.float(), (squares / count - mean.pow(2)).sqrt().float())


def train_segmentation(segmenter: Segmenter, scenes: Scenes, *, iterations: int,
                       batch_size: int = DEFAULT_BATCH_SIZE, lr: float = DEFAULT_LR, seed: int = 0,
                       device: str | None = None, precision: str | None = None, eval_interval: int | None = None,
                       should_stop: Callable[[], bool] = lambda: False,
                       resume: SegmenterTraining | None = None) -> Iterator[SegmentRecord]:
    """Train `segmenter` on `scenes` in place; yields a record per iteration, a test record and a checkpoint due at
    each test point, and a `RunEnd` last.

    A segmenter without a normalisation gets `scene_normalization(scenes)`, kept on it so its evaluation sees what
    it trained on. A frozen backbone (`freeze_backbone`) stays as it is; only the head learns. `should_stop` is polled
    every iteration: True ends the run as `cancelled`, after a checkpoint due. `resume`: a checkpoint due's
    `training`, `segmenter` holding the weights saved with it. One-line UserError for scenes of another number of
    classes than the segmenter's or a canvas it cannot segment, before any step.
    """
    loop = _Loop(segmenter, scenes, iterations=iterations, batch_size=batch_size, lr=lr, seed=seed,
                 device=pick_device(device), precision=precision, eval_interval=eval_interval, should_stop=should_stop,
                 resume=resume)
    yield from loop.run()


def _check_fits(segmenter: Segmenter, scenes: Scenes) -> None:
    spec = segmenter.spec
    if len(scenes.classes) != spec.classes:
        raise UserError(f"{spec.name} scores {spec.classes} classes but the scenes of {scenes.source} have "
                        f"{len(scenes.classes)} (the background and {len(scenes.classes) - 1}); build it with "
                        f"classes={len(scenes.classes)}.")
    if scenes.layout.canvas % spec.output_stride:
        raise UserError(f"{spec.name} segments images whose sides are multiples of {spec.output_stride} pixels; the "
                        f"scenes' canvas is {scenes.layout.canvas}.")


class _Loop:
    def __init__(self, segmenter: Segmenter, scenes: Scenes, *, iterations: int, batch_size: int, lr: float,
                 seed: int, device: torch.device, precision: str | None, eval_interval: int | None,
                 should_stop: Callable[[], bool], resume: SegmenterTraining | None) -> None:
        _check_fits(segmenter, scenes)
        train_count = len(scenes.train_masks)
        self.recipe = segmentation_recipe(segmenter.spec, train_count, iterations=iterations, batch_size=batch_size,
                                          lr=lr, eval_interval=eval_interval)
        self.seed, self.device, self.should_stop = seed, device, should_stop
        self.precision = pick_precision(device, precision)
        if segmenter.normalization is None:
            segmenter.normalization = scene_normalization(scenes)
        self.normalization = segmenter.normalization.to(device)
        self.scenes = scenes.to(device)
        self.model = segmenter.to(device).to(memory_format=torch.channels_last)
        # Only what learns: a frozen backbone's parameters are neither stepped nor decayed.
        self.optimizer = torch.optim.SGD([p for p in self.model.parameters() if p.requires_grad], lr=self.recipe.lr,
                                         momentum=self.recipe.momentum, weight_decay=self.recipe.weight_decay)
        self.loss_fn = nn.CrossEntropyLoss()
        self.iterations_per_epoch = self.recipe.iterations_per_epoch(train_count)
        self.test_points = self.recipe.test_points(train_count)
        self.iteration = 0
        self.order_epoch, self.order = -1, torch.empty(0, dtype=torch.int64)
        self.smoothed = {"loss": 0.0, "error": 0.0, "step_s": 0.0, "weight": 0.0}  # bias-corrected EMAs
        self.test_s_per_scene: float | None = None  # measured by the last test pass
        self.elapsed_before = 0.0  # seconds trained by earlier processes of this run
        self.checkpointed = -1  # the iteration of the last checkpoint due: a stop right after one needs no other
        self.started = time.monotonic()
        if resume is not None:
            self.optimizer.load_state_dict(resume.optimizer_state)
            self.iteration = self.checkpointed = resume.iteration
            self.smoothed = dict(resume.trainer_state["smoothed"])
            self.elapsed_before = resume.trainer_state["elapsed_s"]

    def run(self) -> Iterator[SegmentRecord]:
        self.model.train()
        while self.iteration < self.recipe.iterations:
            step_started = time.monotonic()
            loss, error = self._step()
            self.iteration += 1
            step_s = time.monotonic() - step_started
            if not math.isfinite(loss):
                yield RunEnd(self.iteration, "diverged", f"The loss became {loss} at iteration {self.iteration} "
                                                         f"(lr {self._lr():g}); start a new run with a lower lr.")
                return
            yield self._train_record(loss, error, step_s)
            if self.iteration in self.test_points:
                yield self._test_record()
                yield from self._checkpoint_due()
            if self.should_stop() and self.iteration < self.recipe.iterations:
                yield from self._checkpoint_due()
                yield RunEnd(self.iteration, "cancelled", f"Cancelled at iteration {self.iteration}.")
                return
        yield RunEnd(self.iteration, "finished")  # after the last iteration's test point and checkpoint

    def _checkpoint_due(self) -> Iterator[SegmentCheckpointDue]:
        if self.checkpointed == self.iteration:
            return
        self.checkpointed = self.iteration
        yield SegmentCheckpointDue(self.iteration, self.model, SegmenterTraining(
            self.iteration, self.optimizer.state_dict(),
            {"smoothed": dict(self.smoothed), "elapsed_s": self._elapsed()}))

    def _lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def _step(self) -> tuple[float, float]:
        for group in self.optimizer.param_groups:
            group["lr"] = self.recipe.lr_at(self.iteration)
        epoch, position = divmod(self.iteration, self.iterations_per_epoch)
        batch = self.recipe.batch_size
        if self.order_epoch != epoch:  # a permutation per epoch, not per iteration
            self.order, self.order_epoch = epoch_order(len(self.scenes.train_masks), self.seed, epoch), epoch
        indices = self.order[position * batch:(position + 1) * batch].to(self.device)
        images, masks = flip_together(self.scenes.train_images[indices], self.scenes.train_masks[indices],
                                      iteration_generator(self.seed, self.iteration))
        inputs = self.normalization(images).contiguous(memory_format=torch.channels_last)  # (B, 3, H, W)
        masks = masks.long()  # (B, H, W)
        with autocast(self.device, self.precision):
            logits = self.model(inputs)  # (B, classes, H, W)
            loss = self.loss_fn(logits.float(), masks)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        error = (logits.argmax(1) != masks).float().mean()
        return loss.item(), error.item()

    def _train_record(self, loss: float, error: float, step_s: float) -> SegmentTrainMetrics:
        smoothed = self.smoothed
        smoothed["weight"] = SMOOTHING * smoothed["weight"] + (1 - SMOOTHING)
        for key, value in (("loss", loss), ("error", error), ("step_s", step_s)):
            smoothed[key] = SMOOTHING * smoothed[key] + (1 - SMOOTHING) * value
        step = smoothed["step_s"] / smoothed["weight"]
        return SegmentTrainMetrics(
            iteration=self.iteration, epoch=(self.iteration - 1) // self.iterations_per_epoch, loss=loss, error=error,
            smoothed_loss=smoothed["loss"] / smoothed["weight"], smoothed_error=smoothed["error"] / smoothed["weight"],
            lr=self._lr(), images_per_s=self.recipe.batch_size / step, elapsed_s=self._elapsed(),
            eta_s=self._eta(step))

    def _test_record(self) -> SegmentTestMetrics:
        started = time.monotonic()
        images, masks = self._test_set()
        matrix, loss = confusion_and_loss(self.model, images, masks, self.normalization, self.precision)
        self.test_s_per_scene = (time.monotonic() - started) / len(masks)
        scores = segmentation_scores(matrix, self.scenes.classes)
        step = self.smoothed["step_s"] / self.smoothed["weight"]
        return SegmentTestMetrics(
            iteration=self.iteration, epoch=(self.iteration - 1) // self.iterations_per_epoch, loss=loss,
            error=1 - scores.pixel_accuracy, miou=scores.miou, iou=tuple(scores.iou.values()), lr=self._lr(),
            images_per_s=self.recipe.batch_size / step, elapsed_s=self._elapsed(), eta_s=self._eta(step))

    def _test_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The test scenes of the test point after this iteration: all of them, or the recipe's even stride."""
        images, masks = self.scenes.split("test")
        available = len(masks)
        if self.recipe.test_images(self.iteration, available) == available:
            return images, masks
        chosen = slice(0, available, test_stride(self.recipe.intermediate_test_images, available))
        return images[chosen], masks[chosen]

    def _elapsed(self) -> float:
        return self.elapsed_before + (time.monotonic() - self.started)

    def _eta(self, step_s: float) -> float:
        """Seconds to the end: the remaining steps and test passes at the speeds measured so far (a test scene before
        the first pass: a third of a training scene's step, forward without backward)."""
        per_test_scene = self.test_s_per_scene or step_s / self.recipe.batch_size / 3
        available = len(self.scenes.test_masks)
        test_scenes = sum(self.recipe.test_images(point, available) for point in self.test_points
                          if point > self.iteration)
        return step_s * (self.recipe.iterations - self.iteration) + per_test_scene * test_scenes


def flip_together(images: torch.Tensor, masks: torch.Tensor,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Half the scenes, and their masks with them, mirrored left to right: (B, 3, H, W) and (B, H, W). A scene's
    labels are where its pixels are, so a flip that moved one without the other would teach wrong answers."""
    flips = (torch.rand(len(images), generator=generator) < 0.5).to(images.device)
    return (torch.where(flips[:, None, None, None], images.flip(-1), images),
            torch.where(flips[:, None, None], masks.flip(-1), masks))


@torch.no_grad()
def confusion_and_loss(segmenter: Segmenter, images: torch.Tensor, masks: torch.Tensor,
                       normalization: Normalization, precision: str = "fp32",
                       batch_size: int = EVAL_BATCH_SIZE) -> tuple[torch.Tensor, float]:
    """The confusion matrix (scores.confusion) of `segmenter`'s predictions for uint8 `images` against `masks`,
    and its mean cross-entropy per pixel, in eval mode (its mode is restored after)."""
    was_training = segmenter.training
    segmenter.eval()
    classes = segmenter.spec.classes
    matrix = torch.zeros(classes, classes, dtype=torch.int64, device=masks.device)
    total_loss = 0.0
    try:
        for start in range(0, len(images), batch_size):
            inputs = normalization(images[start:start + batch_size]).contiguous(memory_format=torch.channels_last)
            target = masks[start:start + batch_size].long()
            with autocast(inputs.device, precision):
                logits = segmenter(inputs).float()  # (b, classes, H, W)
            total_loss += nn.functional.cross_entropy(logits, target, reduction="sum").item()
            matrix += confusion(logits.argmax(1), target, classes)
    finally:
        segmenter.train(was_training)
    return matrix, total_loss / masks.numel()


def evaluate_segmentation(segmenter: Segmenter, scenes: Scenes, *, split: Split = "test", device: str | None = None,
                          precision: str | None = None) -> SegmentationReport:
    """`segmenter`'s scores on `split` of `scenes`, with the normalisation it trained with (the scenes' statistics
    if it has none), on `device`; the segmenter is moved there."""
    _check_fits(segmenter, scenes)
    target = pick_device(device)
    normalization = (segmenter.normalization or scene_normalization(scenes)).to(target)
    images, masks = (part.to(target) for part in scenes.split(split))
    matrix, loss = confusion_and_loss(segmenter.to(target), images, masks, normalization,
                                      pick_precision(target, precision))
    return SegmentationReport(scenes.source, split, len(masks), loss, segmentation_scores(matrix, scenes.classes))

