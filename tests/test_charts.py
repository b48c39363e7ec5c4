"""The pure figure builders and the tables they draw from."""
import pytest
from helpers import app_one_torch_thread

import resnet_core as rc
from explorer.architecture import charts, tables


@pytest.fixture(scope="module")
def layers():
    """Layer tables of the nets the diagram must handle: identity, zero-pad, projection, plain, 200-block stages."""
    with app_one_torch_thread():
        return {name: rc.layer_table(rc.build_model(name)) for name in ("resnet20", "plain20", "resnet50", "resnet1202")}


def boxes_per_row(figure) -> list[int]:
    """Box counts per diagram row, read from the rectangles' centres."""
    rows: dict[float, int] = {}
    for shape in figure.layout.shapes:
        if shape.type == "rect":
            centre = (shape.y0 + shape.y1) / 2
            rows[centre] = rows.get(centre, 0) + 1
    return [rows[y] for y in sorted(rows, reverse=True)]


def arc_traces(figure) -> dict[str, int]:
    """Shortcut arcs per legend name (arcs are separated by None in one trace per kind)."""
    return {trace.name: list(trace.x).count(None) for trace in figure.data if trace.mode == "lines"}


def test_block_table_names_blocks_as_the_paper_does(layers):
    blocks = tables.block_table(layers["resnet20"])
    assert list(blocks["label"]) == ["conv1"] + [f"conv{s}_{i}" for s in (2, 3, 4) for i in (1, 2, 3)] + ["head"]
    assert blocks["params"].sum() == layers["resnet20"]["params"].sum()
    assert list(blocks["shortcut"][1:-1]) == ["identity"] * 3 + ["zero-pad", "identity", "identity"] * 2
    assert set(tables.block_table(layers["plain20"])["shortcut"]) == {"none"}
    bottleneck = tables.block_table(layers["resnet50"])
    # Option B: a projection where the shape changes, the first block of every stage.
    assert list(bottleneck.loc[bottleneck["index"] == 0, "shortcut"][1:-1]) == ["projection"] * 4


def test_diagram_draws_each_shortcut_kind_apart(layers):
    figure = charts.network_diagram(tables.block_table(layers["resnet20"]), (3, 32, 32), expanded={"conv2_x"})
    assert arc_traces(figure) == {"identity shortcut": 3 + 2 * 1, "zero-pad shortcut (option A, stride 2)": 2}
    # conv2_x expanded (3 blocks); conv3_x and conv4_x collapsed to their first block and "× 2 more".
    assert boxes_per_row(figure) == [2, 3, 2, 2, 1]
    projection = charts.network_diagram(tables.block_table(layers["resnet50"]), (3, 224, 224))
    assert "projection shortcut (1×1 conv + BN)" in arc_traces(projection)
    styles = {trace.name: (trace.line.dash, trace.line.color) for trace in projection.data if trace.mode == "lines"}
    assert len(set(styles.values())) == len(styles)


def test_plain_nets_have_no_arcs(layers):
    figure = charts.network_diagram(tables.block_table(layers["plain20"]), (3, 32, 32), expanded={"conv2_x"})
    assert arc_traces(figure) == {}


def test_resnet1202_stays_readable_expanded_or_not(layers):
    blocks = tables.block_table(layers["resnet1202"])
    collapsed = charts.network_diagram(blocks, (3, 32, 32))
    assert boxes_per_row(collapsed) == [2, 2, 2, 2, 1]
    expanded = charts.network_diagram(blocks, (3, 32, 32), expanded={"conv2_x", "conv3_x", "conv4_x"})
    assert boxes_per_row(expanded) == [2] + [charts.MAX_BOXES_PER_ROW] * 3 + [1]
    hover = " ".join(expanded.data[-1].hovertext)
    assert "189 blocks like their neighbours" in hover


def test_depth_sweep_figure_plots_both_nets_on_log_axes():
    sweep = tables.pd.DataFrame([(20, "plain", 269_722, 40_552_426), (56, "plain", 853_018, 125_485_706),
                                 (20, "residual", 269_722, 40_552_426), (56, "residual", 853_018, 125_485_706)],
                                columns=["depth", "net", "params", "mult_adds"])
    figure = charts.depth_sweep_figure(sweep)
    assert [trace.name for trace in figure.data] == ["plain", "plain", "residual", "residual"]
    assert figure.layout.xaxis.type == figure.layout.yaxis2.type == "log"
    assert list(figure.layout.xaxis.tickvals) == [20, 56]


def test_residual_block_figure_shows_f_of_x_plus_x():
    texts = {annotation.text for annotation in charts.residual_block_figure().layout.annotations}
    assert {"<b>F(x)</b>", "<b>F(x) + x</b>", "x<br><i>identity</i>"} <= texts


def test_filter_and_difference_tables(layers):
    shown = tables.for_display(layers["resnet20"])
    assert set(tables.filter_rows(shown, " ZeroPad ")["kind"]) == {"ZeroPadShortcut"}
    assert len(tables.filter_rows(shown, "")) == len(shown)
    assert tables.filter_rows(shown, "16×32×32")["output_shape"].eq("16×32×32").all()
    assert tables.count_text(850_000) == "0.85 M" and tables.count_text(3.6e9) == "3.6 × 10⁹"
