"""Shared fixtures. Append yours; prefix app fixtures `app_` and browser fixtures `browser_`.

No test sees a developer's own RESNET_EXPLORER_* settings: `isolated_home` removes them for every test and gives
it a fresh data folder, and a server gets only the settings its fixtures chose (`server_environment`).
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from resnet_core.runs import settings

if TYPE_CHECKING:
    from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[1]
SETTINGS_PREFIX = "RESNET_EXPLORER_"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(autouse=True)
def isolated_home(monkeypatch, tmp_path_factory) -> Path:
    """A fresh, empty data folder as $RESNET_EXPLORER_HOME and none of the developer's other RESNET_EXPLORER_*
    settings, for every test: none reads or writes ~/.resnet-explorer or the developer's own folder. Autouse
    fixtures start before a test's other function fixtures, so those set their own settings on top."""
    for name in [name for name in os.environ if name.startswith(SETTINGS_PREFIX)]:
        monkeypatch.delenv(name)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv(settings.HOME_VARIABLE, str(home))
    return home


@pytest.fixture
def app_home(isolated_home, monkeypatch, app_clear_caches, app_torch_threads) -> Path:
    """This test's data folder, for AppTests that train: a cap of 2 runs and no spares (they would outlive the
    test; test_jobs covers them)."""
    monkeypatch.setenv(settings.CAP_VARIABLE, "2")
    monkeypatch.setenv(settings.SPARES_VARIABLE, "0")
    return isolated_home


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


def app_test(page: str, timeout: float = 60) -> AppTest:
    """An AppTest of the script `page` after its first run, which raised nothing."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(page, default_timeout=timeout).run()
    assert not at.exception, at.exception
    return at


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


def server_environment(chosen: dict[str, str]) -> dict[str, str]:
    """This process's environment without any RESNET_EXPLORER_* variable, then the `chosen` settings: a module's
    server starts before its tests' fixtures hide the developer's own, so it must never read them itself."""
    inherited = {name: value for name, value in os.environ.items() if not name.startswith(SETTINGS_PREFIX)}
    return {**inherited, **chosen, "PYTHONPATH": str(REPO)}


@contextlib.contextmanager
def serve_app(port: int, log: Path, chosen: dict[str, str]) -> Iterator[subprocess.Popen]:
    """`streamlit run streamlit_app.py` on 127.0.0.1:`port` with the `chosen` settings, healthy when entered;
    stopped on exit."""
    command = [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
               "--server.port", str(port), "--server.address", "127.0.0.1", "--server.fileWatcherType", "none"]
    with log.open("a") as output:
        server = subprocess.Popen(command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT,
                                  env=server_environment(chosen))
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
def app_empty_homes(isolated_home, tmp_path, monkeypatch) -> Path:
    """An empty run store and torch cache, and no dataset on the machine: what a fresh install sees.

    The demo checkpoints record the folder they were trained on; where that folder exists (the machine
    that trained them) the pages would read it, so tests hide it. Yields the data folder.
    """
    from explorer import models

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(models, "local_dataset_source", lambda model, choice: None)
    return isolated_home


def app_finished_run(home: Path, name: str, checkpoint: bytes, model: str = "resnet8") -> None:
    """A finished run of `model` in the store at `home` whose checkpoint file holds `checkpoint`, as it is."""
    import resnet_core as rc
    from resnet_core.runs.store import Store

    store = Store(home)
    run_id = store.create_run(name=name, spec=rc.get_spec(model).to_dict(), recipe=rc.Recipe().to_dict(),
                              data="synthetic", device="cpu", precision="fp32", seed=0)
    store.claim(run_id, os.getpid())
    path = store.run_dir(run_id) / "checkpoint.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(checkpoint)
    store.add_checkpoint(run_id, 1, path)
    store.finish(run_id, "finished")


def app_plotly_array(value):
    """A Plotly array from its JSON as numpy: a list, or the binary form {dtype, bdata, shape} numpy arrays take."""
    import base64

    import numpy as np

    if isinstance(value, dict):
        values = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        return values.reshape([int(n) for n in value["shape"].split(",")]) if "shape" in value else values
    return np.asarray(value, dtype=float)


def app_figures(at: AppTest) -> list[dict]:
    """Every Plotly figure an AppTest drew, as its JSON."""
    return [json.loads(element.proto.spec) for element in at.get("plotly_chart")]


@pytest.fixture
def app_chart_traces():
    """A function: every Plotly trace an AppTest drew, by name, with x and y as plain lists."""

    def plain(value):
        return app_plotly_array(value).tolist() if isinstance(value, dict) else value

    def traces(at) -> dict[str, dict]:
        return {trace["name"]: {**trace, "x": plain(trace.get("x")), "y": plain(trace.get("y"))}
                for figure in app_figures(at) for trace in figure["data"]}

    return traces
