"""Training curves in the paper's style: thin training lines, bold test lines, one colour per run, lr on log10."""
import pandas as pd

from explorer.training.charts import MAX_POINTS_PER_LINE, RunCurves, error_figure, loss_lr_figure, thinned
from resnet_core.runs.schema import METRIC_COLUMNS


def curves(run_id: int, iterations: int) -> RunCurves:
    train = pd.DataFrame([{"iteration": i, "kind": "train", "smoothed_error": 0.5, "smoothed_loss": 1.0, "lr": 0.1}
                          for i in range(1, iterations + 1)], columns=list(METRIC_COLUMNS))
    test = pd.DataFrame([{"iteration": iterations, "kind": "test", "error": 0.25, "loss": 0.7}],
                        columns=list(METRIC_COLUMNS))
    return RunCurves(run_id, f"#{run_id}", train, test)


def test_thin_train_bold_test_and_a_colour_per_run():
    figure = error_figure([curves(1, 5), curves(2, 5)])
    traces = {trace.name: trace for trace in figure.data}
    assert traces["#1 train"].line.width < traces["#1 test"].line.width
    assert traces["#1 train"].line.color == traces["#1 test"].line.color != traces["#2 test"].line.color
    assert list(traces["#2 test"].y) == [25.0] and list(traces["#1 train"].y) == [50.0] * 5
    assert figure.layout.yaxis.title.text == "error (%)"


def test_loss_and_learning_rate_share_a_chart_with_lr_on_a_log_axis():
    figure = loss_lr_figure([curves(3, 4)])
    assert [trace.name for trace in figure.data] == ["#3 train loss", "#3 test loss", "#3 lr"]
    assert figure.layout.yaxis2.type == "log" and figure.data[2].yaxis == "y2"


def test_long_runs_are_thinned_but_keep_their_last_point():
    frame = curves(1, 64_000).train
    kept = thinned(frame)
    assert len(kept) <= MAX_POINTS_PER_LINE + 1
    assert kept["iteration"].iloc[0] == 1 and kept["iteration"].iloc[-1] == 64_000
