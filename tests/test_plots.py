"""The shared figure helper: what a figure's CSV holds, and that every data figure of a page offers PNG and CSV."""
import io

import numpy as np
import pandas as pd

from explorer import explain_charts, plots
from explorer.training import charts as training_charts
from explorer.training.charts import RunCurves


def test_a_bar_charts_csv_has_its_points_and_axis_titles():
    table = plots.figure_table(explain_charts.top_k_figure([("cat", 0.5), ("dog", 0.25)], "Top"))
    assert table.to_dict("records") == [
        {"series": "", "x axis": "probability (%)", "x": 25.0, "y axis": "y", "y": "dog"},
        {"series": "", "x axis": "probability (%)", "x": 50.0, "y axis": "y", "y": "cat"}]


def test_a_heatmap_is_one_row_per_cell_and_an_image_under_an_overlay_is_left_out():
    matrix = plots.figure_table(explain_charts.confusion_matrix_figure([[3, 1], [0, 4]], ["a", "b"], "C"))
    assert len(matrix) == 4 and {"x", "y", "value"} <= set(matrix.columns)
    overlay = plots.figure_table(explain_charts.attribution_figure(np.zeros((4, 4, 3), np.uint8), np.ones((4, 4)),
                                                                   signed=False))
    assert len(overlay) == 16 and (overlay["value"] == 1).all()  # the attribution map, not the photo's pixels


def test_a_secondary_axis_keeps_its_own_title():
    frame = pd.DataFrame({"iteration": [1, 2], "loss": [2.3, 2.1], "smoothed_loss": [2.3, 2.2], "lr": [0.1, 0.05],
                          "error": [0.9, 0.8], "smoothed_error": [0.9, 0.85]})
    table = plots.figure_table(training_charts.loss_lr_figure([RunCurves(1, "ResNet-20", frame, frame)]))
    assert dict(table.groupby("series")["y axis"].first()) == {
        "ResNet-20 lr": "learning rate", "ResNet-20 test loss": "cross-entropy loss",
        "ResNet-20 train loss": "cross-entropy loss"}
    assert pd.read_csv(io.StringIO(table.to_csv(index=False))).shape == table.shape

