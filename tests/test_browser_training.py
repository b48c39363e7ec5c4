"""A plain/residual pair trained from the Train page in Debian's Chromium: the chart gains points while the
runs train, a reload shows the same runs and the curves go on growing, and Cancel stops them.

Screenshots land in test-artifacts/ (git-ignored) for a human to look at.
"""
from __future__ import annotations

import os

import pytest
from helpers import WAIT_MS, eventually, load, screenshot, start_pair, wait_for_more_points

from resnet_core.runs.store import Store

expect = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed").expect

# ~0.1 s per iteration of ResNet-8 at batch 16 on one thread: the runs cannot end, even on a loaded machine, before
# the test cancels them once it has seen what it needs.
ITERATIONS, BATCH, TEST_EVERY = 2_000, 16, 20

pytestmark = pytest.mark.browser


def test_pair_trains_live_survives_a_reload_and_cancels(app_training_home, app_server, browser_page):
    page = browser_page
    page.set_viewport_size({"width": 1400, "height": 1800})
    start_pair(page, app_server, ITERATIONS, BATCH, TEST_EVERY)

    first = wait_for_more_points(page, 0)
    grown = wait_for_more_points(page, first + 4)
    store = Store(app_training_home)
    assert [run.model for run in store.runs()] == ["plain8", "resnet8"]
    assert page.url.endswith("runs=1%2C2") or page.url.endswith("runs=1,2")
    screenshot(page, "train_live.png")

    page.reload()
    page.wait_for_selector("h1", timeout=WAIT_MS)
    after_reload = wait_for_more_points(page, 0)
    assert after_reload >= grown  # the whole curve is back, not only what came after the reload
    wait_for_more_points(page, after_reload + 4)
    assert {run.status for run in store.runs()} == {"running"}
    screenshot(page, "train_after_reload.png")

    for button in page.get_by_role("button", name="Cancel").all():
        button.click()
        # The rerun shows the run as stopping, with Cancel disabled; the next click must wait for that rerun.
        expect(button).to_be_disabled()

    def both_cancelled() -> None:
        runs = store.runs()
        assert {run.status for run in runs} == {"cancelled"}, [(run.status, run.error) for run in runs]

    eventually(both_cancelled)
    expect(page.get_by_text("cancelled")).to_have_count(2)  # the next poll shows the runs as cancelled
    screenshot(page, "train_cancelled.png")
    assert all(store.latest_checkpoint(run.id) for run in store.runs())  # cancel keeps a checkpoint to resume from

    load(page, f"{app_server}/Runs")
    page.wait_for_selector(".js-plotly-plot", timeout=WAIT_MS)
    expect(page.get_by_text("cancelled").nth(1)).to_be_attached()  # at least two
    screenshot(page, "runs_page.png")
    assert os.environ["RESNET_EXPLORER_HOME"] == str(app_training_home)
