"""AppTest of the Inside page: Fig. 7, gradient norms, a model's test report and its worst mistakes."""
import json

import numpy as np
import pytest
from helpers import REPO, app_assert_figures_download, app_finished_run, app_plotly_array, app_test, app_url_round_trip
from streamlit.testing.v1 import AppTest

from explorer import models

PAGE = str(REPO / "pages" / "6_Inside.py")
# The page's measurements (layer responses, gradient norms of the shipped reference nets) are shared by the module's
# tests, as by a server's sessions; a test that changes what they read clears them itself.
pytestmark = pytest.mark.usefixtures("app_module_caches", "app_torch_threads", "app_empty_homes")


def chart(at: AppTest, key: str) -> dict:
    (element,) = [element for element in at.get("plotly_chart") if element.proto.id and key in element.proto.id]
    return json.loads(element.proto.spec)


def traces(figure: dict) -> dict[str, list]:
    return {trace["name"]: trace for trace in figure["data"] if trace.get("showlegend", True)}


@pytest.fixture
def at() -> AppTest:
    return app_test(PAGE, timeout=120)


def test_fig7_trained_at_both_depths_by_default_and_at_initialisation(at):
    app_assert_figures_download(at, data_figures=5)  # Fig. 7 twice, gradients, accuracy, confusion matrix
    for depth in (20, 56):  # the reference pairs side by side
        trained = traces(chart(at, f"inside_fig7_{depth}"))
        assert set(trained) == {f"plain-{depth}", f"ResNet-{depth}"}
        # depth - 1 3x3 layers in a CIFAR net (stem + 6n), in the original order and sorted.
        assert all(len(app_plotly_array(trace["x"])) == depth - 1 for trace in chart(at, f"inside_fig7_{depth}")["data"])
        # Without CIFAR-10 here, the trained stds are the ones the reference export measured on its test set.
        recorded = models.shipped_metadata(f"reference:resnet{depth}")["layer_response_stds"]["std"]
        assert np.allclose(app_plotly_array(trained[f"ResNet-{depth}"]["y"]), recorded)
        # Fig. 7's point holds for these nets: residual responses are smaller than plain ones.
        residual, plain = (app_plotly_array(trained[f"{net}-{depth}"]["y"]) for net in ("ResNet", "plain"))
        assert np.mean(residual) < np.mean(plain)
    assert any("recorded when the reference nets were exported" in caption.value for caption in at.caption)
    # What the 12-epoch nets do not show yet is said, with their numbers, not implied.
    (caveat,) = [caption.value for caption in at.caption if "12 epochs" in caption.value]
    assert "ResNet-56's responses (0.93) are not yet smaller than ResNet-20's (0.85)" in caveat
    assert "ResNet-56 (23.5 % test error) is still behind ResNet-20 (18.5 %)" in caveat
    at.radio(key="inside_state").set_value("init").run()
    at.selectbox(key="inside_depth").select(56).run()
    assert not at.exception
    assert set(traces(chart(at, "inside_fig7_56"))) == {"plain-56", "ResNet-56"}
    assert not [caption for caption in at.caption if "12 epochs" in caption.value]


def test_gradient_norms_on_a_log_scale_init_and_trained(at):
    figure = chart(at, "inside_gradients")
    assert figure["layout"]["yaxis"]["type"] == "log"
    assert set(traces(figure)) == {"plain-56, at initialisation", "ResNet-56, at initialisation",
                                   "plain-56, trained", "ResNet-56, trained"}
    assert all(len(app_plotly_array(trace["y"])) == 56 and (app_plotly_array(trace["y"]) > 0).all()
               for trace in figure["data"])
    at.radio(key="inside_state").set_value("init").run()
    at.selectbox(key="inside_depth").select(110).run()  # no trained net of that depth
    assert set(traces(chart(at, "inside_gradients"))) == {"plain-110, at initialisation",
                                                          "ResNet-110, at initialisation"}


def test_the_reference_report_without_its_dataset(at):
    accuracy = chart(at, "inside_accuracy")["data"][0]
    assert accuracy["x"][0] == "airplane" and len(accuracy["x"]) == 10
    confusion = chart(at, "inside_confusion")["data"][0]
    assert len(confusion["y"]) == 10
    assert [info.value for info in at.info] == [
        "The test images are not on this machine: `python -m resnet_core train --data cifar10 …` downloads CIFAR-10 "
        "into the data folder, after which they appear here."]
    assert not at.image


def test_a_broken_run_is_one_line_and_the_figures_stay(app_empty_homes):
    app_finished_run(app_empty_homes, "noise", b"\0" * 100)
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.selectbox(key="inside_model").select("run:1").run()
    (error,) = [error.value for error in at.error]
    assert "truncated or not a safetensors checkpoint" in error and "\n" not in error
    assert not at.exception and chart(at, "inside_fig7_20")


def test_a_link_to_the_page_reproduces_its_nets_and_model():
    opened = app_url_round_trip(PAGE, {"inside_state": "init", "inside_depth": 56, "inside_model": "demo:resnet20"},
                                timeout=120)
    assert set(traces(chart(opened, "inside_fig7_56"))) == {"plain-56", "ResNet-56"}


# Last: with the dataset here the page measures other images, so it starts from empty caches and leaves them so.
@pytest.mark.usefixtures("app_clear_caches")
def test_mistakes_appear_when_the_dataset_is_here(monkeypatch):
    # Synthetic images stand in for the demo's CIFAR-10 folder: the same code path, in a second.
    monkeypatch.setattr(models, "local_dataset_source", lambda model, choice: "synthetic")
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception and not at.info
    at.toggle(key="inside_mistakes").set_value(True).run()
    assert not at.exception
    assert len(at.image) == 16 and "→" in at.image[0].proto.imgs[0].caption
