"""The whole workshop path in Debian's Chromium, one step after another on one server and one data folder:
home → build ResNet-56 → train plain-8 against ResNet-8 live → reload → both finish → Runs → classify an
uploaded image with the trained ResNet-8 and see its Grad-CAM.

A screenshot of every step lands in test-artifacts/workshop/ (git-ignored) for a human to look at.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from PIL import Image

from resnet_core import jobs
from resnet_core.store import Store

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts" / "workshop"
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
WAIT_MS = 60_000  # generous: two cores, two training processes and maybe another engineer's tests
# ~0.1 s per iteration of ResNet-8 at batch 16 on one thread: both runs end well within a minute.
ITERATIONS, BATCH, TEST_EVERY = 200, 16, 20
RESNET56_PARAMS = 853_018  # Table 6 says 0.85 M; the exact count is the akamaster / option A net's

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser_workshop_home(tmp_path_factory):
    """The data folder of the server this module starts: set before app_server reads the environment."""
    home = tmp_path_factory.mktemp("workshop-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RESNET_EXPLORER_HOME", str(home))
        patch.setenv(jobs.CAP_VARIABLE, "2")
        patch.setenv(jobs.SPARES_VARIABLE, "0")  # spares would outlive the test; test_jobs covers them
        yield home


# ------------------------------------------------------------------------------------------- helpers
def settle(page) -> None:
    """Wait until the script (or a fragment) is not running. A widget change does not flip the state at once,
    so callers first wait for something the rerun changes, then for this."""
    page.wait_for_selector(IDLE, timeout=WAIT_MS)


def open_page(page, link_name: str, title: str) -> None:
    """Follow the sidebar's link to a page, as a participant would, and wait for its first run to end."""
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=link_name).click()
    page.locator("h1", has_text=title).wait_for(timeout=WAIT_MS)
    settle(page)


def choose(page, label: str, option: str) -> None:
    """Pick `option` in the selectbox labelled `label` (the caller waits for what the rerun changes)."""
    page.get_by_role("combobox", name=label).click()
    page.get_by_role("option", name=option, exact=True).click()


def grid_rows(grid) -> list[list[str]]:
    """The cells of an st.dataframe, row by row, from the accessible table Glide draws beside its canvas."""
    return grid.evaluate("g => [...g.querySelectorAll('tr')].map(row => [...row.querySelectorAll('td, th')]"
                         ".map(cell => cell.innerText.trim()))")


def plots(page) -> list[list[dict]]:
    """Every Plotly chart on the page: its traces' type, name, x, y and z (_fullData holds decoded arrays where
    data may hold Plotly's binary {dtype, bdata} form)."""
    return page.evaluate(
        "[...document.querySelectorAll('.js-plotly-plot')].map(plot => (plot._fullData || []).map(trace => ({"
        "type: trace.type, name: trace.name, x: trace.x ? Array.from(trace.x) : [],"
        "y: trace.y ? Array.from(trace.y) : [],"
        "z: trace.type === 'heatmap' ? Array.from(trace.z, row => Array.from(row)) : null})))")


def error_chart_points(page) -> int:
    """Points in the Train page's first chart (the error chart), all traces together."""
    charts = plots(page)
    return sum(len(trace["x"]) for trace in charts[0]) if charts else 0


def wait_for_more_points(page, than: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        total = error_chart_points(page)
        if total > than:
            return total
        page.wait_for_timeout(300)
    pytest.fail(f"the error chart did not grow past {than} points in {timeout} s")


def screenshot(page, name: str) -> None:
    """A full-page shot. Streamlit scrolls inside its own container, so the viewport must be as tall as it."""
    page.wait_for_timeout(1_000)  # Plotly and the tables' canvases draw after the script has finished
    height = page.evaluate(
        "Math.max(...[...document.querySelectorAll('[data-testid=stMain]')].map(e => e.scrollHeight), 900)")
    page.set_viewport_size({"width": 1400, "height": height})
    page.wait_for_timeout(300)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / name, full_page=True)
    page.set_viewport_size({"width": 1400, "height": 900})


def no_errors(page) -> None:
    assert page.locator("[data-testid='stException']").count() == 0, page.locator("[data-testid='stException']")\
        .all_inner_texts()
    assert page.locator("[data-testid='stAlertContentError']").count() == 0, \
        page.locator("[data-testid='stAlertContentError']").all_inner_texts()


# ------------------------------------------------------------------------------------------- the path
def test_workshop_path(browser_workshop_home, app_server, browser_page, tmp_path):
    page = browser_page
    store = Store(browser_workshop_home)

    # 1. Home: the paper's story and a card per page.
    page.goto(app_server)
    page.locator("h1", has_text="ResNet Explorer").wait_for(timeout=WAIT_MS)
    settle(page)
    main = page.get_by_test_id("stMain")
    assert main.locator("h3", has_text="The degradation problem").count() == 1
    links = main.get_by_test_id("stPageLink").all_inner_texts()
    for name in ("Architecture", "Compare", "Train", "Runs", "Classify", "Inside"):
        assert any(name in link for link in links), links
    assert len(plots(page)) == 1  # the residual block figure
    no_errors(page)
    screenshot(page, "1_home.png")

    # 2. Architecture: build ResNet-56 with the sidebar's widgets, by way of another family and depth.
    main.get_by_test_id("stPageLink").filter(has_text="Architecture").get_by_role("link").click()
    page.locator("h1", has_text="Architecture").wait_for(timeout=WAIT_MS)
    settle(page)
    assert page.url.endswith("/Architecture")
    heading = page.locator("[data-testid='stMain'] h3").first
    choose(page, "Dataset family", "ImageNet (224×224 images)")
    page.locator("h3", has_text="ResNet-18").wait_for(timeout=WAIT_MS)  # the family's first depth
    settle(page)
    choose(page, "Dataset family", "CIFAR-10 (32×32 images)")
    page.locator("h3", has_text="ResNet-20").wait_for(timeout=WAIT_MS)
    settle(page)
    choose(page, "Depth (weighted layers)", "56")
    page.locator("h3", has_text="ResNet-56").wait_for(timeout=WAIT_MS)
    settle(page)
    residual = page.get_by_role("switch", name="Residual (shortcut connections)")
    if not residual.is_checked():
        residual.click()
        page.locator("h3", has_text="ResNet-56").wait_for(timeout=WAIT_MS)
        settle(page)
    assert residual.is_checked()
    assert page.get_by_role("combobox", name="Dataset family").input_value() == "CIFAR-10 (32×32 images)"
    assert page.get_by_role("combobox", name="Depth (weighted layers)").input_value() == "56"
    assert heading.inner_text() == "ResNet-56"
    assert "9×16 · 9×32 · 9×64 · shortcut option A" in main.inner_text()
    metrics = dict(zip(main.get_by_test_id("stMetricLabel").all_inner_texts(),
                       main.get_by_test_id("stMetricValue").all_inner_texts()))
    assert metrics["Depth"] == "56" and metrics["Parameters"] == "853K", metrics
    page.get_by_role("button", name="Help for Parameters").hover()
    assert f"exactly {RESNET56_PARAMS:,}" in page.get_by_test_id("stTooltipContent").inner_text(timeout=WAIT_MS)
    page.mouse.move(700, 10)
    page.get_by_role("tab", name="Layer table").click()
    stages = page.get_by_test_id("stDataFrame").nth(1)
    stages.locator("td").first.wait_for(timeout=WAIT_MS)
    rows = grid_rows(stages)
    header, body = rows[0], [row for row in rows[1:] if row]
    assert [row[0] for row in body] == ["conv1", "conv2_x", "conv3_x", "conv4_x", "head"], rows
    params = header.index("parameters")
    assert sum(int(re.sub(r"\D", "", row[params])) for row in body) == RESNET56_PARAMS, rows
    assert sum(int(row[header.index("weighted layers")]) for row in body) == 56, rows
    no_errors(page)
    screenshot(page, "2_architecture_resnet56.png")

    # 3. Train: the 8-layer preset on synthetic data, short, and watch the curves grow.
    open_page(page, "Train", "Train")
    page.get_by_role("button", name="8 layers").click()
    # Each change reruns the script; the next widget must not be touched before the rerun has applied it.
    nets = page.get_by_test_id("stMultiSelect")
    nets.get_by_text("plain-8", exact=True).wait_for(timeout=WAIT_MS)
    settle(page)
    cifar_note = page.get_by_text("CIFAR-10 is not here yet")
    assert cifar_note.count() == 1  # CIFAR-10 is the default, and the fresh data folder has none
    page.get_by_text("Synthetic (no download)").click()
    cifar_note.wait_for(state="detached", timeout=WAIT_MS)
    settle(page)
    for label, value in (("Number of iterations", ITERATIONS), ("Batch (images)", BATCH),
                         ("Test every (iterations)", TEST_EVERY)):
        field = page.get_by_role("spinbutton", name=label)
        field.fill(str(value))
        field.press("Enter")
        settle(page)
    for label, value in (("Number of iterations", ITERATIONS), ("Batch (images)", BATCH),
                         ("Test every (iterations)", TEST_EVERY)):
        assert page.get_by_role("spinbutton", name=label).input_value() == str(value), label
    assert nets.get_by_text("ResNet-8", exact=True).count() == 1
    page.get_by_role("button", name="Start").click()

    first = wait_for_more_points(page, 0)
    assert "running" in {run.status for run in store.runs()}  # the curve grows while they train
    grown = wait_for_more_points(page, first + 4)
    runs = store.runs()
    assert [(run.model, run.data) for run in runs] == [("plain8", "synthetic"), ("resnet8", "synthetic")]
    for run in runs:
        recipe = run.recipe
        assert (recipe["iterations"], recipe["batch_size"], recipe["eval_interval"]) == (ITERATIONS, BATCH,
                                                                                      TEST_EVERY), recipe
    plain_id, resnet_id = (run.id for run in runs)
    assert re.search(rf"runs=({plain_id}%2C|{plain_id},){resnet_id}$", page.url), page.url
    cards = [f"#{plain_id} plain-8", f"#{resnet_id} ResNet-8"]
    for card in cards:
        assert page.get_by_text(card).count() == 1, card
    screenshot(page, "3_train_live.png")

    # 4. Reload: the same runs and the whole curves come back; then both finish.
    page.reload()
    page.locator("h1", has_text="Train").wait_for(timeout=WAIT_MS)
    after_reload = wait_for_more_points(page, 0)
    assert after_reload >= grown  # the whole curve is back, not only what came after the reload
    for card in cards:
        assert page.get_by_text(card).count() == 1, card
    deadline = time.monotonic() + 90
    while {run.status for run in store.runs()} != {"finished"}:
        assert time.monotonic() < deadline, [(run.model, run.status, run.error) for run in store.runs()]
        assert not {run.status for run in store.runs()} & {"failed", "diverged", "cancelled"}, \
            [(run.model, run.status, run.error) for run in store.runs()]
        time.sleep(0.5)
    done = page.get_by_text(f"{ITERATIONS}/{ITERATIONS} iterations")
    deadline = time.monotonic() + 60
    while done.count() < 2 or page.get_by_text("finished").count() < 2:
        assert time.monotonic() < deadline, page.get_by_test_id("stMain").inner_text()
        page.wait_for_timeout(300)
    assert all(store.latest_checkpoint(run.id) for run in store.runs())
    assert page.get_by_role("button", name="Cancel").first.is_disabled()
    error_chart = {trace["name"]: trace for trace in plots(page)[0]}
    for card in cards:
        test_curve = error_chart[f"{card} test"]["x"]
        assert test_curve[-1] == ITERATIONS and len(test_curve) >= ITERATIONS // TEST_EVERY, (card, test_curve)
        assert error_chart[f"{card} train"]["x"][-1] == ITERATIONS, card
    no_errors(page)
    screenshot(page, "4_train_finished_after_reload.png")

    # 5. Runs: both listed as finished, all their iterations done.
    open_page(page, "Runs", "Runs")
    table = page.get_by_test_id("stDataFrame").first
    table.locator("td").first.wait_for(timeout=WAIT_MS)
    page.wait_for_selector(".js-plotly-plot", timeout=WAIT_MS)
    rows = grid_rows(table)
    header = rows[0]
    shown = {row[header.index("run")]: row for row in rows[1:] if row}
    assert set(shown) == {str(plain_id), str(resnet_id)}, rows
    for run_id, net in ((plain_id, "plain-8"), (resnet_id, "ResNet-8")):
        row = shown[str(run_id)]
        assert (row[header.index("status")], row[header.index("net")], row[header.index("dataset")]) == \
            ("finished", net, "synthetic"), row
        assert row[header.index("iterations")].replace(",", "") == str(ITERATIONS), row
    overlaid = {trace["name"] for trace in plots(page)[0]}
    assert {f"{card} test" for card in cards} <= overlaid, overlaid
    no_errors(page)
    screenshot(page, "5_runs.png")

    # 6. Classify: the trained ResNet-8 (and its plain twin) on an uploaded image, with Grad-CAM.
    open_page(page, "Classify", "Classify")
    assert page.get_by_role("combobox", name="Method").input_value() == "Grad-CAM"  # the default
    image = Path(tmp_path) / "ball.png"
    picture = Image.new("RGB", (120, 90), (90, 150, 235))
    picture.paste((210, 30, 30), (40, 25, 80, 65))
    picture.save(image)
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(image))
    page.get_by_text("Top-5 classes").first.wait_for(timeout=WAIT_MS)  # with the demo networks first
    settle(page)
    resnet_label = f"run {resnet_id}: resnet8 on synthetic"
    plain_label = f"run {plain_id}: plain8 on synthetic"
    choose(page, "Left network", resnet_label)
    page.locator("h3", has_text=resnet_label).wait_for(timeout=WAIT_MS)
    settle(page)
    choose(page, "Right network", plain_label)
    page.locator("h3", has_text=plain_label).wait_for(timeout=WAIT_MS)
    settle(page)
    page.get_by_text("Grad-CAM on").nth(1).wait_for(timeout=WAIT_MS)
    settle(page)
    page.wait_for_timeout(1_000)  # Plotly draws after the script has finished
    assert page.get_by_role("combobox", name="Left network").input_value() == resnet_label
    assert page.get_by_role("combobox", name="Method").input_value() == "Grad-CAM"
    headings = page.locator("[data-testid='stMain'] h3").all_inner_texts()
    assert headings == ["Your image", resnet_label, plain_label], headings
    charts = plots(page)
    bars = [chart[0] for chart in charts if [trace["type"] for trace in chart] == ["bar"]]
    overlays = [chart for chart in charts if [trace["type"] for trace in chart] == ["image", "heatmap"]]
    assert len(bars) == 2 and len(overlays) == 2, [[trace["type"] for trace in chart] for chart in charts]
    for bar in bars:  # top-5 of the synthetic data's ten classes, likeliest on top
        assert len(bar["y"]) == 5 and all(re.fullmatch(r"pattern\d", name) for name in bar["y"]), bar["y"]
        assert bar["x"] == sorted(bar["x"]) and 0 < sum(bar["x"]) <= 100.01, bar["x"]
    for _, heatmap in overlays:  # Grad-CAM: a magnitude map in [0, 1], upsampled to the 32×32 input
        values = [value for row in heatmap["z"] for value in row]
        assert (len(heatmap["z"]), len(heatmap["z"][0])) == (32, 32)
        assert 0 <= min(values) and 0 < max(values) <= 1, (min(values), max(values))
    captions = page.get_by_text(re.compile(r"^Grad-CAM on .+ map for pattern\d \(p = [01]\.\d\d\)"))
    assert captions.count() == 2, page.get_by_test_id("stMain").inner_text()
    assert page.get_by_text("As the network sees it: 32×32 pixels").count() == 2
    no_errors(page)
    screenshot(page, "6_classify_gradcam.png")
