"""Pure Plotly figure builders for training curves in the paper's style (Fig. 1, Fig. 6).

Error (%) against iterations with thin lines for training and bold lines for testing, one colour per net;
loss and learning rate in a second figure. Curves in, figures out: tests call these without Streamlit.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
# A 64k-iteration run has 64k training rows; a browser redrawing that every second stutters, a line of 2k doesn't.
MAX_POINTS_PER_LINE = 2000
TRAIN_WIDTH, TEST_WIDTH = 1.2, 3.5
REFERENCE_OPACITY = 0.35
CHART_HEIGHT_PX = 460


@dataclass(frozen=True)
class RunCurves:
    """One run's metric rows (resnet_core.runs.schema.METRIC_COLUMNS), split by kind, in iteration order."""

    run_id: int  # picks the colour, so a run looks the same on every page and after a reload
    label: str
    train: pd.DataFrame
    test: pd.DataFrame  # the test or validation rows
    reference: bool = False  # a reference run's curves, drawn faintly behind the live run of the same colour


def thinned(frame: pd.DataFrame, max_points: int = MAX_POINTS_PER_LINE) -> pd.DataFrame:
    """Every k-th row and always the last, so the line keeps its shape and its newest point."""
    if len(frame) <= max_points:
        return frame
    step = -(-len(frame) // max_points)
    return pd.concat([frame.iloc[:-1:step], frame.iloc[[-1]]])


def color_of(curve: RunCurves) -> str:
    return COLORS[(curve.run_id - 1) % len(COLORS)]


def _layout(figure: go.Figure, title: str) -> go.Figure:
    figure.update_layout(title=title, height=CHART_HEIGHT_PX, margin=dict(l=10, r=10, t=50, b=110),
                         hovermode="x unified", legend=dict(orientation="h", yanchor="top", y=-0.2, x=0),
                         template="plotly_white", uirevision="keep-zoom")  # zoom survives each poll's redraw
    figure.update_xaxes(title_text="iterations", rangemode="tozero")
    return figure


def error_figure(curves: Sequence[RunCurves]) -> go.Figure:
    """Training error (thin, smoothed over ~50 iterations) and test error (bold) in %, as in Fig. 6; reference
    curves first, faint and dotted, so the live ones are drawn over them."""
    figure = go.Figure()
    for curve in sorted(curves, key=lambda curve: not curve.reference):
        train, test, color = thinned(curve.train), curve.test, color_of(curve)
        faint = dict(opacity=REFERENCE_OPACITY) if curve.reference else {}
        dash = "dot" if curve.reference else None
        figure.add_scatter(x=train["iteration"], y=100 * train["smoothed_error"], mode="lines",
                           name=f"{curve.label} train", legendgroup=curve.label,
                           line=dict(color=color, width=TRAIN_WIDTH, dash=dash), **faint)
        figure.add_scatter(x=test["iteration"], y=100 * test["error"], mode="lines+markers",
                           name=f"{curve.label} test", legendgroup=curve.label,
                           line=dict(color=color, width=TEST_WIDTH, dash=dash), marker=dict(size=6), **faint)
    _layout(figure, "Error (%): thin = training, bold = test")
    figure.update_yaxes(title_text="error (%)", rangemode="tozero")
    return figure


def miou_figure(curves: Sequence[RunCurves]) -> go.Figure:
    """Segmentation runs (resnet_core.pixels): the mean IoU (bold) and the pixel accuracy (thin, dotted) on the test
    scenes at each test point, in %, where a classifier's runs have their test error."""
    figure = go.Figure()
    for curve in curves:
        test, color = curve.test, color_of(curve)
        figure.add_scatter(x=test["iteration"], y=100 * test["miou"], mode="lines+markers",
                           name=f"{curve.label} test mIoU", legendgroup=curve.label,
                           line=dict(color=color, width=TEST_WIDTH), marker=dict(size=6))
        figure.add_scatter(x=test["iteration"], y=100 * (1 - test["error"]), mode="lines",
                           name=f"{curve.label} test pixel accuracy", legendgroup=curve.label,
                           line=dict(color=color, width=TRAIN_WIDTH, dash="dot"))
    _layout(figure, "Test scenes: mIoU (bold), pixel accuracy (dotted)")
    figure.update_yaxes(title_text="mIoU, pixel accuracy (%)", range=[0, 100])
    return figure


def loss_lr_figure(curves: Sequence[RunCurves]) -> go.Figure:
    """Training loss (thin, smoothed) and test loss (bold) in nats; the learning rate (dotted) on a log axis. Of
    the live runs only: a reference's schedule would crowd the lr axis."""
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    for curve in (curve for curve in curves if not curve.reference):
        train, test, color = thinned(curve.train), curve.test, color_of(curve)
        figure.add_scatter(x=train["iteration"], y=train["smoothed_loss"], mode="lines",
                           name=f"{curve.label} train loss", legendgroup=curve.label,
                           line=dict(color=color, width=TRAIN_WIDTH))
        figure.add_scatter(x=test["iteration"], y=test["loss"], mode="lines+markers", name=f"{curve.label} test loss",
                           legendgroup=curve.label, line=dict(color=color, width=TEST_WIDTH), marker=dict(size=6))
        figure.add_scatter(x=train["iteration"], y=train["lr"], mode="lines", name=f"{curve.label} lr",
                           legendgroup=curve.label, line=dict(color=color, width=1, dash="dot"), secondary_y=True)
    _layout(figure, "Loss (nats) and learning rate (dotted)")
    figure.update_yaxes(title_text="cross-entropy loss", rangemode="tozero", secondary_y=False)
    # Ticks at powers of ten only: the schedule divides by 10 (§4.2).
    figure.update_yaxes(title_text="learning rate", type="log", dtick=1, showgrid=False, secondary_y=True)
    return figure
