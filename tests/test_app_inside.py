"""AppTest of the Inside page: Fig. 7, gradient norms, a model's test report and its worst mistakes."""
import json

import numpy as np
import pytest
from conftest import REPO, app_finished_run, app_plotly_array, app_test
from streamlit.testing.v1 import AppTest

from explorer import models

PAGE = str(REPO / "pages" / "6_Inside.py")
pytestmark = pytest.mark.usefixtures("app_clear_caches", "app_torch_threads", "app_empty_homes")


def chart(at: AppTest, key: str) -> dict:
    (element,) = [element for element in at.get("plotly_chart") if element.proto.id and key in element.proto.id]
    return json.loads(element.proto.spec)


def traces(figure: dict) -> dict[str, list]:
    return {trace["name"]: trace for trace in figure["data"] if trace.get("showlegend", True)}


@pytest.fixture
def at() -> AppTest:
    return app_test(PAGE, timeout=120)


def test_fig7_trained_by_default_and_at_initialisation(at):
    trained = traces(chart(at, "inside_fig7"))
    assert set(trained) == {"plain-20", "ResNet-20"}
    # 19 3x3 layers in a 20-layer CIFAR net (stem + 18), in the original order and sorted.
    assert all(len(app_plotly_array(trace["x"])) == 19 for trace in chart(at, "inside_fig7")["data"])
    # Without CIFAR-10 here, the trained stds are the ones the demo export measured on its test set.
    recorded = models.demo_metadata("resnet20")["layer_response_stds"]["std"]
    assert np.allclose(app_plotly_array(trained["ResNet-20"]["y"]), recorded)
    assert any("recorded when the demo was exported" in caption.value for caption in at.caption)
    at.radio(key="inside_state").set_value("init").run()
    at.selectbox(key="inside_depth").select(56).run()
    assert not at.exception
    assert set(traces(chart(at, "inside_fig7"))) == {"plain-56", "ResNet-56"}


def test_gradient_norms_on_a_log_scale_init_and_trained(at):
    figure = chart(at, "inside_gradients")
    assert figure["layout"]["yaxis"]["type"] == "log"
    assert set(traces(figure)) == {"plain-20, at initialisation", "ResNet-20, at initialisation",
                                   "plain-20, trained", "ResNet-20, trained"}
    assert all(len(app_plotly_array(trace["y"])) == 20 and (app_plotly_array(trace["y"]) > 0).all()
               for trace in figure["data"])
    at.radio(key="inside_state").set_value("init").run()
    at.selectbox(key="inside_depth").select(56).run()
    assert set(traces(chart(at, "inside_gradients"))) == {"plain-56, at initialisation", "ResNet-56, at initialisation"}


def test_the_demo_report_without_its_dataset(at):
    accuracy = chart(at, "inside_accuracy")["data"][0]
    assert accuracy["x"][0] == "airplane" and len(accuracy["x"]) == 10
    confusion = chart(at, "inside_confusion")["data"][0]
    assert len(confusion["y"]) == 10
    assert [info.value for info in at.info] == [
        "The test images are not on this machine: `python -m resnet_core train --data cifar10 …` downloads CIFAR-10 "
        "into the data folder, after which they appear here."]
    assert not at.image


def test_mistakes_appear_when_the_dataset_is_here(monkeypatch):
    # Synthetic images stand in for the demo's CIFAR-10 folder: the same code path, in a second.
    monkeypatch.setattr(models, "local_dataset_source", lambda model, choice: "synthetic")
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception and not at.info
    at.toggle(key="inside_mistakes").set_value(True).run()
    assert not at.exception
    assert len(at.image) == 16 and "→" in at.image[0].proto.imgs[0].caption


def test_a_broken_run_is_one_line_and_the_figures_stay(app_empty_homes):
    app_finished_run(app_empty_homes, "noise", b"\0" * 100)
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.selectbox(key="inside_model").select("run:1").run()
    (error,) = [error.value for error in at.error]
    assert "truncated or not a safetensors checkpoint" in error and "\n" not in error
    assert not at.exception and chart(at, "inside_fig7")
