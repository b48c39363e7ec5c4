"""The whole workshop path in Debian's Chromium, one step after another on one server and one data folder, as
docs/WORKSHOP.md's lesson goes: home → build ResNet-56 → the teacher hands out Fig. 6's cells → Train shows the
participant's cell, and they train plain-8 against ResNet-8 live → reload → both finish → Runs → the Class page
pools the room's runs → Experiments measures shattered gradients → classify an uploaded image with the trained
ResNet-8 (beside its plain twin) and see its Grad-CAM.

A screenshot of every step lands in test-artifacts/workshop/ (git-ignored) for a human to look at; docs/WORKSHOP.md
shows copies of them (docs/img/workshop_*.png).
"""
from __future__ import annotations

import os
import re

import pytest
from helpers import WAIT_MS, eventually, no_errors, plots, screenshot, settle, wait_for_more_points

from resnet_core.nets.specs import get_spec
from resnet_core.runs import settings
from resnet_core.runs.store import Store
from resnet_core.training.recipe import Recipe

# ~0.05-0.1 s per iteration of ResNet-8 at batch 16 on one thread: both runs end within a minute, even loaded.
ITERATIONS, BATCH, TEST_EVERY = 200, 16, 20
RESNET56_PARAMS = 853_018  # Table 6 rounds it to 0.85 M
TEACHER_KEY = "chalk-and-talk"

pytestmark = pytest.mark.browser


# ------------------------------------------------------------------------------------------- helpers
def open_page(page, link_name: str, title: str) -> None:
    """Follow the sidebar's link to a page, as a participant would, and wait for its first run to end."""
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=link_name).click()
    page.locator("h1", has_text=title).wait_for(timeout=WAIT_MS)
    settle(page)


def choose(page, label: str, option: str | re.Pattern, search: str | None = None) -> None:
    """Pick `option` (its whole text, or a pattern) in the selectbox labelled `label`, typing `search` first to
    narrow a long list (the list draws only the options in view); the caller waits for what the rerun changes."""
    page.get_by_role("combobox", name=label).click()
    if search:
        page.keyboard.type(search)
    page.get_by_role("option", name=option, exact=isinstance(option, str)).click()


def grid_rows(grid) -> list[list[str]]:
    """The cells of an st.dataframe, row by row, from the accessible (hidden) table Glide keeps beside its canvas."""
    return grid.evaluate("g => [...g.querySelectorAll('tr')].map(row => [...row.querySelectorAll('td, th')]"
                         ".map(cell => cell.innerText.trim())).filter(row => row.length)")


def run_card(page, card: str, status: str = ""):
    """The title line of a run's card on the Train page, e.g. `#2 ResNet-8 on synthetic · check_circle finished`."""
    return page.get_by_test_id("stMarkdownContainer").filter(
        has_text=re.compile(rf"^{card} on synthetic · .*{status}"))


def add_classmates_runs(store: Store) -> None:
    """Finished runs of six other people, one Fig. 6 cell each, as their training processes would have written
    them (no checkpoints): the deeper the plain net, the higher its error; the residual nets the other way round.
    Recorded as this process's runs as they are created, so no dispatcher ever sees them queued."""
    for person, depth in enumerate((20, 32, 44, 56, 20, 32)):
        for kind, final in (("plain", 0.45 + depth / 200), ("resnet", 0.45 - depth / 400)):
            recipe = Recipe(iterations=ITERATIONS, batch_size=BATCH, eval_interval=TEST_EVERY).to_dict()
            (run_id,) = store.create_runs([dict(name=f"cell {depth}", spec=get_spec(f"{kind}{depth}").to_dict(), recipe=recipe,
                                                data="synthetic", device="cpu", precision="fp32", seed=person)],
                                          owner=f"classmate-{person}", taken_by=os.getpid())
            rows = []
            for iteration in range(TEST_EVERY, ITERATIONS + 1, TEST_EVERY):
                error = 0.9 - (0.9 - final) * iteration / ITERATIONS + 0.01 * person
                rows += [{"iteration": iteration, "kind": "train", "epoch": 0, "error": error,
                          "smoothed_error": error},
                         {"iteration": iteration, "kind": "test", "epoch": 0, "error": error + 0.03, "loss": 1.0}]
            store.add_metrics(run_id, rows)
            store.finish(run_id, "finished")


def own_runs(store: Store) -> list:
    """The runs this test's participant started (the classmates' were there before)."""
    return [run for run in store.runs() if not (run.owner or "").startswith("classmate-")]


@pytest.fixture(scope="module")
def app_server_settings(app_server_settings) -> dict[str, str]:
    """The conftest's settings and a teacher key (this lesson has a teacher); the classmates' runs are in the
    store before the server starts."""
    add_classmates_runs(Store(app_server_settings[settings.HOME_VARIABLE]))
    return {**app_server_settings, settings.TEACHER_KEY_VARIABLE: TEACHER_KEY}


# ------------------------------------------------------------------------------------------- the path
def test_workshop_path(app_training_home, app_server, browser_page, browser_ball_image):
    page = browser_page
    store = Store(app_training_home)
    main = page.get_by_test_id("stMain")

    # 1. Home: the paper's story, the residual block, and a card per page.
    page.goto(app_server)
    page.locator("h1", has_text="ResNet Explorer").wait_for(timeout=WAIT_MS)
    settle(page)

    def home_drawn() -> None:
        assert main.locator("h3", has_text="The degradation problem").count() == 1
        links = main.get_by_test_id("stPageLink").all_inner_texts()
        # Each link reads "<icon name> <page>", e.g. "account_tree Architecture".
        assert [link.split()[-1] for link in links] == ["Architecture", "Compare", "Train", "Runs", "Classify",
                                                         "Inside", "Experiments", "Class", "Pixels"], links
        assert len(plots(page)) == 1  # the residual block figure

    eventually(home_drawn)
    no_errors(page)
    screenshot(page, "workshop/1_home.png")

    # 2. Architecture: build ResNet-56 with the sidebar's widgets, by way of the other family and another depth.
    main.get_by_test_id("stPageLink").filter(has_text="Architecture").get_by_role("link").click()
    page.locator("h1", has_text="Architecture").wait_for(timeout=WAIT_MS)
    settle(page)
    assert page.url.endswith("/Architecture")
    choose(page, "Dataset family", "ImageNet (224×224 images)")
    main.locator("h3", has_text="ResNet-18").wait_for(timeout=WAIT_MS)  # the family's first depth
    settle(page)
    choose(page, "Dataset family", "CIFAR-10 (32×32 images)")
    main.locator("h3", has_text="ResNet-56").wait_for(timeout=WAIT_MS)  # back in its family: the page's own net
    settle(page)
    choose(page, "Depth (weighted layers)", "20")
    main.locator("h3", has_text="ResNet-20").wait_for(timeout=WAIT_MS)
    settle(page)
    choose(page, "Depth (weighted layers)", "56")
    main.locator("h3", has_text="ResNet-56").wait_for(timeout=WAIT_MS)
    settle(page)
    residual = page.get_by_role("switch", name="Residual (shortcut connections)")
    if not residual.is_checked():
        residual.click()
        main.locator("h3", has_text="ResNet-56").wait_for(timeout=WAIT_MS)
        settle(page)
    assert residual.is_checked()
    assert page.get_by_role("combobox", name="Dataset family").input_value() == "CIFAR-10 (32×32 images)"
    assert page.get_by_role("combobox", name="Depth (weighted layers)").input_value() == "56"

    def resnet56_drawn() -> dict[str, str]:
        assert main.locator("h3").first.inner_text() == "ResNet-56"
        assert "9×16 · 9×32 · 9×64 · shortcut option A" in main.inner_text()
        metrics = dict(zip(main.get_by_test_id("stMetricLabel").all_inner_texts(),
                           main.get_by_test_id("stMetricValue").all_inner_texts()))
        assert (metrics.get("Depth"), metrics.get("Parameters"), metrics.get("Output size (C×H×W)")) == \
            ("56", "853K", "64×8×8"), metrics
        return metrics

    eventually(resnet56_drawn)
    page.get_by_role("button", name="Help for Parameters").hover()
    assert f"exactly {RESNET56_PARAMS:,}" in page.get_by_test_id("stTooltipContent").inner_text(timeout=WAIT_MS)
    page.mouse.move(700, 10)  # the tooltip must not cover the screenshot
    page.get_by_role("tab", name="Layer table").click()

    def stage_rows() -> None:
        rows = grid_rows(main.get_by_test_id("stDataFrame").nth(1))
        assert rows and rows[0][:1] == ["stage"], rows
        header, body = rows[0], rows[1:]
        assert [row[0] for row in body] == ["conv1", "conv2_x", "conv3_x", "conv4_x", "head"], rows
        assert sum(int(re.sub(r"\D", "", row[header.index("parameters")])) for row in body) == RESNET56_PARAMS, rows
        assert sum(int(row[header.index("weighted layers")]) for row in body) == 56, rows

    eventually(stage_rows)
    no_errors(page)
    screenshot(page, "workshop/2_architecture_resnet56.png")

    # 3. The teacher, on their own laptop, opens the Class page with the key and hands out cells of ITERATIONS.
    teacher = page.context.browser.new_page(viewport=page.viewport_size)
    teacher.goto(f"{app_server}/Class?key={TEACHER_KEY}")
    teacher.locator("h3", has_text="Teacher").wait_for(timeout=WAIT_MS)
    settle(teacher)
    assert "key=" not in teacher.url  # out of the address bar before the teacher shares their screen
    length = teacher.get_by_role("spinbutton", name="Each cell's length (iterations)")
    length.fill(str(ITERATIONS))
    length.press("Enter")
    settle(teacher)
    teacher.get_by_role("button", name="Hand out cells").click()
    # The panel's caption (the toast says it too, for a few seconds: two matches while it shows).
    teacher.get_by_test_id("stMain").get_by_text(f"Handing out cells of {ITERATIONS} iterations, in turn as "
                                                 "people open Train").wait_for(timeout=WAIT_MS)

    # 4. Train: the participant's cell is waiting, preselected; they train the 8-layer preset instead (fast).
    open_page(page, "Train", "Train")
    cell = f"Your part of Fig. 6: plain-20 and ResNet-20, {ITERATIONS} iterations"  # the first to arrive: 20
    page.get_by_text(cell).wait_for(timeout=WAIT_MS)
    nets = page.get_by_test_id("stMultiSelect")
    for net in ("plain-20", "ResNet-20"):
        nets.get_by_text(net, exact=True).wait_for(timeout=WAIT_MS)
    assert page.get_by_role("spinbutton", name="Number of iterations").input_value() == str(ITERATIONS)
    no_errors(page)
    screenshot(page, "workshop/3_train_your_cell.png")
    page.get_by_role("button", name="8 layers").click()
    # Each change reruns the script; the next widget must not be touched before the rerun has applied it.
    nets.get_by_text("plain-8", exact=True).wait_for(timeout=WAIT_MS)
    settle(page)
    cifar_note = page.get_by_text("CIFAR-10 is not here yet")
    cifar_note.wait_for(timeout=WAIT_MS)  # CIFAR-10 is the default, and the fresh data folder has none
    page.get_by_text("Synthetic (no download)").click()
    cifar_note.wait_for(state="detached", timeout=WAIT_MS)
    settle(page)
    lengths = (("Number of iterations", ITERATIONS), ("Batch (images)", BATCH), ("Test every (iterations)", TEST_EVERY))
    for label, value in lengths:
        field = page.get_by_role("spinbutton", name=label)
        field.fill(str(value))
        field.press("Enter")
        settle(page)
    for label, value in lengths:
        assert page.get_by_role("spinbutton", name=label).input_value() == str(value), label
    assert nets.get_by_text("ResNet-8", exact=True).count() == 1
    page.get_by_role("button", name="Start").click()

    first = wait_for_more_points(page, 0)
    assert "running" in {run.status for run in own_runs(store)}  # the curve grows while they train
    grown = wait_for_more_points(page, first + 4)
    runs = own_runs(store)
    assert [(run.model, run.data) for run in runs] == [("plain8", "synthetic"), ("resnet8", "synthetic")]
    for run in runs:  # what was typed is what the runs were given
        recipe = run.recipe
        assert (recipe["iterations"], recipe["batch_size"], recipe["eval_interval"]) == \
            (ITERATIONS, BATCH, TEST_EVERY), recipe
    plain_id, resnet_id = (run.id for run in runs)
    assert re.search(rf"runs=({plain_id}%2C|{plain_id},){resnet_id}$", page.url), page.url
    cards = [f"#{plain_id} plain-8", f"#{resnet_id} ResNet-8"]
    for card in cards:
        run_card(page, card).wait_for(timeout=WAIT_MS)
    screenshot(page, "workshop/4_train_live.png")

    # 5. Reload: the same runs and the whole curves come back; then both finish.
    page.reload()
    page.locator("h1", has_text="Train").wait_for(timeout=WAIT_MS)
    after_reload = wait_for_more_points(page, 0)
    assert after_reload >= grown  # the whole curve is back, not only what came after the reload
    for card in cards:
        run_card(page, card).wait_for(timeout=WAIT_MS)

    def both_finished() -> None:
        statuses = [(run.model, run.status, run.error) for run in own_runs(store)]
        assert not {status for _, status, _ in statuses} & {"failed", "diverged", "cancelled"}, statuses
        assert {status for _, status, _ in statuses} == {"finished"}, statuses

    eventually(both_finished, timeout=120)
    assert all(store.latest_checkpoint(run.id) for run in own_runs(store))

    def page_shows_finished() -> None:
        for card in cards:
            assert run_card(page, card, "finished").count() == 1, main.inner_text()
        assert page.get_by_text(f"{ITERATIONS}/{ITERATIONS} iterations").count() == 2, main.inner_text()
        cancels = page.get_by_role("button", name="Cancel").all()
        assert len(cancels) == 2 and all(button.is_disabled() for button in cancels)  # nothing left to cancel
        error_chart = {trace["name"]: trace for trace in plots(page)[0]}
        for card in cards:  # both curves run to the end, with a test point every TEST_EVERY iterations
            assert error_chart[f"{card} train"]["x"][-1] == ITERATIONS, card
            assert error_chart[f"{card} test"]["x"] == list(range(TEST_EVERY, ITERATIONS + 1, TEST_EVERY)), \
                (card, error_chart[f"{card} test"]["x"])

    eventually(page_shows_finished)
    no_errors(page)
    screenshot(page, "workshop/5_train_finished_after_reload.png")

    # 6. Runs: both listed as finished, all their iterations done, their curves overlaid.
    open_page(page, "Runs", "Runs")

    def runs_listed() -> None:
        rows = grid_rows(main.get_by_test_id("stDataFrame").first)
        assert rows, "the runs table has no rows yet"
        header = rows[0]
        shown = {row[header.index("run")]: row for row in rows[1:]}
        # The grid draws only the rows in view: the newest first, the participant's pair on top.
        assert {str(plain_id), str(resnet_id)} <= set(shown), rows
        for run_id, net in ((plain_id, "plain-8"), (resnet_id, "ResNet-8")):
            row = shown[str(run_id)]
            assert (row[header.index("status")], row[header.index("net")], row[header.index("dataset")],
                    row[header.index("iterations")].replace(",", "")) == \
                ("finished", net, "synthetic", str(ITERATIONS)), row
        charts = plots(page)
        assert charts and {f"{card} test" for card in cards} <= {trace["name"] for trace in charts[0]}, charts

    eventually(runs_listed)
    no_errors(page)
    screenshot(page, "workshop/6_runs.png")

    # 7. Class, on the teacher's open page: the participant's pair and six classmates' cells pooled into Fig. 6.
    teacher_main = teacher.get_by_test_id("stMain")

    def room_pooled() -> None:
        rows = grid_rows(teacher_main.get_by_test_id("stDataFrame").first)
        assert rows, "the Class table has no rows yet"
        header, body = rows[0], rows[1:]
        shown = {row[header.index("net")]: row for row in body}
        assert list(shown) == ["plain-8", "plain-20", "plain-32", "plain-44", "plain-56", "ResNet-8", "ResNet-20",
                               "ResNet-32", "ResNet-44", "ResNet-56"], rows
        assert [shown[net][header.index("people")] for net in ("plain-20", "ResNet-56")] == ["2", "1"], rows
        assert "paper, Table 6 (%)" not in header, header  # Table 6 is CIFAR-10's; this room trained on synthetic
        assert {shown[net][header.index("you")] for net in ("plain-8", "ResNet-8")} == {""}  # the teacher's view
        assert "People per cell: 20 layers: 1, 32 layers: 0" in teacher_main.inner_text()  # the participant's
        names = {trace["name"] for trace in plots(teacher)[0]}
        assert {"plain-56 test", "ResNet-56 test", "plain-8 test"} <= names, names

    eventually(room_pooled)
    no_errors(teacher)
    screenshot(teacher, "workshop/7_class.png")
    teacher.close()

    # 8. Experiments: shattered gradients need no data and take seconds; plain against residual at 8 and 20.
    open_page(page, "Experiments", "Experiments")
    page.get_by_role("tab", name="Shattered gradients").click()
    page.get_by_text("Measure (a few seconds per net)").click()  # the label: the switch itself sits under it

    def shattering_drawn() -> None:
        names = {trace["name"] for chart in plots(page) for trace in chart}
        assert any(name and "plain" in name.lower() for name in names), names

    eventually(shattering_drawn, timeout=120)
    no_errors(page)
    screenshot(page, "workshop/8_experiments_shattering.png")

    # 9. Classify: the trained ResNet-8 (left) beside its plain twin on an uploaded image, with Grad-CAM.
    open_page(page, "Classify", "Classify")
    assert page.get_by_role("combobox", name="Method").input_value() == "Grad-CAM"  # the default
    main.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(browser_ball_image))
    page.get_by_text("Top-5 classes").first.wait_for(timeout=WAIT_MS)  # the default networks answer first
    settle(page)
    resnet_label = f"run {resnet_id}: resnet8 on synthetic"
    plain_label = f"run {plain_id}: plain8 on synthetic"
    # A model's option is its label and, once measured, its test error: ", 88.3 % test error".
    choose(page, "Left network", re.compile(rf"^{re.escape(resnet_label)}(, |$)"), search=resnet_label)
    main.locator("h3", has_text=resnet_label).wait_for(timeout=WAIT_MS)
    settle(page)
    choose(page, "Right network", re.compile(rf"^{re.escape(plain_label)}(, |$)"), search=plain_label)
    main.locator("h3", has_text=plain_label).wait_for(timeout=WAIT_MS)
    settle(page)
    assert page.get_by_role("combobox", name="Left network").input_value().startswith(resnet_label)
    assert page.get_by_role("combobox", name="Method").input_value() == "Grad-CAM"

    def answers_drawn() -> None:
        headings = main.locator("h3").all_inner_texts()
        assert headings == ["Your image", resnet_label, plain_label], headings
        assert page.get_by_text("As the network sees it: 32×32 pixels").count() == 2
        captions = page.get_by_text(re.compile(r"^Grad-CAM on .+ map for pattern\d \(p = [01]\.\d\d\)"))
        assert captions.count() == 2, main.inner_text()
        charts = plots(page)
        kinds = [[trace["type"] for trace in chart] for chart in charts]
        bars = [chart[0] for chart in charts if [trace["type"] for trace in chart] == ["bar"]]
        overlays = [chart[1] for chart in charts if [trace["type"] for trace in chart] == ["image", "heatmap"]]
        assert len(bars) == 2 and len(overlays) == 2, kinds
        for bar in bars:  # the top 5 of the synthetic data's ten classes, likeliest on top (drawn last)
            assert len(bar["y"]) == 5 and all(re.fullmatch(r"pattern\d", name) for name in bar["y"]), bar["y"]
            assert bar["x"] == sorted(bar["x"]) and 0 < sum(bar["x"]) <= 100.01, bar["x"]
        for heatmap in overlays:  # Grad-CAM: a magnitude map in [0, 1], upsampled to the 32×32 input
            values = [value for row in heatmap["z"] for value in row]
            assert (len(heatmap["z"]), len(heatmap["z"][0])) == (32, 32)
            assert 0 <= min(values) and 0 < max(values) <= 1, (min(values), max(values))

    eventually(answers_drawn)
    no_errors(page)
    screenshot(page, "workshop/9_classify_gradcam.png")
