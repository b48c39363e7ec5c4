"""The one table that describes every network of He et al. (2015), and the rules for custom ones.

A `NetSpec` is everything needed to build a net; `model.ResNet` is built from it and reports it
back as `model.spec`. Plain nets are the same spec with `residual=False`.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Literal

Family = Literal["cifar", "imagenet"]
BlockKind = Literal["basic", "bottleneck"]
Shortcut = Literal["A", "B", "C"]
Variant = Literal["paper", "torchvision"]

FAMILIES = ("cifar", "imagenet")
BLOCK_KINDS = ("basic", "bottleneck")
SHORTCUTS = ("A", "B", "C")
VARIANTS = ("paper", "torchvision")
# Output channels of a block per unit of stage width (torchvision's `expansion`).
EXPANSION = {"basic": 1, "bottleneck": 4}
# Weighted layers per block: two 3x3 convs, or 1x1-3x3-1x1.
LAYERS_PER_BLOCK = {"basic": 2, "bottleneck": 3}
# Option A for CIFAR (§4.2: "identity shortcuts in all cases"), option B for ImageNet (§3.3).
DEFAULT_SHORTCUT = {"cifar": "A", "imagenet": "B"}
STEM_WIDTH = {"cifar": 16, "imagenet": 64}
INPUT_SIZE = {"cifar": 32, "imagenet": 224}
NUM_CLASSES = {"cifar": 10, "imagenet": 1000}


@dataclass(frozen=True)
class NetSpec:
    """A network of the paper's design space.

    `widths` are the stage widths of the 3x3 convs; a bottleneck stage outputs 4x that many channels.
    The first stage keeps the resolution, every later stage halves it with a stride-2 first layer.
    """

    family: Family
    block: BlockKind
    blocks_per_stage: tuple[int, ...]
    widths: tuple[int, ...]
    residual: bool = True
    shortcut: Shortcut = "A"
    variant: Variant = "paper"
    input_size: int = 32  # pixels, square
    num_classes: int = 10
    name: str = ""  # derived from the other fields when left empty

    def __post_init__(self) -> None:
        _validate(self)
        if not self.name:
            object.__setattr__(self, "name", _derived_name(self))

    @property
    def depth(self) -> int:
        """Weighted layers, counted as the paper does: stem conv + block layers + fc."""
        return 1 + LAYERS_PER_BLOCK[self.block] * sum(self.blocks_per_stage) + 1

    @property
    def stem_width(self) -> int:
        return STEM_WIDTH[self.family]

    @property
    def out_channels(self) -> tuple[int, ...]:
        return tuple(w * EXPANSION[self.block] for w in self.widths)

    def replace(self, **changes) -> "NetSpec":
        """A copy with some fields changed; the name is derived again unless given."""
        return dataclasses.replace(self, **{"name": "", **changes})

    def twin(self) -> "NetSpec":
        """The plain net of a residual spec, or the residual net of a plain one."""
        return self.replace(residual=not self.residual)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "NetSpec":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"Unknown spec fields {sorted(unknown)}; allowed: {sorted(fields)}.")
        data = dict(data)
        for key in ("blocks_per_stage", "widths"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


def _validate(spec: NetSpec) -> None:
    def allowed(field: str, value, options) -> None:
        if value not in options:
            raise ValueError(f"Unknown {field} {value!r}; allowed: {', '.join(map(str, options))}.")

    allowed("family", spec.family, FAMILIES)
    allowed("block kind", spec.block, BLOCK_KINDS)
    allowed("shortcut", spec.shortcut, SHORTCUTS)
    allowed("variant", spec.variant, VARIANTS)
    if not isinstance(spec.residual, bool):
        raise ValueError(f"residual must be True or False, not {spec.residual!r}.")
    if not spec.blocks_per_stage or len(spec.blocks_per_stage) != len(spec.widths):
        raise ValueError(
            "blocks_per_stage and widths must name the same number of stages (at least one); "
            f"got {len(spec.blocks_per_stage)} and {len(spec.widths)}."
        )
    for field, values in (("blocks_per_stage", spec.blocks_per_stage), ("widths", spec.widths)):
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
            raise ValueError(f"{field} must be whole numbers of at least 1; got {list(values)}.")
    if not isinstance(spec.num_classes, int) or spec.num_classes < 1:
        raise ValueError(f"num_classes must be a whole number of at least 1; got {spec.num_classes!r}.")
    # Every stage after the first halves the map, and the ImageNet stem divides by 4; the last
    # stage needs at least one pixel.
    reduction = (4 if spec.family == "imagenet" else 1) * 2 ** (len(spec.widths) - 1)
    if not isinstance(spec.input_size, int) or spec.input_size < reduction:
        raise ValueError(
            f"input_size must be at least {reduction} pixels for {len(spec.widths)} stages "
            f"of the {spec.family} family; got {spec.input_size!r}."
        )


def _derived_name(spec: NetSpec) -> str:
    """The paper's name when the spec is a named net (at any input size), else a descriptive one."""
    prefix = "resnet" if spec.residual else "plain"
    try:
        named = get_spec(f"{prefix}{spec.depth}", num_classes=spec.num_classes, shortcut=spec.shortcut,
                         variant=spec.variant)
    except ValueError:
        named = None
    if named is not None and dataclasses.replace(named, input_size=spec.input_size).to_dict() == {
            **spec.to_dict(), "name": named.name}:
        return named.name
    blocks = "-".join(map(str, spec.blocks_per_stage))
    widths = "-".join(map(str, spec.widths))
    return f"{prefix}-{spec.family}-{spec.block}-b{blocks}-w{widths}"


# Table 1: blocks per stage of the ImageNet nets (conv2_x … conv5_x).
IMAGENET_STAGES: dict[int, tuple[BlockKind, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
IMAGENET_WIDTHS = (64, 128, 256, 512)
# §4.2: three stages of 2n layers with 16/32/64 filters on 32/16/8-pixel maps; depth 6n+2.
CIFAR_WIDTHS = (16, 32, 64)
CIFAR_PAPER_DEPTHS = (20, 32, 44, 56, 110, 1202)

_NAME = re.compile(r"(resnet|plain)(\d+)")


def cifar_spec(depth: int, *, residual: bool = True, shortcut: Shortcut = "A", variant: Variant = "paper",
               num_classes: int = 10) -> NetSpec:
    """The CIFAR net of depth 6n+2 (§4.2). Also reaches depths 50 and 152, whose names mean ImageNet nets."""
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"CIFAR depth must be 6n+2 with n >= 1 (8, 14, 20, 26, …); got {depth!r}.")
    n = (depth - 2) // 6
    prefix = "resnet" if residual else "plain"
    return NetSpec(
        name=f"{prefix}{depth}", family="cifar", block="basic", blocks_per_stage=(n, n, n),
        widths=CIFAR_WIDTHS, residual=residual, shortcut=shortcut, variant=variant,
        input_size=INPUT_SIZE["cifar"], num_classes=num_classes,
    )


def imagenet_spec(depth: int, *, residual: bool = True, shortcut: Shortcut = "B", variant: Variant = "paper",
                  num_classes: int = 1000) -> NetSpec:
    """The ImageNet net of Table 1."""
    if depth not in IMAGENET_STAGES:
        raise ValueError(f"ImageNet depth must be one of {', '.join(map(str, IMAGENET_STAGES))}; got {depth!r}.")
    block, stages = IMAGENET_STAGES[depth]
    prefix = "resnet" if residual else "plain"
    return NetSpec(
        name=f"{prefix}{depth}", family="imagenet", block=block, blocks_per_stage=stages,
        widths=IMAGENET_WIDTHS, residual=residual, shortcut=shortcut, variant=variant,
        input_size=INPUT_SIZE["imagenet"], num_classes=num_classes,
    )


def get_spec(name: str, *, num_classes: int | None = None, shortcut: Shortcut | None = None,
             variant: Variant = "paper") -> NetSpec:
    """Resolve a paper name: `resnet18/34/50/101/152` and plain twins are ImageNet nets (Table 1),
    every other `resnet{6n+2}` / `plain{6n+2}` is a CIFAR net (§4.2)."""
    match = _NAME.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise ValueError(
            f"Unknown model {name!r}; allowed: resnet{{18,34,50,101,152}}, resnet{{6n+2}} for CIFAR "
            "(resnet20, resnet56, …), or the same with 'plain' for the plain twin."
        )
    if shortcut is not None and shortcut not in SHORTCUTS:
        raise ValueError(f"Unknown shortcut {shortcut!r}; allowed: A, B, C.")
    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}; allowed: paper, torchvision.")
    residual, depth = match[1] == "resnet", int(match[2])
    if depth in IMAGENET_STAGES:
        family: Family = "imagenet"
    elif depth >= 8 and (depth - 2) % 6 == 0:
        family = "cifar"
    else:
        raise ValueError(
            f"Unknown model {name!r}: depth {depth} is neither an ImageNet depth (18, 34, 50, 101, 152) "
            "nor a CIFAR depth 6n+2 with n >= 1 (8, 14, 20, …)."
        )
    options = dict(residual=residual, shortcut=shortcut or DEFAULT_SHORTCUT[family], variant=variant)
    if num_classes is not None:
        options["num_classes"] = num_classes
    return (imagenet_spec if family == "imagenet" else cifar_spec)(depth, **options)


def list_models() -> list[str]:
    """The paper's named nets (any other 6n+2 depth builds too)."""
    names = []
    for prefix in ("resnet", "plain"):
        names += [f"{prefix}{d}" for d in CIFAR_PAPER_DEPTHS] + [f"{prefix}{d}" for d in IMAGENET_STAGES]
    return names
