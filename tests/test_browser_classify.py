"""Classify in a real browser: upload an image, see two top-5 bar charts and two attribution overlays."""
import pytest
from helpers import FIRST_RUN_MS, IDLE, WAIT_MS, eventually, load, screenshot

pytestmark = pytest.mark.browser


def test_upload_shows_bar_charts_and_overlays(app_server, browser_page, browser_ball_image):
    page = browser_page
    load(page, f"{app_server}/Classify")
    page.get_by_test_id("stMain").get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(browser_ball_image))
    page.wait_for_selector("text=Top-5 classes", timeout=WAIT_MS)
    page.wait_for_selector(IDLE, timeout=FIRST_RUN_MS)  # the first answer loads both networks

    def answers_drawn() -> None:  # Plotly draws after the script has finished
        kinds = page.evaluate("[...document.querySelectorAll('.js-plotly-plot')]"
                              ".map(plot => plot.data.map(trace => trace.type).join('+'))")
        assert kinds.count("bar") == 2 and kinds.count("image+heatmap") == 2, kinds

    eventually(answers_drawn)
    assert page.locator("[data-testid='stException']").count() == 0
    screenshot(page, "classify_upload.png")
