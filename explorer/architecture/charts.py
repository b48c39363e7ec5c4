"""Pure Plotly figure builders: tables in, figures out, so tests can call them without Streamlit.

No torch here: the home page imports this module.
"""
from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from explorer.architecture.tables import SHORTCUT_KINDS, shape_text

# One look per shortcut option of §3.3, shared by the diagram and its legend.
SHORTCUT_STYLE = {
    "identity": dict(color="#7f7f7f", dash="solid", width=2, name="identity shortcut"),
    "zero-pad": dict(color="#ff7f0e", dash="dash", width=2.5, name="zero-pad shortcut (option A, stride 2)"),
    "projection": dict(color="#d62728", dash="solid", width=3.5, name="projection shortcut (1×1 conv + BN)"),
}
STAGE_COLORS = ("#dbe9f6", "#fde3c8", "#d9f0d3", "#f3d9ec", "#e5e0f3", "#fff2b3")
BORDER = "#4a5568"
# An expanded stage shows at most this many boxes, so a 200-block stage (ResNet-1202) stays readable.
MAX_BOXES_PER_ROW = 12
_BOX_HALF_WIDTH, _BOX_HALF_HEIGHT, _ARC_RISE = 0.4, 0.22, 0.38
_ROW_HEIGHT_PX = 100


@dataclass(frozen=True)
class _Box:
    title: str
    subtitle: str
    hover: str
    shortcut: str = "none"  # a SHORTCUT_KINDS entry, or none for the stem, head and plain blocks
    dashed: bool = False  # stands for several blocks


def _block_hover(block: pd.Series) -> str:
    shortcut = "no shortcut (plain)" if block["shortcut"] == "none" else f"{block['shortcut']} shortcut"
    return (f"<b>{block['label']}</b> ({block['unit']})<br>output {shape_text(block['output_shape'])}<br>"
            f"{block['params']:,} parameters<br>{block['mult_adds']:,} mult-adds<br>{shortcut}")


def _block_box(block: pd.Series) -> _Box:
    return _Box(block["label"], shape_text(block["output_shape"]), _block_hover(block), block["shortcut"])


def _stage_boxes(blocks: pd.DataFrame, expanded: bool) -> list[_Box]:
    """A collapsed stage is its first block (where the shape changes) and one box for the identical rest."""
    first, rest = blocks.iloc[0], blocks.iloc[1:]
    if not expanded:
        if len(rest) <= 1:
            return [_block_box(block) for _, block in blocks.iterrows()]
        repeat = _Box(f"× {len(rest)} more", shape_text(rest.iloc[0]["output_shape"]),
                      f"{rest.iloc[0]['label']} … {rest.iloc[-1]['label']}: {len(rest)} identical blocks, each like "
                      f"this:<br>{_block_hover(rest.iloc[0])}", rest.iloc[0]["shortcut"], dashed=True)
        return [_block_box(first), repeat]
    if len(blocks) <= MAX_BOXES_PER_ROW:
        return [_block_box(block) for _, block in blocks.iterrows()]
    shown = MAX_BOXES_PER_ROW - 2
    hidden = blocks.iloc[shown:-1]
    gap = _Box("⋯", f"{len(hidden)} more", f"{hidden.iloc[0]['label']} … {hidden.iloc[-1]['label']}: "
               f"{len(hidden)} blocks like their neighbours", dashed=True)
    return [_block_box(block) for _, block in blocks.iloc[:shown].iterrows()] + [gap, _block_box(blocks.iloc[-1])]


def _arc(x: float, y: float, steps: int = 16) -> tuple[list[float], list[float]]:
    """A quadratic Bézier from a block's input (the gap before it) over the box to its output (the gap after)."""
    x0, x1 = x - 0.5, x + 0.5
    control = y + 2 * _ARC_RISE  # a quadratic Bézier peaks halfway to its control point
    ts = [i / steps for i in range(steps + 1)]
    return ([(1 - t) ** 2 * x0 + 2 * t * (1 - t) * x + t**2 * x1 for t in ts],
            [(1 - t) ** 2 * y + 2 * t * (1 - t) * control + t**2 * y for t in ts])


def network_diagram(blocks: pd.DataFrame, input_shape: Sequence[int], expanded: Collection[str] = ()) -> go.Figure:
    """The net as rows of boxes, one row per stage, with shortcuts drawn as arcs over the blocks.

    `blocks` is `explorer.architecture.tables.block_table(layers)`. Stages named in `expanded` (e.g. `conv3_x`)
    show every block, up to MAX_BOXES_PER_ROW; the others show their first block and one box for the rest.
    """
    rows: list[tuple[str, list[_Box]]] = []
    stem, head = blocks.iloc[0], blocks.iloc[-1]
    rows.append(("stem", [_Box("input", shape_text(input_shape), f"image, {shape_text(input_shape)}"),
                          _Box("conv1", shape_text(stem["output_shape"]), _block_hover(stem))]))
    for stage, stage_blocks in blocks.iloc[1:-1].groupby("stage", sort=False):
        rows.append((f"{stage}<br>{len(stage_blocks)} block{'s' * (len(stage_blocks) > 1)}",
                     _stage_boxes(stage_blocks, stage in expanded)))
    rows.append(("head", [_Box("pool · fc", shape_text(head["output_shape"]), _block_hover(head))]))

    figure = go.Figure()
    shapes: list[dict] = []  # set once at the end: add_shape one by one is quadratic in plotly
    arcs: dict[str, tuple[list, list]] = {kind: ([], []) for kind in SHORTCUT_KINDS}
    centres_x, centres_y, texts, hovers = [], [], [], []
    for row, (_, boxes) in enumerate(rows):
        y = -row
        fill = STAGE_COLORS[(row - 1) % len(STAGE_COLORS)] if 0 < row < len(rows) - 1 else "#eeeeee"
        # The main path: what flows through the weight layers from box to box.
        shapes.append(dict(type="line", x0=-0.5, x1=len(boxes) - 0.5, y0=y, y1=y, layer="below",
                           line=dict(color=BORDER, width=1.5)))
        for x, box in enumerate(boxes):
            shapes.append(dict(type="rect", x0=x - _BOX_HALF_WIDTH, x1=x + _BOX_HALF_WIDTH, y0=y - _BOX_HALF_HEIGHT,
                               y1=y + _BOX_HALF_HEIGHT, fillcolor=fill, layer="below",
                               line=dict(color=BORDER, width=1, dash="dot" if box.dashed else "solid")))
            centres_x.append(x)
            centres_y.append(y)
            texts.append(f"<b>{box.title}</b><br>{box.subtitle}")
            hovers.append(box.hover)
            if box.shortcut in arcs:
                xs, ys = _arc(x, y)
                arcs[box.shortcut][0].extend(xs + [None])
                arcs[box.shortcut][1].extend(ys + [None])
    for kind, (xs, ys) in arcs.items():
        if xs:
            style = SHORTCUT_STYLE[kind]
            figure.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=style["name"], hoverinfo="name",
                                        line=dict(color=style["color"], dash=style["dash"], width=style["width"])))
    figure.add_trace(go.Scatter(
        x=centres_x, y=centres_y, mode="markers+text", text=texts, hovertext=hovers, hoverinfo="text",
        textfont=dict(size=11, color="#1a202c"), showlegend=False, name="blocks",
        marker=dict(symbol="square", size=36, opacity=0),
    ))
    widest = max(len(boxes) for _, boxes in rows)
    figure.update_layout(
        shapes=shapes, height=90 + _ROW_HEIGHT_PX * len(rows),
        # A fixed top margin keeps side-by-side diagrams aligned whether or not they have a legend.
        margin=dict(l=10, r=10, t=60, b=10), plot_bgcolor="white", hovermode="closest", showlegend=True,
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1),
        xaxis=dict(visible=False, range=[-0.55, max(widest, 3) - 0.45], fixedrange=True),
        yaxis=dict(tickvals=[-row for row in range(len(rows))], ticktext=[label for label, _ in rows],
                   range=[-len(rows) + 0.55, 0.75], showgrid=False, zeroline=False, fixedrange=True),
    )
    return figure


def depth_sweep_figure(sweep: pd.DataFrame) -> go.Figure:
    """Parameters and mult-adds against depth (log-log), plain and residual; `sweep` is `cache.depth_sweep()`."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("Parameters", "Mult-adds per 32×32 image"),
                           horizontal_spacing=0.1)
    # The two lines coincide (option A shortcuts are free): plain is drawn wide and pale, residual thin on top.
    looks = {"plain": dict(color="#9ecae1", dash="solid", width=8, symbol="circle", size=14),
             "residual": dict(color="#d62728", dash="dash", width=2, symbol="x", size=8)}
    for net, rows in sweep.groupby("net", sort=False):
        look = looks[net]
        for column, (quantity, unit) in enumerate((("params", "parameters"), ("mult_adds", "mult-adds"))):
            figure.add_trace(go.Scatter(
                x=rows["depth"], y=rows[quantity], mode="lines+markers", name=net, legendgroup=net,
                showlegend=column == 0, line=dict(color=look["color"], dash=look["dash"], width=look["width"]),
                marker=dict(symbol=look["symbol"], size=look["size"]),
                hovertemplate=f"{net}-%{{x}}<br>%{{y:,}} {unit}<extra></extra>",
            ), row=1, col=column + 1)
    figure.update_xaxes(type="log", title_text="depth (weighted layers, 6n+2)", tickvals=sorted(sweep["depth"].unique().tolist()))
    figure.update_yaxes(type="log", dtick=1, tickformat="~s")
    figure.update_layout(height=380, margin=dict(l=10, r=10, t=40, b=10), legend=dict(title="net"))
    return figure


def residual_block_figure() -> go.Figure:
    """Fig. 2 of the paper: two weight layers learn F(x); the identity shortcut adds x back."""
    figure = go.Figure()
    layers = [(3.0, "weight layer"), (2.0, "relu"), (1.0, "weight layer")]
    for y, label in layers:
        figure.add_shape(type="rect", x0=-0.9, x1=0.9, y0=y - 0.28, y1=y + 0.28, line=dict(color=BORDER),
                         fillcolor=STAGE_COLORS[0] if label == "weight layer" else "#f7f7f7")
        figure.add_annotation(x=0, y=y, text=label, showarrow=False, font=dict(size=14))
    arrows = [(4.1, 3.28), (2.72, 2.28), (1.72, 1.28), (0.72, 0.22), (-0.22, -0.8)]
    for y_from, y_to in arrows:
        figure.add_annotation(x=0, y=y_to, ax=0, ay=y_from, xref="x", yref="y", axref="x", ayref="y",
                              showarrow=True, arrowhead=2, arrowwidth=1.5, arrowcolor=BORDER, text="")
    figure.add_shape(type="circle", x0=-0.22, x1=0.22, y0=-0.22, y1=0.22, line=dict(color=BORDER, width=2))
    figure.add_annotation(x=0, y=0, text="<b>+</b>", showarrow=False, font=dict(size=18))
    identity = SHORTCUT_STYLE["identity"]
    figure.add_shape(type="path", path="M 0,3.75 C 2.4,3.75 2.4,0 0.24,0",
                     line=dict(color=identity["color"], width=identity["width"] + 1))
    figure.add_annotation(x=0.26, y=0, ax=0.9, ay=0.02, xref="x", yref="y", axref="x", ayref="y", showarrow=True,
                          arrowhead=2, arrowwidth=2, arrowcolor=identity["color"], text="")
    labels = [(0.25, 4.15, "<b>x</b>", "left"), (1.85, 2.0, "x<br><i>identity</i>", "left"),
              (-1.05, 2.0, "<b>F(x)</b>", "right"), (0.3, -0.55, "<b>F(x) + x</b>", "left"),
              (0.3, -0.95, "relu", "left")]
    for x, y, text, anchor in labels:
        figure.add_annotation(x=x, y=y, text=text, showarrow=False, xanchor=anchor, font=dict(size=14))
    figure.update_layout(
        height=420, margin=dict(l=10, r=10, t=10, b=10), plot_bgcolor="white", showlegend=False,
        xaxis=dict(visible=False, range=[-2.2, 2.8], fixedrange=True),
        yaxis=dict(visible=False, range=[-1.2, 4.4], fixedrange=True, scaleanchor="x"),
    )
    return figure
