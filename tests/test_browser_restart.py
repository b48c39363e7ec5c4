"""The Streamlit server dies mid-run (SIGKILL, as a crash or an OOM kill would) and comes back: the runs it
started go on in their own processes, and the new server's pages show them again, curves and all.

Screenshots land in test-artifacts/ (git-ignored)."""
from __future__ import annotations

import pytest
from helpers import WAIT_MS, eventually, load, screenshot, serve_app, start_pair, wait_for_more_points

from resnet_core.runs import processes
from resnet_core.runs.store import Store

expect = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed").expect

pytestmark = pytest.mark.browser


def test_runs_outlive_a_killed_server_and_show_again_on_the_next(app_training_home, app_server_settings,
                                                                 app_free_port, tmp_path, browser_page):
    home, port = app_training_home, app_free_port
    url, page = f"http://127.0.0.1:{port}", browser_page
    page.set_viewport_size({"width": 1400, "height": 2000})
    with serve_app(port, tmp_path / "first.log", app_server_settings) as server:
        start_pair(page, url, iterations=300, batch=16, test_every=20)
        before = wait_for_more_points(page, 0)
        server.kill()
        server.wait(timeout=10)
    store = Store(home)
    pids = [run.pid for run in store.runs()]
    assert len(pids) == 2 and all(processes.running(pid) for pid in pids)
    recorded = len(store.metrics(1))

    def still_training() -> None:  # with no server at all
        assert len(store.metrics(1)) > recorded

    eventually(still_training)

    with serve_app(port, tmp_path / "second.log", app_server_settings):
        page.reload()
        page.wait_for_selector("h1", timeout=WAIT_MS)
        wait_for_more_points(page, before)  # the whole curve is back and still growing
        screenshot(page, "restart_train.png")

        def both_finished() -> None:
            runs = store.runs()
            assert {run.status for run in runs} == {"finished"}, [(run.status, run.error) for run in runs]

        eventually(both_finished, timeout=120)
        load(page, f"{url}/Runs")
        page.wait_for_selector(".js-plotly-plot", timeout=WAIT_MS)
        screenshot(page, "restart_runs.png")
        expect(page.get_by_text("finished").nth(1)).to_be_attached()  # at least two
    assert [run.pid for run in store.runs()] == pids  # the same processes ran them to the end, no restart
