"""Classify in a real browser: upload an image, see two top-5 bar charts and two attribution overlays."""
from pathlib import Path

import pytest
from PIL import Image

from test_browser import ARTIFACTS, IDLE

pytestmark = pytest.mark.browser


def test_upload_shows_bar_charts_and_overlays(app_server, browser_page, tmp_path):
    image = Path(tmp_path) / "ball.png"
    picture = Image.new("RGB", (120, 90), (90, 150, 235))
    picture.paste((210, 30, 30), (40, 25, 80, 65))
    picture.save(image)
    browser_page.goto(f"{app_server}/Classify")
    browser_page.wait_for_selector("h1", timeout=60_000)
    browser_page.wait_for_selector(IDLE, timeout=120_000)
    browser_page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(image))
    browser_page.wait_for_selector("text=Top-5 classes", timeout=60_000)
    browser_page.wait_for_selector(IDLE, timeout=120_000)
    browser_page.wait_for_timeout(1_500)  # Plotly draws after the script has finished
    kinds = browser_page.evaluate(
        "[...document.querySelectorAll('.js-plotly-plot')].map(plot => plot.data.map(trace => trace.type).join('+'))")
    assert kinds.count("bar") == 2 and kinds.count("image+heatmap") == 2, kinds
    assert browser_page.locator("[data-testid='stException']").count() == 0
    # Streamlit scrolls inside its own container, so a full-page shot needs a viewport as tall as the content.
    height = browser_page.evaluate("document.querySelector('[data-testid=stMain]').scrollHeight")
    browser_page.set_viewport_size({"width": 1400, "height": max(height, 900)})
    ARTIFACTS.mkdir(exist_ok=True)
    browser_page.screenshot(path=ARTIFACTS / "classify_upload.png", full_page=True)
    browser_page.set_viewport_size({"width": 1400, "height": 900})
