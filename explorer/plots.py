"""Every data figure of the app drawn the same way: Plotly's camera button saves it as a PNG named after it, and a
button beside it downloads the data it draws as CSV, one row per point."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

DATA_TRACES = ("scatter", "scattergl", "bar", "heatmap")  # an image trace is the input under an overlay, not data


def png_config(name: str) -> dict:
    """Plotly's config: the modebar's PNG download named `name`.png, at twice the screen's pixels for slides."""
    return {"toImageButtonOptions": {"format": "png", "filename": name, "scale": 2}, "displaylogo": False}


def _axis_title(figure: go.Figure, axis: str, anchor: str | None) -> str:
    # A trace on a subplot or a secondary axis names it "x2", "y3"…; the layout keeps its title under "xaxis2".
    layout_key = f"{axis}axis{(anchor or axis)[1:]}"
    title = figure.layout[layout_key].title.text if layout_key in figure.layout else None
    return title or axis


def figure_table(figure: go.Figure) -> pd.DataFrame:
    """The data a figure draws, one row per point (per cell of a heatmap): its series (the legend's name), x, y
    and, for a heatmap, the value, with the axes' titles, so a row reads alone."""
    rows = []
    for trace in figure.data:
        if trace.type not in DATA_TRACES:
            continue
        common = {"series": trace.name or "", "x axis": _axis_title(figure, "x", trace.xaxis),
                  "y axis": _axis_title(figure, "y", trace.yaxis)}
        if trace.type == "heatmap":
            values = np.asarray(trace.z, dtype=float)
            xs = list(trace.x) if trace.x is not None else list(range(values.shape[1]))
            ys = list(trace.y) if trace.y is not None else list(range(values.shape[0]))
            rows += [{**common, "x": x, "y": y, "value": values[row, column]}
                     for row, y in enumerate(ys) for column, x in enumerate(xs)]
        else:
            ys = list(trace.y) if trace.y is not None else []
            xs = list(trace.x) if trace.x is not None else list(range(len(ys)))
            rows += [{**common, "x": x, "y": y} for x, y in zip(xs, ys)]
    return pd.DataFrame(rows, columns=["series", "x axis", "x", "y axis", "y", "value"]).dropna(axis=1, how="all")


def show(figure: go.Figure, key: str, name: str) -> None:
    """Draw `figure` in the current container with its PNG (the camera) and, below it, its data as CSV; both
    files are called `name`."""
    st.plotly_chart(figure, key=key, config=png_config(name))
    st.download_button("Data (CSV)", lambda: figure_table(figure).to_csv(index=False).encode(),
                       file_name=f"{name}.csv", mime="text/csv", key=f"{key}_csv", on_click="ignore",
                       icon=":material/download:", type="tertiary",
                       help="The points this figure draws, one row each. The camera above the figure saves it as PNG.")
