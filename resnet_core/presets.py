"""The demo's presets: the paper's comparisons as short runs, each with the effect it must show.

A preset trains its nets at once (one run per net, the Train page's pair). Its `effect` is what a class should see at
the end: one net's final smoothed training error above another's by at least a margin. `minimum_iterations` is the
shortest length at which that effect held in every seed measured (`benchmarks/bench_phenomena.py --lengths …`, three
seeds on the CIFAR-10 JPEG copy; docs/SHORT_RUNS.md). How long a preset trains on a given server is chosen by
`resnet_core.speed.fit` from the speeds measured there.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

CHANCE_ERROR = 0.9  # CIFAR-10's ten classes: a net that has learned nothing is wrong 90 % of the time


@dataclass(frozen=True)
class Effect:
    """`worse`'s final smoothed training error minus `better`'s is at least `margin` (negative: a tolerance).
    `worse` None compares `better` with chance: a lone net must learn."""

    worse: str | None
    better: str
    margin: float

    def gap(self, errors: Mapping[str, float]) -> float:
        return (CHANCE_ERROR if self.worse is None else errors[self.worse]) - errors[self.better]

    def shown(self, errors: Mapping[str, float]) -> bool:
        # To the third decimal, as the errors are reported: a gap printed as the margin meets it.
        return round(self.gap(errors), 3) >= self.margin

    def describe(self) -> str:
        worse = "chance" if self.worse is None else self.worse
        return f"{worse} − {self.better} ≥ {self.margin:+.2f}"


@dataclass(frozen=True)
class Preset:
    label: str  # the button's text
    nets: tuple[str, ...]
    look_for: str  # one line under the curves: what the pair shows
    effect: Effect
    minimum_iterations: int  # measured: the shortest length whose effect held in every seed (docs/SHORT_RUNS.md)

    @property
    def key(self) -> str:
        return "train_preset_" + "_".join(self.nets)


PRESETS = (
    Preset("Fig. 1: plain-20 vs plain-56", ("plain20", "plain56"),
           "Degradation (Fig. 1): plain-56's training error stays above plain-20's. The deeper net is not "
           "overfitting; it trains worse, on the training set itself.",
           Effect("plain56", "plain20", 0.05), 150),
    Preset("Shortcuts: plain-56 vs ResNet-56", ("plain56", "resnet56"),
           "The cure (Fig. 6): the same 56 layers with shortcuts train far better than without; the gap opens "
           "within the first hundred iterations and keeps growing.",
           Effect("plain56", "resnet56", 0.10), 150),
    Preset("Fig. 6: ResNet-20 vs ResNet-56", ("resnet20", "resnet56"),
           "Deeper is no longer worse once residual (Fig. 6, right): ResNet-56 keeps pace with ResNet-20 instead "
           "of falling behind as plain-56 does.",
           Effect("resnet20", "resnet56", -0.02), 450),
    # The depth pairs show their effect together: the gap grows with depth. Alone, the 8-layer pair is level
    # (its plain net may even lead), and each deeper pair's residual net must lead by a growing margin. The 20-layer
    # nets were measured at 150-450 iterations with the presets above; the others at 300 only.
    *(Preset(f"{depth} layers", (f"plain{depth}", f"resnet{depth}"),
             f"Plain against residual at {depth} layers (Fig. 6): the deeper the pair, the wider the gap between "
             "the plain net's training error and the residual one's.",
             Effect(f"plain{depth}", f"resnet{depth}", margin), minimum)
      for depth, margin, minimum in ((8, -0.05, 300), (20, 0.0, 150), (32, 0.03, 300), (44, 0.05, 300))),
    Preset("ResNet-110 alone", ("resnet110",),
           "ResNet-110 (Table 6): the paper warms it up at 0.01 because 0.1 is too large to start; here it "
           "ramps up like every net of a short run.",
           Effect(None, "resnet110", 0.20), 300),
)

DEFAULT = next(preset for preset in PRESETS if preset.nets == ("plain20", "resnet20"))  # the Train page's first pair


def matching(nets: Sequence[str]) -> Preset | None:
    """The preset of exactly these nets, in any order."""
    return next((preset for preset in PRESETS if sorted(preset.nets) == sorted(nets)), None)


def by_label(label: str) -> Preset:
    return next(preset for preset in PRESETS if preset.label == label)
