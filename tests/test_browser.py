"""Every page, deep-linked on a fresh server in Debian's Chromium: it finishes running without an exception.

Screenshots land in test-artifacts/ (git-ignored) for a human to look at.
"""
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
# Streamlit serves pages/N_Name.py at /Name, and the home page at /.
PAGES = [""] + [re.sub(r"^\d+_", "", path.stem) for path in sorted((REPO / "pages").glob("*.py"))]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("page", PAGES, ids=[page or "home" for page in PAGES])
def test_page_renders_without_exception(page, app_server, browser_page):
    browser_page.goto(f"{app_server}/{page}")
    # The app reports idle before its first run starts, so wait for content as well as for idleness.
    browser_page.wait_for_selector("h1", timeout=60_000)
    browser_page.wait_for_selector(IDLE, timeout=120_000)
    assert browser_page.locator("[data-testid='stException']").count() == 0
    assert browser_page.locator("[data-testid='stAlertContentError']").count() == 0
    browser_page.wait_for_timeout(1_000)  # Plotly draws after the script has finished
    # Streamlit scrolls inside its own container, so a full-page shot needs a viewport as tall as the content.
    height = browser_page.evaluate(
        "Math.max(...[...document.querySelectorAll('[data-testid=stMain]')].map(e => e.scrollHeight), 900)")
    browser_page.set_viewport_size({"width": 1400, "height": height})
    ARTIFACTS.mkdir(exist_ok=True)
    browser_page.screenshot(path=ARTIFACTS / f"page_{page or 'home'}.png", full_page=True)
    browser_page.set_viewport_size({"width": 1400, "height": 900})
