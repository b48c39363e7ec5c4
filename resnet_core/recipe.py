"""The paper's training recipes as one frozen dataclass, with units, and their short-run scaling."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

from .errors import UserError
from .specs import NetSpec

Augmentation = Literal["pad-crop", "scale-crop"]
Schedule = Literal["milestones", "plateau"]


@dataclass(frozen=True)
class Recipe:
    """How to train; the defaults are §4.2's CIFAR-10 recipe.

    Iterations are optimizer steps over `batch_size` images (all ranks together under torchrun).
    """

    batch_size: int = 128  # images per iteration
    lr: float = 0.1  # initial learning rate
    momentum: float = 0.9
    weight_decay: float = 1e-4  # L2 on every parameter, as the paper's Caffe setup
    iterations: int = 64_000  # when training stops
    schedule: Schedule = "milestones"
    lr_milestones: tuple[int, ...] = (32_000, 48_000)  # iterations at which the lr is divided
    lr_divisor: float = 10.0
    # ResNet-110 (§4.2): "0.01 to warm up the training until the training error is below 80% (about 400
    # iterations), and then go back to 0.1". None: no warm-up.
    warmup_lr: float | None = None
    warmup_until_train_error: float = 0.80  # fraction, on the smoothed training error
    # ImageNet (§3.4): "divided by 10 when the error plateaus"; evaluations without improvement before dividing.
    plateau_patience: int = 5
    augmentation: Augmentation = "pad-crop"  # pad 4 + crop + flip (§4.2), or scale jitter + crop + flip (§3.4)
    scale_range: tuple[int, int] = (256, 480)  # pixels, shorter side, for "scale-crop"
    per_pixel_mean: bool = False  # §3.4 subtracts a mean image; §4.2 normalises per channel
    eval_interval: int | None = None  # iterations between test evaluations and checkpoints; None: every epoch
    validation_images: int = 0  # training images held out for evaluation (§4.2 uses 5000 for its analysis)

    def __post_init__(self) -> None:
        for name in ("batch_size", "iterations"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise UserError(f"{name} must be a whole number of at least 1; got {getattr(self, name)!r}.")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise UserError(f"The learning rate must be a positive number; got {self.lr!r}.")
        if self.eval_interval is not None and self.eval_interval < 1:
            raise UserError(f"The evaluation interval must be at least 1 iteration; got {self.eval_interval!r}.")

    def lr_at(self, iteration: int, warming_up: bool = False) -> float:
        """The milestone schedule's learning rate for `iteration` (0-based)."""
        if warming_up and self.warmup_lr is not None:
            return self.warmup_lr
        passed = sum(iteration >= milestone for milestone in self.lr_milestones)
        return self.lr / self.lr_divisor ** passed

    def shortened(self, *, iterations: int | None = None, epochs: int | None = None,
                  train_images: int | None = None) -> "Recipe":
        """The same schedule over `iterations`, or `epochs` of `train_images`: milestones keep their place at
        50% and 75% of the run, as 32k and 48k are of 64k."""
        if (iterations is None) == (epochs is None):
            raise UserError("Give either a number of epochs or a number of iterations, not both.")
        if epochs is not None:
            if not isinstance(epochs, int) or epochs < 1:
                raise UserError(f"epochs must be a whole number of at least 1; got {epochs!r}.")
            iterations = epochs * self.iterations_per_epoch(train_images)
        if not isinstance(iterations, int) or iterations < 1:
            raise UserError(f"iterations must be a whole number of at least 1; got {iterations!r}.")
        milestones = tuple(round(iterations * m / self.iterations) for m in self.lr_milestones)
        return dataclasses.replace(self, iterations=iterations, lr_milestones=milestones)

    def iterations_per_epoch(self, train_images: int) -> int:
        # The last incomplete batch is dropped; the next epoch's shuffle brings those images back.
        if train_images < self.batch_size:
            raise UserError(f"The batch size ({self.batch_size}) must not exceed the {train_images} training images.")
        return train_images // self.batch_size

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Recipe":
        data = dict(data)
        for key in ("lr_milestones", "scale_range"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


# §3.4: batch 256, lr 0.1 divided by 10 on plateaus, up to 60e4 iterations, weight decay 1e-4, momentum 0.9.
IMAGENET_RECIPE = Recipe(batch_size=256, iterations=600_000, schedule="plateau", lr_milestones=(),
                         augmentation="scale-crop", per_pixel_mean=True)
# Warm-up applies from ResNet-110 on; the paper names 110, and deeper CIFAR nets only get harder to start.
WARMUP_FROM_DEPTH = 110


def paper_recipe(spec: NetSpec) -> Recipe:
    """§3.4's recipe for ImageNet nets, §4.2's for CIFAR nets (with the 0.01 warm-up from ResNet-110 on)."""
    if spec.family == "imagenet":
        return IMAGENET_RECIPE
    if spec.depth >= WARMUP_FROM_DEPTH:
        return Recipe(warmup_lr=0.01)
    return Recipe()
