"""The Train page's presets: the paper's comparisons as pairs, each with a length that shows its effect.

Lengths were measured (benchmarks/bench_phenomena.py, docs/SHORT_RUNS.md): on a 2-core CPU with both runs of the
pair training at once, each pair ends within about 5 minutes and shows its effect in every seed tried.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    label: str  # the button's text
    nets: tuple[str, ...]
    iterations: int  # default length, batches of 128
    look_for: str  # one line under the curves: what the pair shows

    @property
    def key(self) -> str:
        return "train_preset_" + "_".join(self.nets)


PAIR_ITERATIONS = 450  # the 56-layer pairs' wall time, test points included, within 5 minutes

PRESETS = (
    Preset("Fig. 1: plain-20 vs plain-56", ("plain20", "plain56"), PAIR_ITERATIONS,
           "Degradation (Fig. 1): plain-56's training error stays above plain-20's. The deeper net is not "
           "overfitting; it trains worse, on the training set itself."),
    Preset("Shortcuts: plain-56 vs ResNet-56", ("plain56", "resnet56"), PAIR_ITERATIONS,
           "The cure (Fig. 6): the same 56 layers with shortcuts train far better than without; the gap opens "
           "within the first hundred iterations and keeps growing."),
    Preset("Fig. 6: ResNet-20 vs ResNet-56", ("resnet20", "resnet56"), PAIR_ITERATIONS,
           "Deeper is no longer worse once residual (Fig. 6, right): ResNet-56 keeps pace with ResNet-20 instead "
           "of falling behind as plain-56 does."),
    *(Preset(f"{depth} layers", (f"plain{depth}", f"resnet{depth}"), PAIR_ITERATIONS,
             f"Plain against residual at {depth} layers (Fig. 6): the deeper the pair, the wider the gap between "
             "the plain net's training error and the residual one's.")
      for depth in (8, 20, 32, 44)),
    # ~2x ResNet-56's step time: 200 iterations and 5 test points take about 5 minutes on one thread.
    Preset("ResNet-110 alone", ("resnet110",), 200,
           "ResNet-110 (Table 6): the paper warms it up at 0.01 because 0.1 is too large to start; here it "
           "ramps up like every net of a short run."),
)


DEFAULT = next(preset for preset in PRESETS if preset.nets == ("plain20", "resnet20"))  # the Train page's first pair


def matching(nets: Sequence[str]) -> Preset | None:
    """The preset of exactly these nets, in any order."""
    return next((preset for preset in PRESETS if sorted(preset.nets) == sorted(nets)), None)
