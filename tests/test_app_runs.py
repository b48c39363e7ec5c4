"""AppTest of the Runs page: runs from the queue and the CLI listed, curves overlaid, CSV download, the
paper's Table 6 beside a full-recipe run, a failed run's reason, delete with confirmation."""
from __future__ import annotations

import io

import pandas as pd
import pytest
from helpers import (REPO, app_assert_figures_download, app_scene_model, app_test, app_url_params,
                     app_url_round_trip, eventually)
from streamlit.elements.widgets.button import ButtonMixin
from streamlit.testing.v1 import AppTest

from resnet_core import paper_recipe
from resnet_core.errors import StoreError
from resnet_core.nets.specs import get_spec
from resnet_core.runs import admission, control, dispatch
from resnet_core.runs.store import Store

PAGE = str(REPO / "pages" / "4_Runs.py")


@pytest.fixture
def app_runs(app_home) -> Store:
    """Two tiny finished runs trained by the queue, one failed run, and a full paper run recorded as the CLI does."""
    store = Store(app_home)
    for model in ("resnet8", "plain8"):
        admission.submit(model, "synthetic", iterations=4, batch_size=8, eval_every=2, store=store)
    dispatch.dispatch(store, cap=2)
    failed = admission.submit("resnet8", "synthetic", iterations=4, store=store)
    store.cancel_queued(failed)
    store.finish(failed, "failed", "Cannot read image /data/x.jpg (truncated); image folders may hold only readable "
                                   "JPEG, PNG or WebP files.")
    spec = get_spec("resnet20")
    full = store.create_run(name="paper", spec=spec.to_dict(), recipe=paper_recipe(spec).to_dict(), data="cifar10",
                            device="cuda", precision="bf16", seed=0)
    store.add_metrics(full, [{"iteration": 64_000, "kind": "test", "epoch": 163, "error": 0.0861, "loss": 0.3}])
    store.cancel_queued(full)
    store.finish(full, "finished")

    def both_finished() -> None:
        assert {store.run(1).status, store.run(2).status} == {"finished"}, [run.error for run in store.runs()]

    eventually(both_finished, timeout=90)
    return store


@pytest.fixture
def app_downloads(monkeypatch) -> dict[str, object]:
    """Key -> the data each download button was given. AppTest has no media server to fetch a download from,
    and these buttons defer their data to a callable that runs only when the file is asked for."""
    given = {}
    original = ButtonMixin.download_button

    def recording(container, label, data, *args, **kwargs):
        given[kwargs["key"]] = data
        return original(container, label, data, *args, **kwargs)

    monkeypatch.setattr(ButtonMixin, "download_button", recording)
    return given


def test_runs_are_listed_overlaid_downloaded_and_deleted(app_runs, app_chart_traces, app_downloads):
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["id"]) == [4, 3, 2, 1, -1, -2, -3, -4]  # the shipped references last, read-only
    assert list(table["status"]) == ["finished", "failed", "finished", "finished"] + ["reference"] * 4
    assert list(table["net"]) == ["ResNet-20", "ResNet-8", "plain-8", "ResNet-8", "plain-20", "ResNet-20",
                                  "plain-56", "ResNet-56"]
    full = table.set_index("id").loc[4]
    assert full["test error (%)"] == pytest.approx(8.61) and full["paper top-1 (%)"] == 8.75
    assert pd.isna(table.set_index("id").loc[1, "paper top-1 (%)"])  # a 4-iteration run is no paper run
    assert table["paper top-5 (%)"].isna().all()  # Table 6 has no top-5
    assert at.dataframe[0].proto.placeholder == ""  # the grid draws a missing number as an empty cell, not None
    assert list(table.columns[:2]) == ["id", "name"]  # the CLI's --name, else NET on DATA
    assert list(table["name"][:2]) == ["paper", "resnet8 on synthetic"]
    assert table.set_index("id").loc[3, "reason"].startswith("Cannot read image /data/x.jpg")
    assert table.set_index("id").loc[1, "recipe"] == (  # which recipe each run used
        "Short-run recipe: 4 iterations of 8; lr rising linearly to 0.1 over the first 2 iterations, then falling "
        "linearly to 0 at the end")
    assert full["recipe"] == ("Paper's recipe: 64,000 iterations of 128; lr 0.1, then ÷10 at 32,000 and 48,000")

    at.multiselect(key="runs_overlay").set_value([1, 2]).run()
    app_assert_figures_download(at, data_figures=2)  # error, then loss and learning rate
    traces = app_chart_traces(at)
    for run_id, label in ((1, "#1 ResNet-8"), (2, "#2 plain-8")):
        test = app_runs.metrics(run_id, "test")
        assert traces[f"{label} test"]["y"] == pytest.approx([100 * row["error"] for row in test])

    at.selectbox(key="runs_selected").set_value(2).run()
    csv = pd.read_csv(io.BytesIO(app_downloads["runs_csv"]()))
    # Every column of the store's metrics; a classifier run's mIoU is empty (NaN once read back).
    pd.testing.assert_frame_equal(csv, pd.DataFrame(app_runs.metrics(2)).astype({"miou": float}))
    assert app_downloads["runs_checkpoint"]() == app_runs.latest_checkpoint(2)[1].read_bytes()

    assert at.button(key="runs_delete").disabled
    at.checkbox(key="runs_confirm_delete").check().run()
    at.button(key="runs_delete").click().run()
    assert [run.id for run in app_runs.runs()] == [1, 3, 4]
    assert not app_runs.run_dir(2).exists()
    assert not at.checkbox(key="runs_confirm_delete").value


def test_an_empty_store_says_how_to_start_and_shows_the_references(app_home, app_chart_traces):
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert at.info[0].value.startswith("No runs yet: start one on the Train page")
    table = at.dataframe[0].value.set_index("id")
    assert table.loc[-2, "test error (%)"] == pytest.approx(18.51, abs=0.01)  # ResNet-20's, as shipped
    assert table.loc[-4, "iterations"] == 4680 and table.loc[-4, "status"] == "reference"
    assert set(app_chart_traces(at)) >= {"plain-20 reference test", "ResNet-20 reference test"}  # overlaid


def test_reference_runs_are_read_only(app_home, app_downloads):
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.selectbox(key="runs_selected").set_value(-4).run()
    assert at.button(key="runs_delete").disabled and at.checkbox(key="runs_confirm_delete").disabled
    assert app_downloads["runs_checkpoint"]() == (REPO / "resnet_core" / "reference" /
                                                  "resnet56.safetensors").read_bytes()
    store = Store(app_home)
    before = store.run(-4), store.metrics(-4)
    for action, done in (("delete", "deleted"), ("resume", "resumed"), ("cancel", "cancelled")):
        with pytest.raises(StoreError, match=f"Run -4 is the shipped resnet56 reference; it is read-only and cannot "
                                             f"be {done}."):
            getattr(control, action)(-4, store)
    assert (store.run(-4), store.metrics(-4)) == before


def test_a_run_created_while_the_runs_page_reads_is_shown_whole_or_not_at_all(app_home, app_no_dispatcher,
                                                                                  monkeypatch):
    """The page reads the runs and their latest values; a run another process creates between two of its queries
    must not break it (it raised KeyError when the two were separate snapshots)."""
    from explorer import run_service as page_runs
    from explorer.training import run_history

    store = Store(app_home)
    admission.submit("resnet8", "synthetic", iterations=4, store=store)
    other_process = Store(app_home)  # its own connection, as another training process or tab has
    original_runs = Store._training_runs
    created = []

    def runs_then_another_is_created(self, *args):
        result = original_runs(self, *args)
        if not created:  # the hook: right after the page's first read of the runs
            created.append(admission.submit("plain8", "synthetic", iterations=4, store=other_process))
        return result

    page_runs.store()  # the page's first visit adds the reference runs: done before the hook is set
    monkeypatch.setattr(Store, "_training_runs", runs_then_another_is_created)
    first = run_history.history()
    trained_here = lambda table: [run_id for run_id in table["id"] if run_id > 0]  # noqa: E731 (not references)
    assert created and trained_here(first) == [1]  # the snapshot is from before the new run
    monkeypatch.setattr(Store, "_training_runs", original_runs)
    assert trained_here(run_history.history()) == [2, 1]


def test_a_link_still_opens_its_run_after_the_run_changed_status(app_runs):
    spec = get_spec("resnet8")
    run_id, newer = (app_runs.create_run(name="resnet8 on synthetic", spec=spec.to_dict(), data="synthetic",
                                         recipe=paper_recipe(spec).to_dict(), device="cpu", precision="fp32", seed=0)
                     for _ in range(2))
    for cancelled in (run_id, newer):
        app_runs.cancel_queued(cancelled)
    at = app_test(PAGE)
    at.selectbox(key="runs_selected").set_value(run_id).run()  # not the newest, the page's default
    params = app_url_params(at, ["runs_selected"])
    app_runs.finish(run_id, "failed", "out of memory")  # e.g. a run that was training when the link was sent
    opened = AppTest.from_file(PAGE, default_timeout=60)
    opened.query_params.update(params)
    opened.run()
    assert opened.selectbox(key="runs_selected").value == run_id and opened.query_params == params


def test_a_link_to_the_page_reproduces_its_overlay_and_chosen_run(app_runs):
    opened = app_url_round_trip(PAGE, {"runs_overlay": [4, 1, 2], "runs_selected": 2})
    assert opened.multiselect(key="runs_overlay").value == [4, 1, 2]


def test_the_table_names_the_machine_each_run_trained_on(app_home, app_no_dispatcher, monkeypatch):
    """A cluster's run trains on one of its workers: the table says which (runs.node), and leaves the cell empty for a
    run no machine has taken yet and for the shipped references."""
    import os

    from resnet_core.runs import settings

    store = Store(app_home)
    waiting = admission.submit("plain8", "synthetic", iterations=4, store=store)
    monkeypatch.setenv(settings.NODE_VARIABLE, "worker-7")  # as a cluster's worker sets it
    trained = admission.submit("resnet8", "synthetic", iterations=4, store=store)
    assert store.claim(trained, os.getpid())
    store.finish(trained, "finished")
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    machines = at.dataframe[0].value.set_index("id")["machine"]
    assert machines[trained] == "worker-7"
    assert machines[waiting] == "" and (machines[machines.index < 0] == "").all()


def test_segment_runs_are_listed_with_their_miou_and_drawn_as_miou_curves(app_home, app_chart_traces):
    """A segmentation run (a scene model, issue 25) in the same table: its net is its head on its backbone, its test
    error its pixel error, its mIoU a column of its own; overlaid, its curve is its mIoU, beside the classifiers'
    error."""
    store = Store(app_home)
    run_id = app_scene_model(app_home)
    tests = store.metrics(run_id, "test")
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    table = at.dataframe[0].value.set_index("id")
    row = table.loc[run_id]
    assert (row["net"], row["status"], row["dataset"], row["iterations"]) == ("FCN · ResNet-8", "finished",
                                                                             "synthetic", 4)
    assert row["mIoU (%)"] == pytest.approx(100 * tests[-1]["miou"])
    assert row["test error (%)"] == pytest.approx(100 * tests[-1]["error"])  # its pixel error
    assert pd.isna(row["paper top-1 (%)"]) and table.loc[table.index < 0, "mIoU (%)"].isna().all()
    assert at.selectbox(key="runs_selected").format_func(run_id) == f"#{run_id} FCN · ResNet-8 on synthetic"

    at.multiselect(key="runs_overlay").set_value([run_id]).run()
    app_assert_figures_download(at, data_figures=2)  # mIoU instead of error, then loss and learning rate
    traces = app_chart_traces(at)
    assert traces[f"#{run_id} FCN · ResNet-8 test mIoU"]["y"] == pytest.approx([100 * row["miou"] for row in tests])
    assert traces[f"#{run_id} FCN · ResNet-8 test loss"]["y"] == pytest.approx([row["loss"] for row in tests])
    assert not any(name.endswith(" test") for name in traces)  # no error curve for it

    at.multiselect(key="runs_overlay").set_value([run_id, -2]).run()  # beside a classifier: both figures
    app_assert_figures_download(at, data_figures=3)
    assert {f"#{run_id} FCN · ResNet-8 test mIoU", "ResNet-20 reference test"} <= set(app_chart_traces(at))
