"""The Class page's figure: the room's runs pooled into Fig. 6, as a pure Plotly builder tests can call.

Fig. 6's layout: plain nets on the left, residual nets on the right, one colour per depth (the same depth has the
same colour in both panels, so a pair reads across). Per net the median across people of the test error (bold)
and of the smoothed training error (thin), with the range of the test error shaded; the asking person's own runs
drawn over them in black.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from explorer.training.charts import CHART_HEIGHT_PX, COLORS, TEST_WIDTH, TRAIN_WIDTH, RunCurves, thinned
from resnet_core.runs.pooling import NetPool

# Fixed per depth, not per position in the list, so a filter that hides a net never recolours the others.
DEPTH_COLORS = {8: "#8c564b", 14: "#9467bd", 20: "#1f77b4", 32: "#2ca02c", 44: "#ff7f0e", 56: "#d62728",
                110: "#17becf"}
RANGE_OPACITY = 0.15
YOU_COLOR = "#111111"


def depth_color(depth: int) -> str:
    return DEPTH_COLORS.get(depth, COLORS[depth % len(COLORS)])


def _rgba(color: str, opacity: float) -> str:
    red, green, blue = (int(color[index:index + 2], 16) for index in (1, 3, 5))
    return f"rgba({red}, {green}, {blue}, {opacity})"


def fig6_figure(nets: Sequence[NetPool], yours: Sequence[tuple[bool, RunCurves]],
                label: Callable[[str], str] = str) -> go.Figure:
    """Pooled error curves (%) of `nets` in Fig. 6's two panels, and `yours` ((residual, curves) of the asking
    person's runs) over them; `label` names a net, e.g. `plain-44`."""
    figure = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04,
                           subplot_titles=("Plain networks", "Residual networks (ResNets)"))
    for net in nets:
        column, color, name = 2 if net.residual else 1, depth_color(net.depth), label(net.model)
        test, train = net.test, thinned(net.train)
        people = dict(customdata=test["people"], hovertemplate="%{y:.1f}% (median of %{customdata} people)")
        if len(test):
            # The range first, as a band between its highest and lowest lines, so the medians are drawn over it.
            figure.add_scatter(x=test["iteration"], y=100 * test["high"], mode="lines", line=dict(width=0),
                               name=f"{name} test highest", legendgroup=name, showlegend=False, hoverinfo="skip",
                               row=1, col=column)
            figure.add_scatter(x=test["iteration"], y=100 * test["low"], mode="lines", line=dict(width=0),
                               fill="tonexty", fillcolor=_rgba(color, RANGE_OPACITY), name=f"{name} test lowest",
                               legendgroup=name, showlegend=False, hoverinfo="skip", row=1, col=column)
            figure.add_scatter(x=test["iteration"], y=100 * test["median"], mode="lines+markers",
                               name=f"{name} test", legendgroup=name, line=dict(color=color, width=TEST_WIDTH),
                               marker=dict(size=6), **people, row=1, col=column)
        if len(train):
            figure.add_scatter(x=train["iteration"], y=100 * train["median"], mode="lines", name=f"{name} train",
                               legendgroup=name, line=dict(color=color, width=TRAIN_WIDTH),
                               customdata=train["people"], hovertemplate="%{y:.1f}% (median of %{customdata} "
                                                                         "people)", row=1, col=column)
    for residual, curve in yours:
        column, train = 2 if residual else 1, thinned(curve.train)
        figure.add_scatter(x=curve.test["iteration"], y=100 * curve.test["error"], mode="lines+markers",
                           name=f"{curve.label} test", legendgroup="you", row=1, col=column,
                           line=dict(color=YOU_COLOR, width=2, dash="dash"), marker=dict(size=7, symbol="diamond"))
        figure.add_scatter(x=train["iteration"], y=100 * train["smoothed_error"], mode="lines",
                           name=f"{curve.label} train", legendgroup="you", row=1, col=column,
                           line=dict(color=YOU_COLOR, width=1, dash="dot"))
    figure.update_layout(height=CHART_HEIGHT_PX + 60, margin=dict(l=10, r=10, t=60, b=110), hovermode="x unified",
                         template="plotly_white", uirevision="keep-zoom",
                         legend=dict(orientation="h", yanchor="top", y=-0.2, x=0),
                         title="Error (%) pooled across people: thin = training, bold = test, shaded = range of test")
    figure.update_xaxes(title_text="iterations", rangemode="tozero")
    figure.update_yaxes(title_text="error (%)", rangemode="tozero", row=1, col=1)
    return figure
