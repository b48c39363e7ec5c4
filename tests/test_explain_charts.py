"""Pure figure builders of the Classify and Inside pages."""
import numpy as np
import pandas as pd

from explorer import explain_charts as charts


def test_top_k_puts_the_likeliest_class_on_top_in_percent():
    figure = charts.top_k_figure([("cat", 0.7), ("dog", 0.2), ("ship", 0.1)])
    bar = figure.data[0]
    assert list(bar.y) == ["ship", "dog", "cat"] and list(bar.x) == [10, 20, 70]  # plotly draws bottom-up


def test_attribution_overlay_scales_signed_and_magnitude_maps():
    image = np.zeros((32, 32, 3), np.uint8)
    signed = charts.attribution_figure(image, np.zeros((32, 32)), signed=True)
    assert [trace.type for trace in signed.data] == ["image", "heatmap"]
    assert (signed.data[1].zmin, signed.data[1].zmax, signed.data[1].colorscale[0][1]) == (-1, 1, "rgb(5,48,97)")
    magnitude = charts.attribution_figure(image, np.zeros((32, 32)), signed=False)
    assert (magnitude.data[1].zmin, magnitude.data[1].zmax) == (0, 1)


def test_fig7_draws_original_and_sorted_order():
    tables = {net: pd.DataFrame({"layer": [1, 2, 3], "name": ["a", "b", "c"], "std": stds})
              for net, stds in (("plain", [1.0, 3.0, 2.0]), ("residual", [0.5, 0.2, 0.4]))}
    figure = charts.layer_response_figure(tables, depth=8)
    plain = [trace for trace in figure.data if trace.name == "plain-8"]
    assert list(plain[0].y) == [1.0, 3.0, 2.0] and list(plain[1].y) == [3.0, 2.0, 1.0]


def test_confusion_matrix_colours_by_row_fraction_and_labels_counts():
    figure = charts.confusion_matrix_figure([[3, 1], [0, 4]], ["a", "b"])
    heatmap = figure.data[0]
    assert np.allclose(heatmap.z, [[0.75, 0.25], [0, 1]]) and heatmap.text.tolist() == [[3, 1], [0, 4]]


def test_gradient_norms_on_a_log_axis_with_dotted_initialisation():
    table = pd.DataFrame({"layer": [1, 2], "name": ["conv1", "fc"], "kind": ["Conv2d", "Linear"],
                          "grad_norm": [0.1, 1.0]})
    figure = charts.gradient_norm_figure({("plain", "init"): table, ("residual", "trained"): table}, depth=20)
    assert figure.layout.yaxis.type == "log"
    assert [(trace.name, trace.line.dash) for trace in figure.data] == [
        ("plain-20, at initialisation", "dot"), ("ResNet-20, trained", "solid")]
