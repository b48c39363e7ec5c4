"""Each preset's length on this server: the longest that fits the demo's time budget, and never shorter than the
length its effect was measured to need (`presets.Preset.minimum_iterations`).

    for length in preset_lengths(home):        # calibrates first if this server was never measured
        print(length.preset.label, length.iterations, length.estimated_s, length.reason())
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from ..nets.specs import get_spec
from ..presets import PRESETS, Preset
from ..runs.admission import SOURCE_SIZES, SOURCE_TEST_SIZES
from ..training.recipe import training_recipe
from . import book
from .book import Conditions, Measurement
from .calibrate import calibrate
from .estimate import Estimate, describe_seconds, estimate_planned, here

LENGTH_STEP = 50  # iterations: a length people read at a glance
LONGEST = 63_950  # below §4.2's 64k, from which on a run trains with the paper's recipe instead of the short-run rule
PRESET_DATA = "cifar10"  # the presets' effects were measured on CIFAR-10


@dataclass(frozen=True)
class PresetLength:
    preset: Preset
    iterations: int  # the length picked for this server
    estimated_s: float  # the preset's runs at `iterations`, started together here
    minimum_s: float  # the same at the preset's minimum length
    budget_s: float
    basis: str  # where the speeds come from

    @property
    def fits(self) -> bool:
        return self.estimated_s <= self.budget_s

    def reason(self) -> str:
        """Why this length, in one sentence for the Train page."""
        budget = describe_seconds(self.budget_s)
        minimum = f"{self.preset.minimum_iterations:,} iterations"
        if not self.fits:
            return (f"Even {minimum}, the shortest at which its effect showed in every seed measured, take about "
                    f"{describe_seconds(self.estimated_s)} here: over the {budget} budget "
                    "($RESNET_EXPLORER_DEMO_MINUTES), so plan for the longer time.")
        return (f"{self.iterations:,} iterations: the longest that fit the {budget} budget here (about "
                f"{describe_seconds(self.estimated_s)}); its effect showed in every seed measured from {minimum} on.")

    def to_dict(self) -> dict:
        return {"label": self.preset.label, "nets": list(self.preset.nets), "iterations": self.iterations,
                "minimum_iterations": self.preset.minimum_iterations, "estimated_s": round(self.estimated_s, 1),
                "minimum_estimated_s": round(self.minimum_s, 1), "budget_s": self.budget_s, "fits": self.fits,
                "reason": self.reason(), "speeds": self.basis}


def preset_recipes(preset: Preset, iterations: int) -> list[tuple]:
    """What the preset's runs train at `iterations`: the Train page's Start with its defaults on CIFAR-10."""
    train_images = SOURCE_SIZES[PRESET_DATA][1]
    return [(spec, training_recipe(spec, iterations=iterations, train_images=train_images))
            for spec in map(get_spec, preset.nets)]


def preset_estimate(preset: Preset, iterations: int, conditions: Conditions,
                    found: list[Measurement]) -> Estimate | None:
    return estimate_planned(preset_recipes(preset, iterations), conditions, found,
                            train_images=SOURCE_SIZES[PRESET_DATA][1], test_images=SOURCE_TEST_SIZES[PRESET_DATA])


def fit(preset: Preset, conditions: Conditions, found: list[Measurement], budget_s: float) -> PresetLength | None:
    """`preset`'s length under `conditions` with the speeds `found`; None while a speed is unknown."""
    shortest = preset_estimate(preset, preset.minimum_iterations, conditions, found)
    if shortest is None:
        return None
    low, high = preset.minimum_iterations, LONGEST  # the estimate grows with the length: halve the interval
    if shortest.seconds <= budget_s:
        low = max(low, low // LENGTH_STEP * LENGTH_STEP)
        while high - low >= LENGTH_STEP:
            middle = (low + high) // 2 // LENGTH_STEP * LENGTH_STEP
            if middle <= low:
                break
            if preset_estimate(preset, middle, conditions, found).seconds <= budget_s:
                low = middle
            else:
                high = middle
    picked = preset_estimate(preset, low, conditions, found)
    return PresetLength(preset, low, picked.seconds, shortest.seconds, budget_s, picked.basis)


def preset_lengths(home: str | os.PathLike | None = None, *, budget_s: float | None = None,
                   conditions: Conditions | None = None) -> list[PresetLength]:
    """Every preset's length on this server within `budget_s` (default $RESNET_EXPLORER_DEMO_MINUTES), measuring
    the server first (`calibrate`, ~20 s) when no speed of it is known yet."""
    from ..runs import settings

    conditions = conditions or here()
    budget_s = budget_s if budget_s is not None else 60 * settings.demo_minutes()
    found = book.measurements(home)
    lengths = [fit(preset, conditions, found, budget_s) for preset in PRESETS]
    if None in lengths:
        calibrate(conditions, home)
        found = book.measurements(home)
        lengths = [fit(preset, conditions, found, budget_s) for preset in PRESETS]
    return lengths
