"""Per-layer and per-stage tables (Table 1's rows) on top of torchinfo.

torchinfo's `macs` are multiply-accumulates, which is what the paper's Table 1 calls "FLOPs"
(its 3.6 billion for ResNet-34 are mult-adds); FLOPs in the usual sense are twice that.
"""
from __future__ import annotations

import math

import pandas as pd
import torchinfo
from torch import nn

from .model import ResNet

LAYER_COLUMNS = ["name", "kind", "stage", "output_shape", "params", "mult_adds", "activations"]
WEIGHTED = (nn.Conv2d, nn.Linear)


def stage_of(module_name: str) -> str:
    """Table 1's row for a module: `conv1` (stem and pool), `conv2_x` … (stages), `head`."""
    top = module_name.split(".", 1)[0]
    if top.startswith("layer"):
        return f"conv{int(top[len('layer'):]) + 1}_x"
    return "head" if top in ("avgpool", "flatten", "fc") else "conv1"


def layer_table(model: ResNet, input_size: int | None = None) -> pd.DataFrame:
    """One row per leaf module in execution order, for one image of `input_size` (default: the spec's).

    Columns: name (module path), kind (class), stage, output_shape (C, H, W), params,
    mult_adds (for one image), activations (output elements for one image).
    """
    size = input_size or model.spec.input_size
    names = {id(module): name for name, module in model.named_modules()}
    was_training = model.training
    stats = torchinfo.summary(model, input_size=(1, 3, size, size), depth=100, verbose=0, device="cpu",
                              mode="eval")
    model.train(was_training)
    rows = []
    for info in stats.summary_list:
        if not info.is_leaf_layer:
            continue
        name = names[id(info.module)]
        shape = tuple(info.output_size[1:])
        rows.append((name, info.class_name, stage_of(name), shape, info.num_params, info.macs, math.prod(shape)))
    return pd.DataFrame(rows, columns=LAYER_COLUMNS)


def stage_table(model: ResNet, layers: pd.DataFrame | None = None) -> pd.DataFrame:
    """Table 1's rows: conv1, one row per stage, head; with the block structure, output shape and costs."""
    spec = model.spec
    layers = layer_table(model) if layers is None else layers
    # Projection shortcuts are not counted in the paper's depth, so the column sums to `spec.depth`.
    weighted = layers["kind"].isin([cls.__name__ for cls in WEIGHTED]) & ~layers["name"].str.contains("downsample")
    structure = {"conv1": "7×7, 64, stride 2 · 3×3 max pool, stride 2" if spec.family == "imagenet"
                 else f"3×3, {spec.stem_width}",
                 "head": f"average pool · {spec.num_classes}-d fc · softmax"}
    for index, (count, width) in enumerate(zip(spec.blocks_per_stage, spec.widths)):
        if spec.block == "basic":
            block = f"[3×3, {width} | 3×3, {width}]"
        else:
            block = f"[1×1, {width} | 3×3, {width} | 1×1, {width * 4}]"
        structure[f"conv{index + 2}_x"] = f"{block} × {count}"
    grouped = layers.assign(weighted_layers=weighted).groupby("stage", sort=False)
    table = grouped.agg(output_shape=("output_shape", "last"), weighted_layers=("weighted_layers", "sum"),
                        params=("params", "sum"), mult_adds=("mult_adds", "sum")).reset_index()
    table.insert(1, "structure", table["stage"].map(structure))
    return table


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def activation_bytes(layers: pd.DataFrame, batch_size: int, bytes_per_value: int = 4) -> int:
    """Memory of the layer outputs one training batch keeps for the backward pass (fp32 by default).

    An upper-bound estimate: every leaf output is counted once, although autograd can sometimes
    share storage (e.g. a ReLU's output with the next conv's saved input).
    """
    return int(layers["activations"].sum()) * batch_size * bytes_per_value
