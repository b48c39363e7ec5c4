"""Pure Plotly builders for the Classify and Inside pages: arrays and tables in, figures out.

No torch and no Streamlit here, so tests call them directly.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

NET_COLORS = {"plain": "#d62728", "residual": "#1f77b4"}
# Diverging for signed evidence (red for, blue against the class); sequential for magnitudes.
SIGNED_SCALE = "RdBu_r"
MAGNITUDE_SCALE = "Inferno"
OVERLAY_OPACITY = 0.55
STATE_LABELS = {"init": "at initialisation", "trained": "trained"}
_IMAGE_PX = 330


def top_k_figure(top: Sequence[tuple[str, float]], title: str = "") -> go.Figure:
    """Horizontal bars of the likeliest classes, the likeliest on top, probabilities in percent."""
    names = [name for name, _ in top][::-1]
    percents = [100 * probability for _, probability in top][::-1]
    figure = go.Figure(go.Bar(x=percents, y=names, orientation="h", marker_color="#1f77b4",
                              text=[f"{p:.1f} %" for p in percents], textposition="auto",
                              hovertemplate="%{y}: %{x:.2f} %<extra></extra>"))
    figure.update_layout(title=title, height=60 + 36 * len(names),
                         margin=dict(l=10, r=10, t=40 if title else 10, b=10),
                         xaxis=dict(title="probability (%)", range=[0, 100]), yaxis=dict(automargin=True))
    return figure


def attribution_figure(image: np.ndarray, attribution: np.ndarray, *, signed: bool, title: str = "",
                       show_overlay: bool = True) -> go.Figure:
    """The network's input `image` (H, W, 3 uint8) with the attribution map (H, W) laid over it.

    Signed maps are in [-1, 1] (evidence for the class is red, against it blue); magnitudes in [0, 1].
    """
    figure = go.Figure(go.Image(z=image, hoverinfo="skip"))
    if show_overlay:
        figure.add_trace(go.Heatmap(
            z=attribution, zmin=-1 if signed else 0, zmax=1, zmid=0 if signed else None,
            colorscale=SIGNED_SCALE if signed else MAGNITUDE_SCALE, opacity=OVERLAY_OPACITY,
            colorbar=dict(title="evidence" if signed else "importance",
                          tickvals=[-1, 0, 1] if signed else [0, 1],
                          ticktext=["against", "0", "for"] if signed else ["0", "max"], len=0.9, thickness=14),
            hovertemplate="x %{x}, y %{y}: %{z:.2f}<extra></extra>"))
    figure.update_layout(title=title, width=_IMAGE_PX + 90, height=_IMAGE_PX,
                         margin=dict(l=0, r=0, t=40 if title else 0, b=0))
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False, scaleanchor="x")
    return figure


def _net_label(net: str, depth: int) -> str:
    return f"ResNet-{depth}" if net == "residual" else f"plain-{depth}"


def layer_response_figure(responses: Mapping[str, pd.DataFrame], depth: int, title: str = "") -> go.Figure:
    """Paper Fig. 7: the std of each 3x3 layer's response in forward order (top) and sorted (bottom).

    `responses` maps "plain" / "residual" to `resnet_core.layer_response_stds` tables of nets of `depth`.
    """
    figure = make_subplots(rows=2, cols=1, vertical_spacing=0.14,
                           subplot_titles=("layer index (original)", "layer index (sorted by magnitude)"))
    for net, table in responses.items():
        stds = table["std"].to_numpy()
        for row, values in ((1, stds), (2, np.sort(stds)[::-1])):
            figure.add_trace(go.Scatter(
                x=np.arange(1, len(values) + 1), y=values, mode="lines+markers", name=_net_label(net, depth),
                legendgroup=net, showlegend=row == 1, line=dict(color=NET_COLORS[net]), marker=dict(size=5),
                customdata=table["name"] if row == 1 else None,
                hovertemplate=("%{customdata}: std %{y:.3f}<extra></extra>" if row == 1
                               else "rank %{x}: std %{y:.3f}<extra></extra>")), row=row, col=1)
    figure.update_yaxes(title_text="std", rangemode="tozero")
    figure.update_layout(title=title, height=560, margin=dict(l=10, r=10, t=70, b=10),
                         legend=dict(orientation="h", y=1.12, x=0))
    return figure


def gradient_norm_figure(norms: Mapping[tuple[str, str], pd.DataFrame], depth: int, title: str = "") -> go.Figure:
    """Gradient norm of each weighted layer on a log scale; `norms` maps (net, state) to
    `resnet_core.gradient_norms` tables, net "plain"/"residual", state "init"/"trained"."""
    figure = go.Figure()
    for (net, state), table in norms.items():
        figure.add_trace(go.Scatter(
            x=table["layer"], y=table["grad_norm"], mode="lines+markers",
            name=f"{_net_label(net, depth)}, {STATE_LABELS[state]}",
            line=dict(color=NET_COLORS[net], dash="solid" if state == "trained" else "dot"), marker=dict(size=5),
            customdata=table["name"], hovertemplate="%{customdata}: %{y:.3g}<extra></extra>"))
    figure.update_layout(title=title, height=420, margin=dict(l=10, r=10, t=50 if title else 10, b=10),
                         xaxis_title="weighted layer (input → output)",
                         yaxis=dict(type="log", title="‖∂loss/∂W‖", dtick=1),
                         legend=dict(orientation="h", y=-0.2, x=0))
    return figure


def per_class_accuracy_figure(accuracy: Mapping[str, float], title: str = "") -> go.Figure:
    classes, values = list(accuracy), [100 * value for value in accuracy.values()]
    figure = go.Figure(go.Bar(x=classes, y=values, marker_color="#1f77b4", text=[f"{v:.0f}" for v in values],
                              textposition="outside", hovertemplate="%{x}: %{y:.1f} %<extra></extra>"))
    figure.update_layout(title=title, height=360, margin=dict(l=10, r=10, t=50 if title else 10, b=10),
                         yaxis=dict(title="accuracy (%)", range=[0, 105]))
    return figure


def confusion_matrix_figure(matrix: Sequence[Sequence[int]], classes: Sequence[str], title: str = "") -> go.Figure:
    """Counts of [true class][predicted class], coloured by the fraction of each true class (row)."""
    counts = np.asarray(matrix, dtype=float)
    fractions = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    figure = go.Figure(go.Heatmap(
        z=fractions, x=list(classes), y=list(classes), colorscale="Blues", zmin=0, zmax=1,
        text=counts.astype(int), texttemplate="%{text}", colorbar=dict(title="of row"),
        hovertemplate="true %{y}, predicted %{x}: %{text} images (%{z:.1%})<extra></extra>"))
    figure.update_layout(title=title, height=480, margin=dict(l=10, r=10, t=50 if title else 10, b=10),
                         xaxis=dict(title="predicted class", side="bottom"),
                         yaxis=dict(title="true class", autorange="reversed"))
    return figure
