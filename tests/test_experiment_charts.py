"""The Experiments page's figures, from results as the jobs store them: what is drawn where, and partial results
(a surface half measured) drawn as far as they go."""
from __future__ import annotations

import pytest

from explorer.experiments import charts as experiment_charts

BLOCKS = [{"block": "layer1.0", "downsampling": False, "error": 0.25}, {"block": "layer2.0", "downsampling": True,
                                                                         "error": 0.6}]


def test_lesion_blocks_mark_downsampling_and_draw_the_intact_error():
    figure = experiment_charts.lesion_blocks_figure({"plain-56 reference": {"baseline": 0.5, "blocks": BLOCKS},
                                                     "ResNet-56 reference": {"baseline": 0.2, "blocks": BLOCKS}})
    plain, residual = figure.data
    assert list(plain.x) == ["layer1.0", "layer2.0"] and list(plain.y) == pytest.approx([25, 60])
    assert list(plain.marker.symbol) == ["circle", "x"]
    assert plain.line.color != residual.line.color
    assert [shape.y0 for shape in figure.layout.shapes] == pytest.approx([50, 20])  # the intact nets' errors


def test_lesion_k_draws_the_median_and_the_range_of_the_draws():
    figure = experiment_charts.lesion_k_figure({"ResNet-56": [{"k": 1, "errors": [0.2, 0.3, 0.4]},
                                                              {"k": 2, "errors": [0.3, 0.5, 0.6]}]})
    band, median = figure.data
    assert list(median.y) == pytest.approx([30, 50])
    assert list(band.y) == pytest.approx([40, 60, 30, 20])  # max going out, min coming back


def test_a_half_measured_surface_leaves_the_missing_rows_blank():
    surface = {"alphas": [-1, 0, 1], "betas": [-1, 0, 1], "rows": {0: [3.0, 2.0, 3.0]}}
    figure = experiment_charts.landscape_2d_figure({"plain-56": surface, "ResNet-56": surface})
    assert len(figure.data) == 2
    assert [list(row) for row in figure.data[0].z] == [[3.0, 2.0, 3.0], [None] * 3, [None] * 3]


def test_shattering_by_depth_splits_plain_from_residual_in_depth_order():
    points = [{"model": f"{kind}{depth}", "depth": depth, "lag1_autocorrelation": value}
              for kind, depth, value in (("plain", 56, 0.1), ("plain", 8, 0.9), ("resnet", 8, 0.95),
                                         ("resnet", 56, 0.8))]
    plain, residual = experiment_charts.shattering_depth_figure(points).data
    assert list(plain.x) == [8, 56] and list(plain.y) == [0.9, 0.1]
    assert list(residual.y) == [0.95, 0.8]
