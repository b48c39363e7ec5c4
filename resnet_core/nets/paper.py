"""The paper's published numbers, to show beside what `resnet_core` computes and trains.

Errors are percentages as printed in the paper; FLOPs are Table 1's multiply-adds.
"""
from __future__ import annotations

from dataclasses import dataclass

from .specs import NetSpec


@dataclass(frozen=True)
class PaperFact:
    table: str
    quantity: str
    value: float
    unit: str
    note: str = ""


# Table 1, bottom row: multiply-adds for one 224x224 image. Plain twins have the same cost (§4.1).
TABLE1_MULT_ADDS = {18: 1.8e9, 34: 3.6e9, 50: 3.8e9, 101: 7.6e9, 152: 11.3e9}
# Table 2: top-1 error (%, 10-crop testing) on ImageNet validation.
TABLE2_TOP1 = {("plain", 18): 27.94, ("plain", 34): 28.54, ("resnet", 18): 27.88, ("resnet", 34): 25.03}
# Table 3: (top-1, top-5) error (%, 10-crop testing) on ImageNet validation; ResNet-34 per shortcut option.
TABLE3 = {
    ("plain", 34, None): (28.54, 10.02),
    ("resnet", 34, "A"): (25.03, 7.76),
    ("resnet", 34, "B"): (24.52, 7.46),
    ("resnet", 34, "C"): (24.19, 7.40),
    ("resnet", 50, "B"): (22.85, 6.71),
    ("resnet", 101, "B"): (21.75, 6.05),
    ("resnet", 152, "B"): (21.43, 5.71),
}
# Table 4: (top-1, top-5) error (%) of single models on ImageNet validation (multi-scale, fully convolutional).
TABLE4 = {
    ("resnet", 34, "B"): (21.84, 5.71),
    ("resnet", 34, "C"): (21.53, 5.60),
    ("resnet", 50, "B"): (20.74, 5.25),
    ("resnet", 101, "B"): (19.87, 4.60),
    ("resnet", 152, "B"): (19.38, 4.49),
}
# Table 6: parameters and CIFAR-10 test error (%): one run each, but ResNet-110's is the best of 5 (mean 6.61 ± 0.16).
TABLE6 = {20: (0.27e6, 8.75), 32: (0.46e6, 7.51), 44: (0.66e6, 7.17), 56: (0.85e6, 6.97), 110: (1.7e6, 6.43),
          1202: (19.4e6, 7.93)}


def paper_facts(spec: NetSpec) -> list[PaperFact]:
    """The published numbers that apply to exactly this net (empty for custom nets)."""
    kind = "resnet" if spec.residual else "plain"
    depth = spec.depth
    if spec.name != f"{kind}{depth}":
        return []
    facts: list[PaperFact] = []
    if spec.family == "cifar":
        if spec.residual and spec.shortcut == "A" and depth in TABLE6 and spec.num_classes == 10:
            params, error = TABLE6[depth]
            facts += [PaperFact("Table 6", "parameters", params, "count"),
                      PaperFact("Table 6", "CIFAR-10 test error", error, "%",
                                "best of 5 runs (mean 6.61 ± 0.16)" if depth == 110 else "one run")]
        return facts
    if spec.variant == "paper" and depth in TABLE1_MULT_ADDS:
        facts.append(PaperFact("Table 1", "mult-adds (the paper's \"FLOPs\")", TABLE1_MULT_ADDS[depth], "count"))
    if spec.num_classes != 1000:
        return facts
    if (kind, depth) in TABLE2_TOP1 and (not spec.residual or spec.shortcut == "A"):
        facts.append(PaperFact("Table 2", "ImageNet top-1 error", TABLE2_TOP1[kind, depth], "%", "10-crop testing"))
    for table, results, note in (("Table 3", TABLE3, "10-crop testing"), ("Table 4", TABLE4, "single model")):
        key = (kind, depth, spec.shortcut if spec.residual else None)
        if key in results:
            top1, top5 = results[key]
            facts += [PaperFact(table, "ImageNet top-1 error", top1, "%", note),
                      PaperFact(table, "ImageNet top-5 error", top5, "%", note)]
    return facts
