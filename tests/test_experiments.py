"""Experiments as queued jobs (lesion study, loss landscape) and the Experiments page: bad input refused in one
line with nothing queued, a job's steps in the store in the order the page draws them, and the page end to end."""
from __future__ import annotations

import pytest
from helpers import REPO, app_figures, app_url_round_trip, eventually
from streamlit.testing.v1 import AppTest

from resnet_core.errors import UserError
from resnet_core.explain import jobs
from resnet_core.nets.model import build_model
from resnet_core.nets.specs import get_spec
from resnet_core.runs.store import Store
from resnet_core.training.checkpoint import save_model

PAGE = str(REPO / "pages" / "7_Experiments.py")


@pytest.mark.parametrize("kind, models, data, settings, message", [
    ("ablation", ["reference:resnet20"], "synthetic", {}, "Unknown experiment 'ablation'; allowed: lesion, landscape"),
    ("lesion", ["reference:resnet20"], "cifar100", {}, "cifar100 has 100 classes but reference:resnet20"),
    ("lesion", ["reference:resnet20"], "synthetic", {"random_k": 10}, "deletes at most the 9 blocks of resnet20"),
    ("lesion", ["reference:resnet20"], "synthetic", {"images": 0}, "at least 1 test image"),
    ("landscape", ["reference:resnet20"], "synthetic", {"points": 1}, "2 to 401 points per axis"),
    ("landscape", ["reference:nothing"], "synthetic", {}, "No reference net 'nothing'"),
    ("lesion", ["42"], "synthetic", {}, "No run 42"),
])
def test_bad_experiments_are_one_line_and_queue_nothing(tmp_path, kind, models, data, settings, message):
    store = Store(tmp_path)
    with pytest.raises(UserError, match=message) as caught:
        jobs.submit_experiments(kind, models, data, store=store, **settings)
    assert "\n" not in str(caught.value) and store.experiments() == [] and store.runs() == []


def test_a_plain_net_whose_blocks_cannot_be_deleted_is_refused(tmp_path):
    path = tmp_path / "plain8-b.safetensors"
    save_model(path, build_model(get_spec("plain8", shortcut="B")))
    store = Store(tmp_path / "home")
    with pytest.raises(UserError, match="cannot lose block layer2.0"):
        jobs.submit_experiments("lesion", [str(path)], "synthetic", store=store)
    assert store.experiments() == []


def finished(store: Store, run_ids: list[int]) -> None:
    statuses = {run.id: (run.status, run.error) for run in store.experiments()}
    assert all(statuses[run_id][0] == "finished" for run_id in run_ids), statuses


def test_a_lesion_and_a_landscape_job_write_their_steps_in_order(app_home):
    store = Store(app_home)
    lesion = jobs.submit_experiments("lesion", ["reference:resnet20"], "synthetic", store=store, images=40,
                                     random_k=2, draws=2)
    landscape = jobs.submit_experiments("landscape", ["reference:plain20"], "synthetic", store=store, dims=2,
                                        points=3, span=0.5, images=20)
    eventually(lambda: finished(store, lesion + landscape), timeout=120)
    steps = store.results(lesion[0])
    assert [step["type"] for step in steps] == ["baseline"] + ["block"] * 9 + ["random"] * 4
    assert steps[1]["block"] == "layer1.0" and [step["downsampling"] for step in steps[1:10]].count(True) == 2
    assert all(0 <= step["error"] <= 1 for step in steps)
    surface = store.results(landscape[0])
    assert surface[0] == {"type": "axes", "alphas": [-0.5, 0.0, 0.5], "betas": [-0.5, 0.0, 0.5]}
    assert [step["row"] for step in surface[1:]] == [0, 1, 2] and all(len(step["loss"]) == 3 for step in surface[1:])
    assert store.runs() == []  # experiments are not training runs: the Runs page does not list them


def test_the_page_runs_a_lesion_pair_and_draws_it(app_home):
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert at.selectbox(key="lesion_plain").value == "reference:plain56"
    assert at.selectbox(key="lesion_residual").value == "reference:resnet56"
    at.selectbox(key="lesion_plain").set_value("reference:plain20")
    at.selectbox(key="lesion_residual").set_value("reference:resnet20")
    at.radio(key="lesion_data").set_value("synthetic")
    at.number_input(key="lesion_images").set_value(100)
    at.number_input(key="lesion_k").set_value(1)
    at.number_input(key="lesion_draws").set_value(1)
    at.button(key="lesion_start").click().run()
    assert not at.exception and not at.error
    store = Store(app_home)
    run_ids = [run.id for run in store.experiments()]
    assert len(run_ids) == 2
    eventually(lambda: finished(store, run_ids), timeout=120)
    at.run()
    assert not at.exception
    figures = {figure["layout"]["title"]["text"]: figure for figure in app_figures(at)}
    blocks = figures["Test error with one block deleted (× = downsampling block)"]
    assert {trace["name"] for trace in blocks["data"]} == {"plain-20 reference, one block deleted",
                                                           "ResNet-20 reference, one block deleted"}
    assert "Test error with k random blocks deleted" in figures
    assert any(button.label == "Results (CSV)" for button in at.get("download_button"))
    # The URL names the pair, so a link shows them in another session.
    assert at.query_params["lesion"] == ",".join(map(str, run_ids))
    linked = AppTest.from_file(PAGE, default_timeout=60)
    linked.query_params["lesion"] = at.query_params["lesion"]
    linked.run()
    assert not linked.exception
    assert blocks in app_figures(linked)


def test_a_link_to_the_page_reproduces_its_models_and_settings(app_home):
    app_url_round_trip(PAGE, {"lesion_plain": "reference:plain20", "lesion_data": "synthetic", "lesion_images": 500,
                              "lesion_k": 3, "landscape_residual": "demo:resnet20", "landscape_dims": 2,
                              "landscape_points_2": 11, "landscape_span": 0.5, "shattering_depths": [8, 20],
                              "shattering_seed": 3})


def test_shattering_is_measured_in_the_page(app_home):
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.multiselect(key="shattering_depths").set_value([8, 20])
    at.toggle(key="shattering_measure").set_value(True).run()
    assert not at.exception
    titles = [figure["layout"]["title"]["text"] for figure in app_figures(at)]
    assert "Gradient autocorrelation at lag 1, at initialisation" in titles
    table = at.dataframe[0].value
    assert set(table["model"]) == {"plain8", "resnet8", "plain20", "resnet20"}
