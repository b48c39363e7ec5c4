"""Wall times of planned work on this server, from the speeds measured here (`book`).

    conditions = here()
    speed = speed_of(get_spec("resnet56"), conditions, book.measurements())
    run_seconds(recipe, speed, train_images=50_000, test_images=10_000)

A net's speed is the average of its latest finished runs under the same conditions; without one, the calibration's
two nets (`calibrate.CALIBRATION_NETS`) give every other net by its mult-adds: a step's time per image is linear in
them for the CIFAR nets (their three stages cost alike per layer), and roughly so beyond.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass
from functools import lru_cache

from ..nets.specs import NetSpec, get_spec
from ..training.recipe import Recipe
from .book import CALIBRATION, Conditions, Measurement

RECENT_RUNS = 3  # a net's speed: the mean of its last few finished runs here


@dataclass(frozen=True)
class Speed:
    train_images_per_s: float
    test_images_per_s: float
    overhead_s: float
    basis: str  # where it comes from, for people: "2 finished runs of resnet56 here", "this server's calibration"


def here() -> Conditions:
    """The conditions the app's runs train under on this server: its device, precision, threads and slots."""
    from ..runs import settings
    from ..training.device import pick_device, pick_precision

    device = pick_device()
    return Conditions(device=device.type, precision=pick_precision(device), threads=settings.threads_per_run(),
                      slots=settings.max_concurrent_runs())


@lru_cache(maxsize=None)
def mult_adds(spec: NetSpec) -> float:
    """Mult-adds of one image's forward pass, counted on the meta device (no memory, no compute)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ..nets.model import ResNet

    with torch.device("meta"):
        model = ResNet(spec)
        with FlopCounterMode(display=False) as counter:
            model(torch.empty(1, 3, spec.input_size, spec.input_size))
    return counter.get_total_flops() / 2  # a multiply-add is two of its FLOPs


def speed_of(spec: NetSpec, conditions: Conditions, found: list[Measurement]) -> Speed | None:
    """`spec`'s speed under `conditions` from this machine's measurements `found` (oldest first); None when there
    is neither a finished run of it nor a calibration under these conditions."""
    if (measured := run_speed(spec.name, conditions, found)) is not None:
        return measured
    calibrated = {m.net: m for m in found if m.source == CALIBRATION and m.measured_under(conditions)}
    if len(calibrated) < 2:
        return None
    ranked = sorted(((m, mult_adds(get_spec(m.net))) for m in calibrated.values()), key=lambda pair: pair[1])
    (low, low_cost), (high, high_cost) = ranked[0], ranked[-1]

    def interpolated(rate: str) -> float:
        low_s, high_s = 1 / getattr(low, rate), 1 / getattr(high, rate)  # seconds per image
        slope = (high_s - low_s) / (high_cost - low_cost)
        return 1 / max(low_s + slope * (mult_adds(spec) - low_cost), 1e-9)

    return Speed(interpolated("train_images_per_s"), interpolated("test_images_per_s"),
                 max(low.overhead_s, high.overhead_s), basis="this server's calibration")


def run_speed(name: str, conditions: Conditions, found: list[Measurement]) -> Speed | None:
    """The speed of the last few finished runs measured as `name` (a net's, or pixels.jobs.speed_name's for a
    segmenter) under `conditions`; None when there is none."""
    runs = [m for m in found if m.source != CALIBRATION and m.matches(name, conditions)][-RECENT_RUNS:]
    if not runs:
        return None
    return Speed(*(sum(getattr(m, key) for m in runs) / len(runs)
                   for key in ("train_images_per_s", "test_images_per_s", "overhead_s")),
                 basis=f"{len(runs)} finished run{'s' * (len(runs) > 1)} of {name} here")


def run_seconds(recipe: Recipe, speed: Speed, *, train_images: int, test_images: int) -> float:
    """Wall time of a whole run of `recipe` on data of `train_images` / `test_images` (validation images held out
    are part of the training images), at `speed`."""
    trained_on = train_images - recipe.validation_images
    tested_on = recipe.validation_images or test_images
    tested = sum(recipe.test_images(point, tested_on) for point in recipe.test_points(trained_on))
    return (speed.overhead_s + recipe.iterations * recipe.batch_size / speed.train_images_per_s
            + tested / speed.test_images_per_s)


def makespan(durations: list[float], slots: int) -> float:
    """Wall time of runs of these `durations` started in this order on `slots` slots (a free slot takes the next)."""
    free_at = [0.0] * max(1, slots)
    for duration in durations:
        heapq.heappush(free_at, heapq.heappop(free_at) + duration)
    return max(free_at)


def describe_seconds(seconds: float) -> str:
    """ "45 s", "6 min", "1.5 h": how long, rounded as people say it."""
    if seconds < 90:
        return f"{max(1, round(seconds / 5) * 5):.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min" if seconds >= 600 else f"{seconds / 60:.1f} min".replace(".0 min", " min")
    return f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class Estimate:
    """How long planned runs take here, started together on `slots` slots."""

    seconds: float
    runs: int
    slots: int
    basis: str  # the speeds' `basis`, for people

    def describe(self) -> str:
        """ "about 6 min on this server, both runs at once" """
        if self.runs == 1:
            together = "one run"
        elif self.runs <= self.slots:
            together = "both runs at once" if self.runs == 2 else f"all {self.runs} runs at once"
        else:
            together = f"{self.runs} runs, {self.slots} at a time"
        return f"about {describe_seconds(self.seconds)} on this server, {together}"


def estimate_planned(planned: list[tuple[NetSpec, Recipe]], conditions: Conditions, found: list[Measurement], *,
                     train_images: int, test_images: int) -> Estimate | None:
    """The wall time of `planned` runs (admission.planned_runs) started together here; None while a net's speed is
    unknown (no calibration yet)."""
    speeds = [speed_of(spec, conditions, found) for spec, _ in planned]
    if not planned or None in speeds:
        return None
    durations = [run_seconds(recipe, speed, train_images=train_images, test_images=test_images)
                 for (_, recipe), speed in zip(planned, speeds)]
    bases = sorted({speed.basis for speed in speeds})
    return Estimate(makespan(durations, conditions.slots), len(planned), conditions.slots, "; ".join(bases))


def estimate_experiments(specs: list[NetSpec], images: list[int], conditions: Conditions,
                         found: list[Measurement]) -> Estimate | None:
    """The wall time of experiments (a lesion study, a landscape) on `specs`, each pushing `images` images through its
    net (`explain.jobs.images_through`), started together here; None while a net's speed is unknown."""
    speeds = [speed_of(spec, conditions, found) for spec in specs]
    if not specs or None in speeds:
        return None
    durations = [speed.overhead_s + count / speed.test_images_per_s for speed, count in zip(speeds, images)]
    return Estimate(makespan(durations, conditions.slots), len(specs), conditions.slots,
                    "; ".join(sorted({speed.basis for speed in speeds})))
