"""Plain helpers and constants the tests import (`from helpers import ...`): AppTest drivers, a streamlit server of
the app, waits for what a browser draws, and the timeouts they share. Fixtures live in conftest.py.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"  # screenshots for a human to look at (git-ignored)
SETTINGS_PREFIX = "RESNET_EXPLORER_"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
WAIT_S = 60  # generous: two cores, training processes and maybe someone else's tests
WAIT_MS = WAIT_S * 1000
FIRST_RUN_MS = 120_000  # a page's first run on a fresh server imports torch and builds its nets
POLL_S = 0.3
# True once the frontend has drawn what the script sent, which it does a little after the script has finished:
# no lazily loaded element is still a placeholder, and every shown Plotly chart is plotted and every shown table
# has its canvas (those in a tab not chosen are drawn only when it is).
DRAWN = """() => {
    const shown = testId => [...document.querySelectorAll(`[data-testid=${testId}]`)].filter(e => e.checkVisibility());
    return !document.querySelector('[data-testid=stSkeleton]')
        && shown('stPlotlyChart').every(chart => chart.querySelector('.js-plotly-plot')?._fullData
                                                 && chart.querySelector('.main-svg'))
        && shown('stDataFrame').every(table => table.querySelector('canvas'));
}"""
# The points in the page's first Plotly chart (the Train page's error chart), all traces together, once they are
# more than `than`; false before. _fullData holds decoded arrays where data may hold Plotly's binary form.
MORE_POINTS = """than => {
    const chart = document.querySelector('.js-plotly-plot');
    const total = chart ? (chart._fullData || []).reduce((sum, trace) => sum + (trace.x || []).length, 0) : 0;
    return total > than && total;
}"""


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


def app_test(page: str, timeout: float = 60) -> AppTest:
    """An AppTest of the script `page` after its first run, which raised nothing."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(page, default_timeout=timeout).run()
    assert not at.exception, at.exception
    return at


URL_WIDGETS = ("selectbox", "radio", "multiselect", "toggle", "checkbox", "number_input", "slider", "select_slider",
               "text_input", "segmented_control")


def app_widget(at: AppTest, key: str):
    """The widget with `key`, whatever its kind."""
    for kind in URL_WIDGETS:
        try:
            return getattr(at, kind)(key=key)
        except KeyError:
            continue
    raise KeyError(key)


def app_url_params(at: AppTest, keys) -> dict[str, str | list[str]]:
    """The query parameters a browser writes for the bound widgets `keys` as they stand: each widget's value as
    it travels (a choice's label, true/false, the number), encoded by Streamlit's own URL writer."""
    from streamlit.runtime.state.query_params import _coerce_value_for_query_url

    params = {}
    for key in keys:
        state = app_widget(at, key)._widget_state
        kind = state.WhichOneof("value")
        value = getattr(state, kind)
        value = _coerce_value_for_query_url(list(value.data) if kind.endswith("_array_value") else value, kind)
        params[key] = value[0] if isinstance(value, list) and len(value) == 1 else value  # ?k=v is one value
    return params


def app_url_round_trip(page: str, changes: dict[str, object], timeout: float = 60) -> AppTest:
    """Change the widgets of `page` (in order, a run after each), then open the page afresh with the URL those
    values give it, as a pasted link does; it must show the same values and keep every parameter (a value the
    page cannot take would be dropped). Returns the reopened page."""
    from streamlit.testing.v1 import AppTest

    at = app_test(page, timeout)
    for key, value in changes.items():
        app_widget(at, key).set_value(value)
        at.run()
        assert not at.exception, at.exception
    params = app_url_params(at, changes)
    opened = AppTest.from_file(page, default_timeout=timeout)
    opened.query_params.update(params)
    opened.run()
    assert not opened.exception, opened.exception
    assert {key: app_widget(opened, key).value for key in changes} == changes
    assert opened.query_params == params, "a parameter was dropped as invalid"
    return opened


def server_environment(chosen: dict[str, str]) -> dict[str, str]:
    """This process's environment without any RESNET_EXPLORER_* variable, then the `chosen` settings: a module's
    server starts before its tests' fixtures hide the developer's own, so it must never read them itself."""
    inherited = {name: value for name, value in os.environ.items() if not name.startswith(SETTINGS_PREFIX)}
    return {**inherited, **chosen, "PYTHONPATH": str(REPO)}


# A canned calibration (resnet_core.speed) written into every test's data folder, so no page or command waits ~20 s
# for a real one; test_speed measures for real. Speeds of the order of a 2-core CPU's, in images per second.
CANNED_SPEEDS = {"resnet20": (500.0, 2_000.0), "resnet56": (180.0, 700.0)}
CANNED_OVERHEAD_S = 3.0


def seed_speeds(home: Path) -> None:
    """Write CANNED_SPEEDS as this machine's calibration into `home`'s speed book, under every device, precision and
    thread count a test's settings may give this server."""
    from resnet_core.speed import book
    from resnet_core.training.device import pick_device

    machine = book.this_machine()
    book.record([book.Measurement(net, pick_device().type, precision, threads, train, test, CANNED_OVERHEAD_S,
                                  book.CALIBRATION, machine, time.time())
                 for net, (train, test) in CANNED_SPEEDS.items() for precision in ("fp32", "bf16")
                 for threads in range(1, (os.cpu_count() or 1) + 1)], home)


@contextlib.contextmanager
def serve_app(port: int, log: Path, chosen: dict[str, str]) -> Iterator[subprocess.Popen]:
    """`streamlit run streamlit_app.py` on 127.0.0.1:`port` with the `chosen` settings, healthy when entered;
    stopped on exit."""
    if "RESNET_EXPLORER_HOME" in chosen:
        seed_speeds(Path(chosen["RESNET_EXPLORER_HOME"]))
    command = [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
               "--server.port", str(port), "--server.address", "127.0.0.1", "--server.fileWatcherType", "none"]
    with log.open("a") as output:
        server = subprocess.Popen(command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT,
                                  env=server_environment(chosen))
    try:
        deadline = time.monotonic() + WAIT_S
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


def app_finished_run(home: Path, name: str, checkpoint: bytes, model: str = "resnet8") -> None:
    """A finished run of `model` in the store at `home` whose checkpoint file holds `checkpoint`, as it is."""
    import resnet_core as rc
    from resnet_core.runs.store import Store

    store = Store(home)
    (run_id,) = store.create_runs([dict(name=name, spec=rc.get_spec(model).to_dict(), recipe=rc.Recipe().to_dict(),
                                        data="synthetic", device="cpu", precision="fp32", seed=0)],
                                  taken_by=os.getpid())
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


def app_assert_figures_download(at, data_figures: int) -> None:
    """Each Plotly chart saves as a PNG named after it (the modebar's camera), and `data_figures` of them have a
    Data (CSV) button beside them."""
    for element in at.get("plotly_chart"):
        config = json.loads(element.proto.config)
        assert config.get("displayModeBar") is not False
        assert config["toImageButtonOptions"]["format"] == "png" and config["toImageButtonOptions"]["filename"]
    assert [button.label for button in at.get("download_button")].count("Data (CSV)") == data_figures


def eventually(check: Callable[[], object], timeout: float = WAIT_S):
    """`check()`'s result once it stops raising AssertionError, after `timeout` s its last AssertionError: for
    runs that other processes train, and for what a browser draws a little after the script has finished."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(POLL_S)


# ------------------------------------------------------------------------------------------- browsers
def settle(page) -> None:
    """Wait until the script (or a fragment) is not running. A widget change does not flip the state at once,
    so callers first wait for something the rerun changes, then for this."""
    page.wait_for_selector(IDLE, timeout=WAIT_MS)


def load(page, url: str) -> None:
    """Open `url` and wait for the page's first run to end. The app reports idle before that run starts, so
    wait for its title first."""
    page.goto(url)
    page.wait_for_selector("h1", timeout=WAIT_MS)
    page.wait_for_selector(IDLE, timeout=FIRST_RUN_MS)


def no_errors(page) -> None:
    """No traceback and no st.error on the page."""
    for kind in ("stException", "stAlertContentError"):
        found = page.get_by_test_id(kind)
        assert found.count() == 0, found.all_inner_texts()


def plots(page) -> list[list[dict]]:
    """Every Plotly chart on the page: its traces' type, name, x, y and (heatmaps') z. _fullData holds decoded
    arrays where data may hold Plotly's binary {dtype, bdata} form."""
    return page.evaluate(
        "[...document.querySelectorAll('.js-plotly-plot')].map(plot => (plot._fullData || []).map(trace => ({"
        "type: trace.type, name: trace.name, x: trace.x ? Array.from(trace.x) : [],"
        "y: trace.y ? Array.from(trace.y) : [],"
        "z: trace.type === 'heatmap' ? Array.from(trace.z, row => Array.from(row)) : null})))")


def wait_for_more_points(page, than: int, timeout_ms: int = WAIT_MS) -> int:
    """The points in the Train page's error chart once they are more than `than`."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        grown = page.wait_for_function(MORE_POINTS, arg=than, timeout=timeout_ms, polling=POLL_S * 1000)
    except PlaywrightTimeout:
        pytest.fail(f"the error chart did not grow past {than} points in {timeout_ms / 1000:g} s")
    return grown.json_value()


def screenshot(page, name: str) -> None:
    """A full-page shot of what the page has drawn, as ARTIFACTS/`name`. Streamlit scrolls inside its own
    container, so for the shot the viewport grows as tall as that container's content."""
    page.wait_for_function(DRAWN, timeout=WAIT_MS)
    before = page.viewport_size
    height = page.evaluate(
        "Math.max(...[...document.querySelectorAll('[data-testid=stMain]')].map(e => e.scrollHeight))")
    page.set_viewport_size({"width": before["width"], "height": max(height, before["height"])})
    # Charts and tables redraw for the new size on the next animation frame; the shot follows the one after.
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
    path = ARTIFACTS / name
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=path, full_page=True)
    page.set_viewport_size(before)


def start_pair(page, url: str, iterations: int, batch: int, test_every: int) -> None:
    """Start plain-8 against ResNet-8 on the synthetic set from the Train page."""
    load(page, f"{url}/Train")
    page.get_by_role("button", name="8 layers").click()
    # Each click reruns the script; the next widget must not be touched before the rerun has applied it.
    page.get_by_text("plain-8", exact=True).first.wait_for(timeout=WAIT_MS)
    settle(page)
    page.get_by_text("Synthetic (no download)").click()
    settle(page)
    for label, value in (("Number of iterations", iterations), ("Batch (images)", batch),
                         ("Test every (iterations)", test_every)):
        field = page.get_by_role("spinbutton", name=label)
        field.fill(str(value))
        field.press("Enter")
        settle(page)
    page.get_by_role("button", name="Start").click()


class ManualClock:
    """A clock a test moves by hand (`clock.now += 1`), for code that takes a `clock` callable."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def app_scene_model(home: Path) -> int:
    """A tiny scene model (a segmentation run: an FCN head on a random ResNet-8, 4 iterations on 64 synthetic
    scenes, 16 test scenes) trained in this process by `segment train` into the store at `home`; its run id. A few
    seconds on one thread; none of the developer's RESNET_EXPLORER_* settings is read."""
    from resnet_core.cli import main
    from resnet_core.runs.store import Store

    with pytest.MonkeyPatch.context() as patch, app_one_torch_thread():
        for name in [name for name in os.environ if name.startswith(SETTINGS_PREFIX)]:
            patch.delenv(name)
        assert main(["segment", "train", "--backbone", "random:resnet8", "--scenes-from", "synthetic",
                     "--iterations", "4", "--scenes", "64", "--test-scenes", "16", "--batch-size", "16",
                     "--eval-every", "2", "--threads", "1", "--quiet", "--home", str(home)]) == 0
    return Store(home).runs(kinds=("segment",))[-1].id
