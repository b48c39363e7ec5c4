"""Every page, deep-linked on a fresh server in Debian's Chromium: it finishes running without an exception.

Screenshots land in test-artifacts/ (git-ignored) for a human to look at.
"""
import re

import pytest
from conftest import REPO, load, no_errors, screenshot

# Streamlit serves pages/N_Name.py at /Name, and the home page at /.
PAGES = [""] + [re.sub(r"^\d+_", "", path.stem) for path in sorted((REPO / "pages").glob("*.py"))]

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("page", PAGES, ids=[page or "home" for page in PAGES])
def test_page_renders_without_exception(page, app_server, browser_page):
    load(browser_page, f"{app_server}/{page}")
    no_errors(browser_page)
    screenshot(browser_page, f"page_{page or 'home'}.png")
