"""The Streamlit server dies mid-run (SIGKILL, as a crash or an OOM kill would) and comes back: the runs it
started go on in their own processes, and the new server's pages show them again, curves and all.

Screenshots land in test-artifacts/ (git-ignored)."""
from __future__ import annotations

import time

import pytest
from conftest import serve_app
from test_browser_training import IDLE, screenshot, start_pair, wait_for_more_points

from resnet_core.runs import workers
from resnet_core.runs.store import Store

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
    assert len(pids) == 2 and all(workers.process_running(pid) for pid in pids)
    recorded = len(store.metrics(1))
    time.sleep(2)
    assert len(store.metrics(1)) > recorded  # still training with no server at all

    with serve_app(port, tmp_path / "second.log", app_server_settings):
        page.reload()
        page.wait_for_selector("h1", timeout=60_000)
        wait_for_more_points(page, before)  # the whole curve is back and still growing
        screenshot(page, "restart_train.png")
        deadline = time.monotonic() + 120
        while {run.status for run in store.runs()} != {"finished"}:
            assert time.monotonic() < deadline, [(run.status, run.error) for run in store.runs()]
            time.sleep(0.5)
        page.goto(f"{url}/Runs")
        page.wait_for_selector(".js-plotly-plot", timeout=60_000)
        page.wait_for_selector(IDLE, timeout=60_000)
        page.wait_for_timeout(1_500)  # the table's canvas draws after the script has finished
        screenshot(page, "restart_runs.png")
        assert page.get_by_text("finished").count() >= 2
    assert [run.pid for run in store.runs()] == pids  # the same processes ran them to the end, no restart
