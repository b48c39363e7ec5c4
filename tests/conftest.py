"""Shared fixtures; the plain helpers and constants tests import are in helpers.py. Append yours; prefix app fixtures
`app_` and browser fixtures `browser_`.

No test sees a developer's own RESNET_EXPLORER_* settings: `isolated_home` removes them for every test and gives
it a fresh data folder, and a server gets only the settings its fixtures chose (`helpers.server_environment`).
"""
from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import (CHROMIUM, CHROMIUM_ARGS, SETTINGS_PREFIX, WAIT_MS, app_figures, app_one_torch_thread,
                     app_plotly_array, seed_speeds, serve_app)

from resnet_core.runs import settings


@pytest.fixture(autouse=True)
def isolated_home(monkeypatch, tmp_path_factory) -> Path:
    """A fresh data folder (empty but for a canned speed calibration, helpers.seed_speeds) as $RESNET_EXPLORER_HOME
    and none of the developer's other RESNET_EXPLORER_* settings, for every test: none reads or writes
    ~/.resnet-explorer or the developer's own folder. Autouse fixtures start before a test's other function
    fixtures, so those set their own settings on top."""
    for name in [name for name in os.environ if name.startswith(SETTINGS_PREFIX)]:
        monkeypatch.delenv(name)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv(settings.HOME_VARIABLE, str(home))
    seed_speeds(home)
    return home


@pytest.fixture
def app_home(isolated_home, monkeypatch, app_clear_caches, app_torch_threads) -> Path:
    """This test's data folder, for AppTests that train: a cap of 2 runs and no spares (they would outlive the
    test; test_jobs covers them)."""
    monkeypatch.setenv(settings.CAP_VARIABLE, "2")
    monkeypatch.setenv(settings.SPARES_VARIABLE, "0")
    return isolated_home


@pytest.fixture
def app_no_dispatcher(monkeypatch) -> None:
    """Pages without the server's dispatcher thread: queued runs stay queued rather than start training processes
    that would outlive the test."""
    from resnet_core.runs import dispatch

    monkeypatch.setattr(dispatch.Dispatcher, "keep_alive", lambda self: None)


@pytest.fixture
def app_clear_caches() -> Iterator[None]:
    """Empty st.cache_data and st.cache_resource around a test: both outlive AppTest instances."""
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture(scope="module")
def app_module_caches() -> Iterator[None]:
    """Empty st.cache_data and st.cache_resource around a module, not each test: for pages whose cached values depend
    only on their arguments (nets built from specs, the shipped reference nets), so the module's tests share what the
    first one computed, as a server's sessions do."""
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def app_torch_threads() -> Iterator[None]:
    with app_one_torch_thread():
        yield


@pytest.fixture(scope="module")
def app_free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def app_server_settings(tmp_path_factory) -> dict[str, str]:
    """The only RESNET_EXPLORER_* settings a module's servers get: a fresh data folder, a cap of 2 runs and no
    spares (they would outlive the test; test_jobs covers them)."""
    return {settings.HOME_VARIABLE: str(tmp_path_factory.mktemp("server-home")), settings.CAP_VARIABLE: "2",
            settings.SPARES_VARIABLE: "0"}


@pytest.fixture(scope="module")
def app_server(app_free_port: int, app_server_settings: dict[str, str],
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh `streamlit run streamlit_app.py` on a free port with app_server_settings; yields its base URL."""
    with serve_app(app_free_port, tmp_path_factory.mktemp("streamlit") / "server.log", app_server_settings):
        yield f"http://127.0.0.1:{app_free_port}"


@pytest.fixture
def app_training_home(app_server_settings: dict[str, str], monkeypatch) -> Path:
    """The data folder of the module's servers, with their settings made this test's own as well, so that what
    the test reads in-process (Store()) is what the servers train in."""
    for name, value in app_server_settings.items():
        monkeypatch.setenv(name, value)
    return Path(app_server_settings[settings.HOME_VARIABLE])


@pytest.fixture
def app_empty_homes(isolated_home, tmp_path, monkeypatch) -> Path:
    """An empty run store and torch cache, and no dataset on the machine: what a fresh install sees.

    The demo checkpoints record the folder they were trained on; where that folder exists (the machine
    that trained them) the pages would read it, so tests hide it. Yields the data folder.
    """
    from explorer import models

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(models, "local_dataset_source", lambda model, choice: None)
    return isolated_home


@pytest.fixture
def app_chart_traces():
    """A function: every Plotly trace an AppTest drew, by name, with x and y as plain lists."""

    def plain(value):
        return app_plotly_array(value).tolist() if isinstance(value, dict) else value

    def traces(at) -> dict[str, dict]:
        return {trace["name"]: {**trace, "x": plain(trace.get("x")), "y": plain(trace.get("y"))}
                for figure in app_figures(at) for trace in figure["data"]}

    return traces


# ------------------------------------------------------------------------------------------- browsers
@pytest.fixture(scope="module")
def browser_page():
    """A Playwright page on Debian's Chromium (never a downloaded browser); skips when it is missing."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) to run browser tests")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    sync_api.expect.set_options(timeout=WAIT_MS)  # Playwright's 5 s are too short beside two training processes
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        yield page
        browser.close()


@pytest.fixture
def browser_ball_image(tmp_path) -> Path:
    """A red square on blue sky to upload: a PNG file."""
    from PIL import Image

    path = tmp_path / "ball.png"
    picture = Image.new("RGB", (120, 90), (90, 150, 235))
    picture.paste((210, 30, 30), (40, 25, 80, 65))
    picture.save(path)
    return path


# The PostgreSQL fixtures live in services.py (the benchmarks use its server too); pytest finds fixtures here.
from services import *  # noqa: E402,F401,F403
