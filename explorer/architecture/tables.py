"""Pure pandas views of `resnet_core.layer_table`: blocks for the diagram, text for display, differences.

No torch and no Streamlit here, so charts, tests and the home page can import it cheaply.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

import pandas as pd

# Block modules are `layer{stage}.{index}.{op}`; everything else belongs to the stem or the head.
_BLOCK_OP = re.compile(r"(layer(\d+)\.(\d+))\.")
BLOCK_COLUMNS = ["unit", "label", "stage", "index", "shortcut", "output_shape", "params", "mult_adds", "additions"]
# Shortcut kinds as the diagram draws them (§3.3): identity, zero-padded identity (option A), 1x1 projection.
SHORTCUT_KINDS = ("identity", "zero-pad", "projection")


class Summarised(Protocol):
    """What `difference_table` needs of a net: `explorer.architecture.cache.NetSummary` fits."""

    name: str
    depth: int
    layers: pd.DataFrame
    params: int


def shape_text(shape: Sequence[int]) -> str:
    """`(64, 8, 8)` → `64×8×8` (channels × height × width)."""
    return "×".join(map(str, shape))


def block_table(layers: pd.DataFrame) -> pd.DataFrame:
    """One row per unit of the diagram, in order: the stem, every block, the head.

    `label` is the paper's name (`conv3_1` is the first block of conv3_x); `shortcut` is one of
    SHORTCUT_KINDS or `none`; `additions` counts the element-wise additions of F(x) + x for one image.
    """
    match = layers["name"].str.extract(_BLOCK_OP)
    shortcut_module = layers["name"].str.contains(".downsample", regex=False)
    # Grouped aggregations, not a loop over groups: ResNet-1202 has 600 blocks.
    units = layers.assign(
        unit=match[0].fillna(layers["stage"]), index=match[2].astype("float").fillna(0).astype(int),
        projection=shortcut_module & (layers["kind"] == "Conv2d"),
        zero_pad=shortcut_module & (layers["kind"] == "ZeroPadShortcut"),
        identity=shortcut_module & (layers["kind"] == "Identity"),
        additions=layers["activations"].where(layers["kind"] == "ResidualAdd", 0),
    ).groupby("unit", sort=False).agg(
        stage=("stage", "first"), index=("index", "first"), projection=("projection", "any"),
        zero_pad=("zero_pad", "any"), identity=("identity", "any"), output_shape=("output_shape", "last"),
        params=("params", "sum"), mult_adds=("mult_adds", "sum"), additions=("additions", "sum"),
    ).reset_index()
    is_block = units["unit"].str.startswith("layer")
    units["label"] = units["stage"].where(~is_block, units["stage"].str[:-2] + "_" + (units["index"] + 1).astype(str))
    units["shortcut"] = "none"  # the stem, the head and plain blocks
    for kind, column in (("identity", "identity"), ("zero-pad", "zero_pad"), ("projection", "projection")):
        units.loc[units[column], "shortcut"] = kind
    return units[BLOCK_COLUMNS]


def count_text(value: float) -> str:
    """Counts as the paper prints them: 0.85 M, 3.6 × 10⁹."""
    if value >= 1e9:
        return f"{value / 1e9:.3g} × 10⁹"
    return f"{value / 1e6:.3g} M" if value >= 1e5 else f"{value:,.0f}"


def for_display(table: pd.DataFrame) -> pd.DataFrame:
    """A copy with shapes written as text, for st.dataframe, filtering and CSV."""
    return table.assign(output_shape=table["output_shape"].map(shape_text))


def filter_rows(table: pd.DataFrame, text: str) -> pd.DataFrame:
    """Rows where any text column contains `text` (case-insensitive); all rows for blank text."""
    text = text.strip().lower()
    if not text:
        return table
    columns = table.select_dtypes(include=["object", "string"]).columns
    hit = pd.Series(False, index=table.index)
    for column in columns:
        hit |= table[column].astype(str).str.lower().str.contains(text, regex=False)
    return table[hit]


def shortcut_params(layers: pd.DataFrame) -> int:
    """Parameters of the projection shortcuts (options B and C); identity and zero-pad have none."""
    return int(layers.loc[layers["name"].str.contains(".downsample", regex=False), "params"].sum())


def residual_additions(layers: pd.DataFrame) -> int:
    """Element-wise additions F(x) + x for one image: the only cost identity shortcuts add (§3.1)."""
    return int(layers.loc[layers["kind"] == "ResidualAdd", "activations"].sum())


def final_feature_shape(layers: pd.DataFrame) -> tuple[int, ...]:
    """The last stage's output (C, H, W), the map that global average pooling reads."""
    return tuple(layers.loc[layers["stage"] != "head", "output_shape"].iloc[-1])


def difference_table(left: Summarised, right: Summarised) -> pd.DataFrame:
    """What changes from `left` to `right`: depth, parameters (and those in shortcuts), mult-adds, additions."""
    def totals(net: Summarised) -> dict[str, int]:
        return {
            "Depth (weighted layers)": net.depth,
            "Parameters": net.params,
            "… of which in shortcuts": shortcut_params(net.layers),
            "Mult-adds per image": int(net.layers["mult_adds"].sum()),
            "Shortcut additions per image": residual_additions(net.layers),
        }
    a, b = totals(left), totals(right)
    # Columns say left/right as well as the names, so comparing a net with itself still works.
    return pd.DataFrame({"quantity": list(a), f"left · {left.name}": list(a.values()),
                         f"right · {right.name}": list(b.values()), "right − left": [b[key] - a[key] for key in a]})
