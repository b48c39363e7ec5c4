"""AppTest of the Compare page: two nets, their differences and the depth sweep."""
import pytest
from helpers import REPO, app_assert_figures_download, app_figures, app_test, app_url_round_trip
from streamlit.testing.v1 import AppTest

import resnet_core as rc

PAGE = str(REPO / "pages" / "2_Compare.py")
# Every value the page caches is a net built from its spec: the module's tests share them (~5 s the first time).
pytestmark = pytest.mark.usefixtures("app_module_caches", "app_torch_threads")


def params(spec: rc.NetSpec) -> int:
    return rc.count_parameters(rc.build_model(spec))


def shortcut_params(spec: rc.NetSpec) -> int:
    layers = rc.layer_table(rc.build_model(spec))
    return int(layers.loc[layers["name"].str.contains("downsample"), "params"].sum())


def differences(at: AppTest):
    table = at.dataframe[0].value
    return table.set_index("quantity")


@pytest.fixture
def at() -> AppTest:
    # The depth sweep summarises twelve CIFAR nets on the first run.
    return app_test(PAGE, timeout=90)


def test_default_is_plain34_against_resnet34(at):
    assert [header.value for header in at.subheader][:2] == ["plain-34", "ResNet-34"]
    left, right = rc.get_spec("plain34"), rc.get_spec("resnet34", shortcut="A")
    table = differences(at)
    assert table.loc["Parameters"].tolist() == [params(left), params(right), params(right) - params(left)]
    # Option A: the residual twin adds no parameters, only one addition per value of each block's output.
    assert table.loc["… of which in shortcuts"].tolist() == [0, 0, 0]
    assert table.loc["Shortcut additions per image"].iloc[1] > 0
    parameters = [metric.value for metric in at.metric if metric.label == "Parameters"]
    assert parameters == [str(params(left)), str(params(right))]


def test_the_depth_sweep_covers_the_cifar_family_plain_and_residual(at):
    sweep = next(chart for chart in app_figures(at) if chart["layout"]["xaxis"].get("type") == "log")
    names = {trace["name"] for trace in sweep["data"]}
    assert names == {"plain", "residual"}
    assert sweep["layout"]["xaxis"]["tickvals"] == list(rc.specs.CIFAR_PAPER_DEPTHS)
    app_assert_figures_download(at, data_figures=1)  # the two diagrams save as PNG; their data is the layer table


def test_quick_switch_to_56_and_shortcut_change(at):
    at.button(key="compare_pair_56").click().run()
    assert [header.value for header in at.subheader][:2] == ["plain-56", "ResNet-56"]
    assert [metric.value for metric in at.metric if metric.label == "Parameters"] == [
        str(params(rc.get_spec("plain56"))), str(params(rc.get_spec("resnet56")))]
    at.radio(key="right_shortcut").set_value("B").run()
    resnet56_b = rc.get_spec("resnet56", shortcut="B")
    assert differences(at).loc["… of which in shortcuts"].iloc[1] == shortcut_params(resnet56_b) > 0
    at.selectbox(key="left_depth").select(20).run()
    assert differences(at).loc["Depth (weighted layers)"].tolist() == [20, 56, 36]


def test_invalid_custom_net_shows_the_one_line_error(at):
    at.segmented_control(key="left_mode").set_value("custom").run()
    at.number_input(key="left_input_size").set_value(16).run()
    # The default custom ImageNet net has 4 stages, so it needs 4 × 2³ = 32 pixels.
    assert [error.value for error in at.error] == [
        "input_size must be at least 32 pixels for 4 stages of the imagenet family; got 16."]
    assert not at.metric and not at.exception


def test_a_link_to_the_page_reproduces_both_nets():
    # Left: CIFAR's first depth is also where a family change puts it, so only a changed family travels for it.
    opened = app_url_round_trip(PAGE, {"left_family": "cifar", "left_depth": 110, "right_depth": 152,
                                       "right_shortcut": "C", "compare_batch": 32}, timeout=90)
    assert [header.value for header in opened.subheader][:2] == ["plain-110", "ResNet-152"]
