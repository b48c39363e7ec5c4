"""AppTest of the Architecture page: totals follow every picker change and match resnet_core."""
import pytest
from helpers import REPO, app_test, app_url_round_trip
from streamlit.testing.v1 import AppTest

import resnet_core as rc

PAGE = str(REPO / "pages" / "1_Architecture.py")
pytestmark = pytest.mark.usefixtures("app_clear_caches", "app_torch_threads")


def expected_totals(spec: rc.NetSpec, batch_size: int = 128) -> dict[str, str]:
    """What the page must show, computed from resnet_core alone (metric values are the raw numbers)."""
    model = rc.build_model(spec)
    layers = rc.layer_table(model)
    mult_adds = int(layers["mult_adds"].sum())
    last = layers.loc[layers["stage"] != "head", "output_shape"].iloc[-1]
    return {
        "Depth": str(spec.depth),
        "Parameters": str(rc.count_parameters(model)),
        "Mult-adds per image": str(mult_adds),
        "FLOPs (2 × mult-adds)": str(2 * mult_adds),
        "Output size (C×H×W)": "×".join(map(str, last)),
        f"Activations (batch {batch_size})": str(rc.activation_bytes(layers, batch_size)),
    }


def shown_totals(at: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in at.metric}


@pytest.fixture
def at() -> AppTest:
    return app_test(PAGE)


def test_default_is_resnet56_with_the_papers_numbers(at):
    assert shown_totals(at) == expected_totals(rc.get_spec("resnet56"))
    paper = at.dataframe[0].value
    assert list(paper["source"]) == ["Table 6", "Table 6"]
    assert "0.85 M" in set(paper["paper"])
    assert not at.error


def test_depth_family_residual_and_shortcut_update_the_totals(at):
    at.selectbox(key="arch_depth").select(20).run()
    assert shown_totals(at) == expected_totals(rc.get_spec("resnet20"))
    at.toggle(key="arch_residual").set_value(False).run()
    assert shown_totals(at) == expected_totals(rc.get_spec("plain20"))
    at.toggle(key="arch_residual").set_value(True).run()
    at.radio(key="arch_shortcut").set_value("C").run()
    assert shown_totals(at) == expected_totals(rc.get_spec("resnet20", shortcut="C"))
    at.selectbox(key="arch_family").select("imagenet").run()
    # Changing the family resets depth and shortcut to the family's first net and default option (B).
    assert at.selectbox(key="arch_depth").value == 18
    assert shown_totals(at) == expected_totals(rc.get_spec("resnet18"))
    at.selectbox(key="arch_depth").select(50).run()
    at.selectbox(key="arch_variant").select("torchvision").run()
    assert shown_totals(at) == expected_totals(rc.get_spec("resnet50", variant="torchvision"))
    assert not at.exception


def test_batch_size_scales_the_activation_memory(at):
    at.number_input(key="arch_batch").set_value(32).run()
    assert shown_totals(at) == expected_totals(rc.get_spec("resnet56"), batch_size=32)


def test_custom_net_matches_its_spec(at):
    at.segmented_control(key="arch_mode").set_value("custom").run()
    at.slider(key="arch_stages").set_value(2).run()
    at.slider(key="arch_blocks1").set_value(5).run()
    at.select_slider(key="arch_width1").set_value(128).run()
    at.toggle(key="arch_residual").set_value(False).run()
    spec = rc.NetSpec(family="cifar", block="basic", blocks_per_stage=(3, 5), widths=(16, 128), residual=False)
    assert shown_totals(at) == expected_totals(spec)
    assert not at.error


def test_invalid_custom_net_shows_the_one_line_error(at):
    at.segmented_control(key="arch_mode").set_value("custom").run()
    at.slider(key="arch_stages").set_value(4).run()
    at.number_input(key="arch_input_size").set_value(4).run()
    with pytest.raises(ValueError) as raised:
        rc.NetSpec(family="cifar", block="basic", blocks_per_stage=(3, 3, 3, 3), widths=(16, 32, 64, 128),
                   input_size=4)
    assert [error.value for error in at.error] == [str(raised.value)]
    assert "\n" not in str(raised.value)
    assert not at.metric and not at.exception


def test_nets_too_large_to_summarise_are_refused_in_one_sentence(at):
    at.segmented_control(key="arch_mode").set_value("custom").run()
    for index in range(3):
        at.slider(key=f"arch_blocks{index}").set_value(200)
        at.select_slider(key=f"arch_width{index}").set_value(512)
    at.run()
    assert len(at.error) == 1 and at.error[0].value.startswith("This net would have about")
    assert not at.metric and not at.exception


def test_layer_table_views_filter_and_download(at):
    stages = at.dataframe[1].value
    assert list(stages["stage"]) == ["conv1", "conv2_x", "conv3_x", "conv4_x", "head"]
    at.segmented_control(key="arch_view").set_value("layers").run()
    at.text_input(key="arch_filter").input("DOWNSAMPLE").run()
    rows = at.dataframe[1].value
    # ResNet-56: one shortcut module per block.
    assert len(rows) == 27 and rows["name"].str.contains("downsample").all()
    assert at.get("download_button")[0].proto.label == "Download CSV"


def test_a_link_to_the_page_reproduces_its_net_and_batch():
    opened = app_url_round_trip(PAGE, {"arch_family": "imagenet", "arch_depth": 50, "arch_residual": False,
                                       "arch_variant": "torchvision", "arch_batch": 64})
    assert shown_totals(opened) == expected_totals(rc.get_spec("plain50", variant="torchvision"), 64)


def test_a_link_to_a_custom_net_reproduces_it():
    opened = app_url_round_trip(PAGE, {"arch_mode": "custom", "arch_stages": 2, "arch_blocks1": 5,
                                       "arch_width1": 128, "arch_shortcut": "B", "arch_input_size": 48})
    spec = rc.NetSpec(family="cifar", block="basic", blocks_per_stage=(3, 5), widths=(16, 128), residual=True,
                      shortcut="B", input_size=48, num_classes=10)
    assert shown_totals(opened) == expected_totals(spec)


def test_a_link_with_values_the_page_cannot_take_opens_on_its_defaults():
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params.update({"arch_depth": "57", "arch_batch": "many", "arch_residual": "false"})
    at.run()
    assert not at.exception and not at.error
    assert at.query_params == {"arch_residual": "false"}  # the others are dropped, and the widgets keep defaults
    assert at.number_input(key="arch_batch").value == 128 and at.subheader[0].value == "plain-56"
