"""Pure Plotly figures of the Experiments page: lesion study, loss landscape, shattered gradients.

Results in (the store's JSON steps of an experiment run, or the shattering points), figures out: tests call these
without Streamlit. Plain nets are red and residual nets blue, as on the Inside page.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from explorer.explain_charts import NET_COLORS

HEIGHT_PX = 420


def _color(label: str) -> str:
    return NET_COLORS["plain" if label.lower().startswith("plain") else "residual"]


def _layout(figure: go.Figure, title: str, x: str, y: str) -> go.Figure:
    figure.update_layout(title=title, height=HEIGHT_PX, margin=dict(l=10, r=10, t=50, b=10), template="plotly_white",
                         xaxis_title=x, yaxis_title=y, legend=dict(orientation="h", y=-0.25, x=0),
                         uirevision="keep-zoom")
    return figure


def lesion_blocks_figure(series: Mapping[str, Mapping]) -> go.Figure:
    """Test error with each block deleted in turn (Veit et al. Fig. 3), one line per net, downsampling blocks as
    crosses; the intact net's error as a dashed line. `series`: label -> {"baseline": e, "blocks": [{"block",
    "downsampling", "error"}, …]} (errors as fractions, blocks so far)."""
    figure = go.Figure()
    for label, result in series.items():
        blocks, color = result["blocks"], _color(label)
        figure.add_scatter(x=[block["block"] for block in blocks], y=[100 * block["error"] for block in blocks],
                           mode="lines+markers", name=f"{label}, one block deleted", line=dict(color=color),
                           marker=dict(size=[11 if block["downsampling"] else 6 for block in blocks],
                                       symbol=["x" if block["downsampling"] else "circle" for block in blocks]),
                           hovertemplate="%{x}: %{y:.1f} %<extra></extra>")
        if result.get("baseline") is not None:
            figure.add_hline(y=100 * result["baseline"], line=dict(color=color, dash="dash", width=1),
                             annotation_text=f"{label} intact", annotation_position="top left")
    _layout(figure, "Test error with one block deleted (× = downsampling block)", "deleted block", "test error (%)")
    figure.update_yaxes(range=[0, 100])
    return figure


def lesion_k_figure(series: Mapping[str, Sequence[Mapping]]) -> go.Figure:
    """Test error against the number k of blocks deleted at random (Veit et al. Fig. 5): the median of the draws
    with their range. `series`: label -> [{"k", "errors": [...]}, …]."""
    figure = go.Figure()
    for label, draws in series.items():
        color = _color(label)
        ks = [draw["k"] for draw in draws]
        medians = [100 * sorted(draw["errors"])[len(draw["errors"]) // 2] for draw in draws]
        figure.add_scatter(x=ks + ks[::-1], y=[100 * max(draw["errors"]) for draw in draws] +
                           [100 * min(draw["errors"]) for draw in draws][::-1], fill="toself", fillcolor=color,
                           opacity=0.15, line=dict(width=0), hoverinfo="skip", showlegend=False)
        figure.add_scatter(x=ks, y=medians, mode="lines+markers", name=f"{label}, median of the draws",
                           line=dict(color=color), hovertemplate="k = %{x}: %{y:.1f} %<extra></extra>")
    _layout(figure, "Test error with k random blocks deleted", "blocks deleted (k)", "test error (%)")
    figure.update_yaxes(range=[0, 100])
    return figure


def landscape_1d_figure(series: Mapping[str, Mapping]) -> go.Figure:
    """Training loss along one filter-normalised direction (Li et al. Fig. 5's slices), one curve per net.
    `series`: label -> {"alphas": [...], "loss": [...]}."""
    figure = go.Figure()
    for label, surface in series.items():
        figure.add_scatter(x=surface["alphas"], y=surface["loss"], mode="lines+markers", name=label,
                           line=dict(color=_color(label)), marker=dict(size=4))
    _layout(figure, "Training loss along a random filter-normalised direction", "step α (0 = trained weights)",
            "training loss (log scale)")
    figure.update_yaxes(type="log")  # the walls rise 10-40× above the basin; a linear axis would flatten it
    return figure


def landscape_2d_figure(series: Mapping[str, Mapping]) -> go.Figure:
    """Training-loss contours around the trained weights (Li et al. Fig. 5), the nets side by side, on one colour
    scale; rows not yet measured are blank. `series`: label -> {"alphas", "betas", "rows": {j: [loss…]}}."""
    labels = list(series)
    figure = make_subplots(rows=1, cols=max(len(labels), 1), subplot_titles=labels, horizontal_spacing=0.08)
    measured = [value for surface in series.values() for row in surface["rows"].values() for value in row]
    top = min(max(measured, default=1.0), 10 * min(measured, default=1.0) + 1e-9)  # keep the basin readable
    for column, label in enumerate(labels, start=1):
        surface = series[label]
        z = [surface["rows"].get(j) or [None] * len(surface["alphas"]) for j in range(len(surface["betas"]))]
        figure.add_trace(go.Contour(x=surface["alphas"], y=surface["betas"], z=z, zmin=0, zmax=top,
                                    colorscale="Viridis", contours=dict(coloring="heatmap", showlabels=True),
                                    showscale=column == len(labels), connectgaps=False,
                                    hovertemplate="α %{x:.2f}, β %{y:.2f}: loss %{z:.3f}<extra></extra>"),
                         row=1, col=column)
    figure.update_layout(title="Training loss around the trained weights (α, β: two filter-normalised directions)",
                         height=HEIGHT_PX + 40, margin=dict(l=10, r=10, t=70, b=10), template="plotly_white")
    figure.update_xaxes(title_text="α")
    figure.update_yaxes(title_text="β", scaleanchor="x", col=1)
    return figure


def shattering_depth_figure(points: Sequence[Mapping]) -> go.Figure:
    """Lag-1 autocorrelation of the input gradient along a line of inputs, against depth, plain and residual at
    initialisation (Balduzzi et al. Fig. 2–3). `points`: [{"model", "depth", "lag1_autocorrelation"}, …]."""
    figure = go.Figure()
    for net, prefix in (("plain", "plain"), ("residual", "resnet")):
        mine = sorted((point for point in points if point["model"].startswith(prefix)), key=lambda p: p["depth"])
        figure.add_scatter(x=[point["depth"] for point in mine], y=[point["lag1_autocorrelation"] for point in mine],
                           mode="lines+markers", name=f"{net} nets", line=dict(color=NET_COLORS[net]))
    _layout(figure, "Gradient autocorrelation at lag 1, at initialisation", "depth (weighted layers)",
            "lag-1 autocorrelation")
    figure.update_xaxes(type="log", tickvals=sorted({point["depth"] for point in points}))
    figure.update_yaxes(range=[-0.2, 1.05])
    return figure


def shattering_gradient_figure(lines: Mapping[str, Sequence[float]]) -> go.Figure:
    """The gradient along the line of inputs for a few nets (Balduzzi et al. Fig. 1: brown noise for residual
    nets, white noise for deep plain ones), each scaled to unit range. `lines`: label -> gradient values."""
    figure = make_subplots(rows=len(lines), cols=1, shared_xaxes=True, vertical_spacing=0.04,
                           subplot_titles=list(lines))
    for row, (label, values) in enumerate(lines.items(), start=1):
        spread = (max(values) - min(values)) or 1.0
        figure.add_scatter(x=list(range(len(values))), y=[(value - min(values)) / spread for value in values],
                           mode="lines", line=dict(color=_color(label), width=1), showlegend=False, row=row, col=1)
        figure.update_yaxes(showticklabels=False, row=row, col=1)
    figure.update_layout(title="Gradient along the line of inputs (scaled)", height=90 + 110 * len(lines),
                         margin=dict(l=10, r=10, t=60, b=10), template="plotly_white")
    figure.update_xaxes(title_text="input along the line", row=len(lines), col=1)
    return figure
