"""Every page, deep-linked on a fresh server in Debian's Chromium: it finishes running without an exception.

Screenshots land in test-artifacts/ (git-ignored) for a human to look at.
"""
import ast
import re
import socket
from pathlib import Path

import pytest
from helpers import REPO, WAIT_MS, load, no_errors, screenshot, serve_app

# Streamlit serves pages/N_Name.py at /Name, and the home page at /.
PAGES = [""] + [re.sub(r"^\d+_", "", path.stem) for path in sorted((REPO / "pages").glob("*.py"))]

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("page", PAGES, ids=[page or "home" for page in PAGES])
def test_page_renders_without_exception(page, app_server, browser_page):
    load(browser_page, f"{app_server}/{page}")
    no_errors(browser_page)
    screenshot(browser_page, f"page_{page or 'home'}.png")


def app_pages() -> list[tuple[str, str, str, str]]:
    """app_pages(), read without running the app (importing it would run its navigation)."""
    tree = ast.parse((REPO / "streamlit_app.py").read_text())
    value = next(node.value for node in tree.body if isinstance(node, ast.Assign) and node.targets[0].id == "PAGES")
    return ast.literal_eval(value)


def test_sidebar_names_the_home_page_home_even_when_a_fresh_server_is_first_asked_for_a_page(
        app_server_settings, browser_page, tmp_path):
    # Its own server: before any session has run st.navigation, Streamlit serves pages/ the old way.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with serve_app(port, tmp_path / "server.log", app_server_settings):
        load(browser_page, f"http://127.0.0.1:{port}/Runs")
        assert browser_page.title() == "Runs · ResNet Explorer"
        links = browser_page.get_by_test_id("stSidebarNav").locator("a")
        labels = [text.splitlines()[-1].strip() for text in links.all_inner_texts()]  # after the icon's name
        assert labels == ["Home"] + [label for _, label, _, _ in app_pages()]
        hrefs = [link.get_attribute("href").removeprefix(f"http://127.0.0.1:{port}") for link in links.all()]
        assert hrefs == ["/"] + ["/" + re.sub(r"^\d+_", "", Path(page).stem) for page, _, _, _ in app_pages()]
        links.first.click()
        browser_page.wait_for_selector("h1:has-text('ResNet Explorer')", timeout=WAIT_MS)
        assert browser_page.title() == "ResNet Explorer"


def test_a_changed_setting_is_written_into_the_url_and_the_url_reproduces_it(app_server, browser_page):
    load(browser_page, f"{app_server}/Architecture")
    browser_page.get_by_test_id("stSelectbox").filter(has_text="Depth").click()
    browser_page.get_by_role("option", name="110", exact=True).click()
    browser_page.wait_for_url(re.compile(r"[?&]arch_depth=110\b"), timeout=WAIT_MS)
    browser_page.wait_for_selector("h3:has-text('ResNet-110')", timeout=WAIT_MS)
    link = browser_page.url
    browser_page.goto("about:blank")
    load(browser_page, link)  # a new session, as a pasted link opens one
    browser_page.wait_for_selector("h3:has-text('ResNet-110')", timeout=WAIT_MS)
    no_errors(browser_page)
