"""AppTest of the home page: renders, links only to pages that exist, and never imports torch."""
import re
import subprocess
import sys

from helpers import REPO, app_figures
from streamlit.testing.v1 import AppTest

HOME = str(REPO / "streamlit_app.py")


def test_home_renders_the_story_the_block_and_links():
    at = AppTest.from_file(HOME, default_timeout=30).run()
    assert not at.exception
    assert [header.value for header in at.subheader][:3] == [
        "The degradation problem", "Residual learning: F(x) + x", "What it achieved"]
    block = app_figures(at)[0]
    assert "<b>F(x) + x</b>" in {annotation.get("text") for annotation in block["layout"]["annotations"]}
    # Links carry the page's URL name: its file name without the ordering number.
    links = {link.proto.page for link in at.get("page_link")}
    assert links == {re.sub(r"^\d+_", "", path.stem) for path in (REPO / "pages").glob("*.py")}


def test_home_imports_no_torch():
    """The Home page is every visitor's first: it must not pay torch's import (seconds on a loaded server). A fresh
    interpreter, since this test process has torch loaded already; how fast it loads is not timed here (a loaded
    machine would make that flaky)."""
    script = f"""
import sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file({HOME!r}, default_timeout=30)
at.run()
at.run()
print(not at.exception, "torch" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.split()[-2:] == ["True", "False"]
