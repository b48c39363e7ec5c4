"""Shared fixtures. Append yours; prefix app fixtures `app_` and browser fixtures `browser_`."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture
def app_clear_caches() -> Iterator[None]:
    """Empty st.cache_data and st.cache_resource around a test: both outlive AppTest instances."""
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


@contextlib.contextmanager
def app_one_torch_thread() -> Iterator[None]:
    """Run with the app's single torch thread (explorer.setup), then restore this process's count.

    Pages cap torch threads when they set up; in-process AppTests must not leave that cap on other tests.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def app_torch_threads() -> Iterator[None]:
    with app_one_torch_thread():
        yield


@pytest.fixture(scope="module")
def app_free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serve_app(port: int, log: Path) -> Iterator[subprocess.Popen]:
    """`streamlit run streamlit_app.py` on 127.0.0.1:`port`, healthy when entered; stopped on exit."""
    command = [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
               "--server.port", str(port), "--server.address", "127.0.0.1", "--server.fileWatcherType", "none"]
    with log.open("a") as output:
        server = subprocess.Popen(command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT,
                                  env={"RESNET_EXPLORER_SPARES": "0",  # never warm processes in a user's data folder
                                       "RESNET_EXPLORER_HOME": str(log.parent / "server-home"),
                                       **os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not become healthy; its log:\n{log.read_text()}")
            time.sleep(0.2)
        yield server
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture(scope="module")
def app_server(app_free_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh `streamlit run streamlit_app.py` on a free port; yields its base URL."""
    with serve_app(app_free_port, tmp_path_factory.mktemp("streamlit") / "server.log"):
        yield f"http://127.0.0.1:{app_free_port}"


@pytest.fixture(scope="module")
def app_training_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A data folder for a module's server that trains: cap 2, no spares (they would outlive the test;
    test_jobs covers them). Request it before app_server, which reads the environment when it starts."""
    from resnet_core.runs import settings

    home = tmp_path_factory.mktemp("training-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RESNET_EXPLORER_HOME", str(home))
        patch.setenv(settings.CAP_VARIABLE, "2")
        patch.setenv(settings.SPARES_VARIABLE, "0")
        yield home


@pytest.fixture(scope="module")
def browser_page():
    """A Playwright page on Debian's Chromium (never a downloaded browser); skips when it is missing."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) to run browser tests")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        yield page
        browser.close()


@pytest.fixture
def app_empty_homes(tmp_path, monkeypatch) -> Path:
    """An empty run store and torch cache, and no dataset on the machine: what a fresh install sees.

    The demo checkpoints record the folder they were trained on; where that folder exists (the machine
    that trained them) the pages would read it, so tests hide it. Yields the data folder.
    """
    from explorer import models

    monkeypatch.setenv("RESNET_EXPLORER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(models, "local_dataset_source", lambda model, choice: None)
    return tmp_path / "home"


def _plotly_values(value):
    """A Plotly array from its JSON: a list, or the binary form {dtype, bdata, shape} numpy arrays take."""
    import base64

    import numpy as np

    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).tolist()
    return value


@pytest.fixture
def app_chart_traces():
    """A function: every Plotly trace an AppTest drew, by name, with x and y as plain lists."""
    import json

    def traces(at) -> dict[str, dict]:
        figures = [json.loads(element.proto.spec) for element in at.get("plotly_chart")]
        return {trace["name"]: {**trace, "x": _plotly_values(trace.get("x")), "y": _plotly_values(trace.get("y"))}
                for figure in figures for trace in figure["data"]}

    return traces
