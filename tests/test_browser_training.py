"""A plain/residual pair trained from the Train page in Debian's Chromium: the chart gains points while the
runs train, a reload shows the same runs and the curves go on growing, and Cancel stops them.

Screenshots land in test-artifacts/ (git-ignored) for a human to look at.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from resnet_core.runs.store import Store

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
# Long enough to watch (~0.1 s per iteration of ResNet-8 at batch 16 on one thread), short enough for a test;
# the test cancels the runs once it has seen what it needs.
ITERATIONS, BATCH, TEST_EVERY = 400, 16, 20

pytestmark = pytest.mark.browser


def points(page) -> list[int]:
    """Points per trace of the first Plotly chart on the page (the error chart); _fullData holds the decoded
    arrays where data may hold Plotly's binary {dtype, bdata} form."""
    return page.locator(".js-plotly-plot").first.evaluate(
        "plot => (plot._fullData || []).map(trace => (trace.x || []).length)")


def wait_for_more_points(page, than: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if page.locator(".js-plotly-plot").count():
            total = sum(points(page))
            if total > than:
                return total
        page.wait_for_timeout(300)
    pytest.fail(f"the chart did not grow past {than} points in {timeout} s")


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / name, full_page=True)


def start_pair(page, url: str, iterations: int, batch: int, test_every: int) -> None:
    """Start plain-8 against ResNet-8 on the synthetic set from the Train page."""
    page.goto(f"{url}/Train")
    page.wait_for_selector("h1", timeout=60_000)
    page.wait_for_selector(IDLE, timeout=60_000)
    page.get_by_role("button", name="8 layers").click()
    # Each click reruns the script; the next widget must not be touched before the rerun has applied it.
    page.get_by_text("plain-8", exact=True).first.wait_for(timeout=60_000)
    page.wait_for_selector(IDLE)
    page.get_by_text("Synthetic (no download)").click()
    page.wait_for_selector(IDLE)
    for label, value in (("Number of iterations", iterations), ("Batch (images)", batch),
                         ("Test every (iterations)", test_every)):
        field = page.get_by_role("spinbutton", name=label)
        field.fill(str(value))
        field.press("Enter")
        page.wait_for_selector(IDLE)
    page.get_by_role("button", name="Start").click()


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
    page.wait_for_selector("h1", timeout=60_000)
    after_reload = wait_for_more_points(page, 0)
    assert after_reload >= grown  # the whole curve is back, not only what came after the reload
    wait_for_more_points(page, after_reload + 4)
    assert {run.status for run in store.runs()} == {"running"}
    screenshot(page, "train_after_reload.png")

    for button in page.get_by_role("button", name="Cancel").all():
        button.click()
        page.wait_for_timeout(500)
    deadline = time.monotonic() + 60
    while {run.status for run in store.runs()} != {"cancelled"}:
        assert time.monotonic() < deadline, [(run.status, run.error) for run in store.runs()]
        time.sleep(0.3)
    page.wait_for_timeout(2_000)  # the next poll shows the runs as cancelled
    assert page.get_by_text("cancelled").count() == 2
    screenshot(page, "train_cancelled.png")
    assert all(store.latest_checkpoint(run.id) for run in store.runs())  # cancel keeps a checkpoint to resume from

    page.goto(f"{app_server}/Runs")
    page.wait_for_selector("h1", timeout=60_000)
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    page.wait_for_selector(IDLE, timeout=60_000)
    page.wait_for_timeout(1_500)  # the table's canvas and Plotly draw after the script has finished
    assert page.get_by_text("cancelled").count() >= 2
    screenshot(page, "runs_page.png")
    assert os.environ["RESNET_EXPLORER_HOME"] == str(app_training_home)
