"""The paper's training recipes as one frozen dataclass, with units, and their short-run scaling."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

from ..errors import UserError
from ..nets.specs import NetSpec

Augmentation = Literal["pad-crop", "scale-crop"]
# milestones: ÷lr_divisor at each milestone (§4.2); plateau: ÷lr_divisor when the test error stalls (§3.4);
# linear-decay: after the warm-up, down in a straight line to (almost) 0 at the last iteration (the short-run rule).
Schedule = Literal["milestones", "plateau", "linear-decay"]
SCHEDULES_BY_ITERATION = ("milestones", "linear-decay")  # lr_at gives their rate; a plateau's depends on the tests
NORMALIZATIONS = ("per-pixel", "per-channel")  # Recipe.normalization's values


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
    # Linear warm-up (Goyal et al. 2017, §2.2): the lr rises from lr/N to lr over the first N iterations. 0: none.
    # §4.2 has none; the short-run rule (training_recipe) uses it.
    warmup_iterations: int = 0
    # ImageNet (§3.4): "divided by 10 when the error plateaus"; evaluations without improvement before dividing.
    plateau_patience: int = 5
    augmentation: Augmentation = "pad-crop"  # pad 4 + crop + flip (§4.2), or scale jitter + crop + flip (§3.4)
    scale_range: tuple[int, int] = (256, 480)  # pixels, shorter side, for "scale-crop"
    # §4.2 "with the per-pixel mean subtracted" and §3.4 (AlexNet's mean image): the training images' mean image is
    # subtracted. False: per-channel mean/std normalisation (the reference nets', and every run's before this was).
    per_pixel_mean: bool = True
    eval_interval: int | None = None  # iterations between test evaluations and checkpoints; None: every epoch
    # Test images of a test point before the last (an even stride through the test set); the last test point uses
    # them all. None: every test point uses them all. A short run's curve needs no 10,000-image passes in between:
    # each costs 5-17 s of a few CPU minutes (docs/SHORT_RUNS.md).
    intermediate_test_images: int | None = None
    validation_images: int = 0  # training images held out for evaluation (§4.2 uses 5000 for its analysis)

    def __post_init__(self) -> None:
        for name in ("batch_size", "iterations"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise UserError(f"{name} must be a whole number of at least 1; got {getattr(self, name)!r}.")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise UserError(f"The learning rate must be a positive number; got {self.lr!r}.")
        if not isinstance(self.warmup_iterations, int) or self.warmup_iterations < 0:
            raise UserError(f"warmup_iterations must be a whole number of at least 0; got {self.warmup_iterations!r}.")
        if self.schedule == "linear-decay" and self.warmup_iterations >= self.iterations:
            raise UserError(f"A linear decay needs iterations after the warm-up; got {self.warmup_iterations} of "
                            f"{self.iterations}.")
        if self.intermediate_test_images is not None and self.intermediate_test_images < 1:
            raise UserError(f"A test point needs at least 1 image; got {self.intermediate_test_images!r}.")
        if self.eval_interval is not None and self.eval_interval < 1:
            raise UserError(f"The evaluation interval must be at least 1 iteration; got {self.eval_interval!r}.")

    def lr_at(self, iteration: int, warming_up: bool = False) -> float:
        """The learning rate for `iteration` (0-based) of a schedule in SCHEDULES_BY_ITERATION."""
        if warming_up and self.warmup_lr is not None:
            return self.warmup_lr
        if iteration < self.warmup_iterations:
            return self.lr * (iteration + 1) / self.warmup_iterations
        if self.schedule == "linear-decay":
            return self.lr * (self.iterations - iteration) / (self.iterations - self.warmup_iterations)
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

    def test_points(self, train_images: int) -> list[int]:
        """The iterations after which a run of this recipe on `train_images` tests (and saves a checkpoint)."""
        interval = self.eval_interval or self.iterations_per_epoch(train_images)
        return [*range(interval, self.iterations, interval), self.iterations]

    def test_images(self, iteration: int, available: int) -> int:
        """How many of the `available` test images the test point after `iteration` evaluates."""
        if iteration >= self.iterations or self.intermediate_test_images is None:
            return available
        return len(range(0, available, test_stride(self.intermediate_test_images, available)))

    def iterations_per_epoch(self, train_images: int) -> int:
        # The last incomplete batch is dropped; the next epoch's shuffle brings those images back.
        if train_images < self.batch_size:
            raise UserError(f"The batch size ({self.batch_size}) must not exceed the {train_images} training images.")
        return train_images // self.batch_size

    @property
    def normalization(self) -> str:
        """`per-pixel` or `per-channel` (NORMALIZATIONS)."""
        return "per-pixel" if self.per_pixel_mean else "per-channel"

    @property
    def kind(self) -> str:
        """`short` for the short-run rule's schedule (`training_recipe`), else `paper`."""
        return "short" if self.schedule == "linear-decay" else "paper"

    def describe(self) -> str:
        """One line for people, e.g. "Short-run recipe: 450 iterations of 128; lr rising linearly to 0.1 over
        the first 270 iterations, then falling linearly to 0 at the end"."""
        if self.warmup_iterations:
            start = f"lr rising linearly to {self.lr:g} over the first {self.warmup_iterations:,} iterations"
        elif self.warmup_lr is not None:
            start = (f"lr {self.warmup_lr:g} until the training error is below "
                     f"{100 * self.warmup_until_train_error:g} %, then {self.lr:g}")
        else:
            start = f"lr {self.lr:g}"
        if self.schedule == "plateau":
            steps = f"÷{self.lr_divisor:g} when the test error stops improving"
        elif self.schedule == "linear-decay":
            steps = "falling linearly to 0 at the end"
        elif self.lr_milestones:
            steps = f"÷{self.lr_divisor:g} at " + " and ".join(f"{milestone:,}" for milestone in self.lr_milestones)
        else:
            steps = "held to the end"
        name = "Short-run recipe" if self.kind == "short" else "Paper's recipe"
        return f"{name}: {self.iterations:,} iterations of {self.batch_size}; {start}, then {steps}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Recipe":
        data = dict(data)
        for key in ("lr_milestones", "scale_range"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


def test_stride(wanted: int, available: int) -> int:
    """The step of the even stride that takes about `wanted` of `available` test images: every class is in it
    even where the images are stored class by class (an image folder)."""
    return max(1, available // wanted)


# §3.4: batch 256, lr 0.1 divided by 10 on plateaus, up to 60e4 iterations, weight decay 1e-4, momentum 0.9.
IMAGENET_RECIPE = Recipe(batch_size=256, iterations=600_000, schedule="plateau", lr_milestones=(),
                         augmentation="scale-crop")
# Warm-up applies from ResNet-110 on; the paper names 110, and deeper CIFAR nets only get harder to start.
WARMUP_FROM_DEPTH = 110

# The short-run rule (docs/SHORT_RUNS.md has the measurements). A run of a few hundred iterations is all start, and
# at lr 0.1 ResNet-56's first steps blow up (loss 2.9 -> 12) and leave it at chance for hundreds of iterations, so a
# short run would show the opposite of Fig. 6. Every net of a shortened CIFAR run, plain or residual, therefore ramps
# its lr up linearly to 0.1 (Goyal et al. 2017) and then anneals it linearly to 0 by its last iteration: the smooth
# form of §4.2's two divisions by 10, which in a run this short would stop learning halfway (measured).
# §4.2's full 64k-iteration recipe stays exactly the paper's.
RECIPE_KINDS = ("short", "paper")
SHORT_RUN_WARMUP_ITERATIONS = 300  # or the first 60 % of a run shorter than 500; 100 was too short for ResNet-56
SHORT_RUN_WARMUP_SHARE = 0.6
TEST_POINTS = 5  # test evaluations in a run shorter than 5 epochs: each costs 5-17 s of a few minutes on a CPU
# The test points before a short run's last evaluate this many images (an even stride through the test set): the
# curve's test error within about ±1 point (binomial, n = 2,000), at a fifth of a full pass's cost on CIFAR-10.
SHORT_RUN_INTERMEDIATE_TEST_IMAGES = 2_000


def paper_recipe(spec: NetSpec) -> Recipe:
    """§3.4's recipe for ImageNet nets, §4.2's for CIFAR nets (with the 0.01 warm-up from ResNet-110 on)."""
    if spec.family == "imagenet":
        return IMAGENET_RECIPE
    if spec.depth >= WARMUP_FROM_DEPTH:
        return Recipe(warmup_lr=0.01)
    return Recipe()


def default_recipe_kind(spec: NetSpec, iterations: int) -> str:
    """`short` for a CIFAR run shorter than §4.2's 64k iterations, `paper` otherwise."""
    return "short" if spec.family == "cifar" and iterations < paper_recipe(spec).iterations else "paper"


def training_recipe(spec: NetSpec, *, iterations: int | None = None, epochs: int | None = None,
                    train_images: int, kind: str | None = None, batch_size: int | None = None,
                    lr: float | None = None, eval_interval: int | None = None,
                    validation_images: int | None = None, normalization: str | None = None) -> Recipe:
    """The recipe a run of `spec` trains with: the one rule behind the CLI, the app and `runs.admission.submit_all`.

    The paper's recipe for the net, with the given settings (None: the recipe's own), scaled to `iterations` or
    `epochs` of `train_images` (the data's training images, before `validation_images` are held out). `kind`
    (`RECIPE_KINDS`; default `default_recipe_kind`) `short` applies the short-run rule above; `paper` keeps the
    paper's schedule as it is. `normalization` (`NORMALIZATIONS`) names how images are normalised: by default the
    paper's per-pixel mean, but per channel in a short run. Unless given, the test interval is once per epoch, or
    TEST_POINTS times in a shorter run (ImageNet's plateau schedule counts evaluations, so it keeps one per epoch).
    """
    overrides = {key: value for key, value in (("batch_size", batch_size), ("lr", lr), ("eval_interval", eval_interval),
                                               ("validation_images", validation_images)) if value is not None}
    if normalization is not None:
        if normalization not in NORMALIZATIONS:
            raise UserError(f"Unknown normalisation {normalization!r}; allowed: {', '.join(NORMALIZATIONS)}.")
        overrides["per_pixel_mean"] = normalization == "per-pixel"
    recipe = Recipe.from_dict({**paper_recipe(spec).to_dict(), **overrides})
    if recipe.validation_images and not 0 < recipe.validation_images < train_images:  # as ImageData's split says
        raise UserError(f"The validation split must hold between 1 and {train_images - 1} images; got "
                        f"{recipe.validation_images}.")
    trained_on = train_images - recipe.validation_images
    recipe.iterations_per_epoch(trained_on)  # refuses a batch larger than the training images, before any run exists
    recipe = recipe.shortened(iterations=iterations, epochs=epochs, train_images=trained_on)
    kind = kind or default_recipe_kind(spec, recipe.iterations)
    if kind not in RECIPE_KINDS:
        raise UserError(f"Unknown recipe {kind!r}; allowed: {', '.join(RECIPE_KINDS)}.")
    if kind == "short" and recipe.schedule == "plateau":
        raise UserError(f"The short-run recipe is for CIFAR nets; {spec.name} trains with §3.4's recipe "
                        "(--recipe paper).")
    if kind == "short":
        warmup = min(SHORT_RUN_WARMUP_ITERATIONS, math.floor(SHORT_RUN_WARMUP_SHARE * recipe.iterations))
        # The ramp replaces ResNet-110's 0.01 warm-up too: one start for every net of a short run.
        # Per channel unless told: the short runs' effects (degradation, its cure) were measured so, in every seed
        # (docs/SHORT_RUNS.md); §4.2's per-pixel mean is the full recipe's, not yet measured in a short run.
        recipe = dataclasses.replace(recipe, schedule="linear-decay", lr_milestones=(), warmup_lr=None,
                                     warmup_iterations=warmup,
                                     intermediate_test_images=SHORT_RUN_INTERMEDIATE_TEST_IMAGES,
                                     per_pixel_mean=normalization == "per-pixel" if normalization else False)
    if recipe.eval_interval is None and recipe.schedule in SCHEDULES_BY_ITERATION:
        per_epoch = recipe.iterations_per_epoch(trained_on)
        recipe = dataclasses.replace(recipe, eval_interval=min(per_epoch, -(-recipe.iterations // TEST_POINTS)))
    return recipe
