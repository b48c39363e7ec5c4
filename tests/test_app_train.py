"""AppTest of the Train page: a tiny plain/residual pair trained by real processes, polled to the end; the
curves hold the store's values; cancel and resume; the URL names the runs."""
from __future__ import annotations

import time

import pytest
from helpers import REPO, app_url_round_trip
from streamlit.testing.v1 import AppTest

from resnet_core.runs import admission, control, settings
from resnet_core.nets.specs import get_spec
from resnet_core.runs.store import Store
from explorer.speed import MEASURING
from resnet_core.presets import by_label
from resnet_core.speed import calibrate
from resnet_core.speed.book import book_path, measurements
from resnet_core.speed.estimate import describe_seconds, estimate_planned, here, run_seconds, speed_of
from resnet_core.speed.fit import preset_lengths
from resnet_core.training.recipe import Recipe

PAGE = str(REPO / "pages" / "3_Train.py")
# Runs a test cancels: never at their end on a loaded machine before the test acts (20,000 batches of 8 are within
# the CPU server's limit of 500,000 images).
LONG = 20_000


def start(at: AppTest, nets: list[str], iterations: int, eval_every: int) -> AppTest:
    at.multiselect(key="train_nets").set_value(nets)
    at.radio(key="train_data").set_value("synthetic")
    at.number_input(key="train_length_iterations").set_value(iterations)
    at.number_input(key="train_batch").set_value(8)
    at.number_input(key="train_eval_every").set_value(eval_every)
    at.button(key="train_start").click().run()
    assert not at.exception and not at.error
    return at


def poll_until(at: AppTest, done, timeout: float = 90) -> None:
    """run_every never fires in AppTest: rerun the script until `done(store)`, then once more to show it."""
    store = Store()
    deadline = time.monotonic() + timeout
    while not done(store):
        assert time.monotonic() < deadline, [run.error for run in store.runs()]
        time.sleep(0.5)
        at.run()
        assert not at.exception
    at.run()


def test_a_pair_trains_to_the_end_and_the_curves_hold_the_stores_values(app_home, app_chart_traces):
    at = start(AppTest.from_file(PAGE, default_timeout=60).run(), ["resnet8", "plain8"], iterations=6, eval_every=3)
    assert at.query_params["runs"] == "1,2"
    poll_until(at, lambda store: {run.status for run in store.runs()} == {"finished"})
    store = Store()
    traces = app_chart_traces(at)
    for run_id, label in ((1, "#1 ResNet-8"), (2, "#2 plain-8")):
        train, test = store.metrics(run_id, "train"), store.metrics(run_id, "test")
        assert [row["iteration"] for row in train] == list(range(1, 7))
        assert traces[f"{label} train"]["x"] == [row["iteration"] for row in train]
        assert traces[f"{label} train"]["y"] == pytest.approx([100 * row["smoothed_error"] for row in train])
        assert traces[f"{label} test"]["y"] == pytest.approx([100 * row["error"] for row in test])
        assert traces[f"{label} lr"]["y"] == pytest.approx([row["lr"] for row in train])
    assert [bar.proto.text.split(" · ")[0] for bar in at.get("progress")] == ["6/6 iterations"] * 2
    look_for = [caption.value for caption in at.caption if caption.value.startswith(":material/visibility:")]
    assert look_for == [":material/visibility: Plain against residual at 8 layers (Fig. 6): the deeper the pair, the "
                        "wider the gap between the plain net's training error and the residual one's."]

    # A second session with only the URL shows the same runs.
    second = AppTest.from_file(PAGE, default_timeout=60)
    second.query_params["runs"] = "2"
    second.run()
    assert [m.value for m in second.markdown if m.value.startswith("**#")] == [
        "**#2 plain-8** on synthetic · :material/check_circle: finished"]


def test_cancel_then_resume_continues_from_the_checkpoint(app_home):
    at = start(AppTest.from_file(PAGE, default_timeout=60).run(), ["resnet8"], iterations=LONG, eval_every=5)
    poll_until(at, lambda store: store.metrics(1, "train") and store.run(1).status == "running")
    at.button(key="train_cancel_1").click().run()
    poll_until(at, lambda store: store.run(1).status == "cancelled")
    store = Store()
    stopped_at = store.latest_checkpoint(1)[0]
    assert 0 < stopped_at < LONG
    assert at.button(key="train_cancel_1").disabled and not at.button(key="train_resume_1").disabled
    at.button(key="train_resume_1").click().run()
    assert store.run(1).status in ("queued", "starting", "running")
    poll_until(at, lambda store: store.run(1).status == "running" and store.metrics(1, "train", stopped_at))
    at.button(key="train_cancel_1").click().run()  # stop it again rather than wait for the end
    poll_until(at, lambda store: store.run(1).status == "cancelled")
    iterations = [row["iteration"] for row in store.metrics(1, "train")]
    assert iterations == list(range(1, iterations[-1] + 1)) and iterations[-1] > stopped_at  # no gap, no repeat


def test_bad_settings_are_one_line_errors(app_home):
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.radio(key="train_data").set_value("folder").run()
    at.text_input(key="train_folder").set_value(str(app_home / "nowhere"))
    at.button(key="train_start").click().run()
    assert [error.value for error in at.error] == [
        f"Unknown dataset {str(app_home / 'nowhere')!r}; allowed: cifar10, cifar100, synthetic, or a folder with "
        "train/<class>/ and test/<class>/ images."]
    at.radio(key="train_data").set_value("synthetic")
    at.multiselect(key="train_nets").set_value(["resnet110"])
    at.segmented_control(key="train_unit").set_value("epochs").run()
    at.number_input(key="train_length_epochs").set_value(250)  # 16 iterations per epoch of the synthetic set
    at.button(key="train_start").click().run()
    assert at.error[0].value == ("4,000 iterations of 128 are too long for this CPU-only server; train on at "
                                 "most 500,000 images (10 CIFAR-10 epochs, 3,906 iterations of 128).")
    assert Store().runs() == []


def test_a_run_past_the_cap_waits_with_its_queue_position(app_home, monkeypatch):
    monkeypatch.setenv(settings.CAP_VARIABLE, "1")
    at = start(AppTest.from_file(PAGE, default_timeout=60).run(), ["resnet8", "plain8"], iterations=LONG, eval_every=5)
    titles = [m.value for m in at.markdown if m.value.startswith("**#")]
    assert titles == ["**#1 ResNet-8** on synthetic · :material/play_circle: running",
                      "**#2 plain-8** on synthetic · :material/schedule: queued #1"]
    queued = Store().run(2)
    takes = run_seconds(Recipe.from_dict(queued.recipe), speed_of(get_spec("plain8"), here(), measurements()),
                        train_images=2048, test_images=512)  # the canned calibration's speed (helpers.seed_speeds)
    assert (f"Waiting for a free slot: at most 1 run(s) train at a time; once started, about "
            f"{describe_seconds(takes)} here.") in [caption.value for caption in at.caption]
    at.button(key="train_cancel_2").click().run()
    assert Store().run(2).status == "cancelled"
    poll_until(at, lambda store: store.metrics(1, "train"))
    at.button(key="train_cancel_1").click().run()
    poll_until(at, lambda store: store.run(1).status == "cancelled")
    assert Store().run(2).started is None  # it never ran


def test_a_person_gets_a_pair_then_a_clear_refusal_and_a_full_server_says_so(app_home, monkeypatch):
    monkeypatch.setenv(settings.CAP_VARIABLE, "1")
    monkeypatch.setenv(settings.WAITING_VARIABLE, "2")
    at = start(AppTest.from_file(PAGE, default_timeout=60).run(), ["plain8", "resnet8"], iterations=LONG,
               eval_every=100)
    at.button(key="train_start").click().run()  # the same person again: past the two runs a person may have
    assert [error.value for error in at.error] == [
        "Each person may have 2 runs queued or running at once and you have 2 (#1, #2), so 2 more cannot start; "
        "wait for one to finish or cancel it."]
    assert [run.id for run in Store().runs()] == [1, 2]
    other = start(AppTest.from_file(PAGE, default_timeout=60).run(), ["resnet8"], iterations=10, eval_every=5)
    # A third person: one run waits behind the cap and one more beside it would pass the bound of 2 waiting.
    third = AppTest.from_file(PAGE, default_timeout=60).run()
    third.multiselect(key="train_nets").set_value(["resnet8"])
    third.radio(key="train_data").set_value("synthetic")
    third.button(key="train_start").click().run()
    assert [error.value for error in third.error] == [
        "The server is full: 2 runs are already waiting for a free slot; try again in a few minutes."]
    assert [run.owner for run in Store().runs()] == [at.session_state["user_id"]] * 2 + [
        other.session_state["user_id"]]
    for run in Store().runs():
        control.cancel(run.id)


def test_sessions_keep_only_ids_and_small_settings(app_home):
    """Models and tensors live in shared caches and the store; a session's state stays a few hundred bytes."""
    import pickle

    at = start(AppTest.from_file(PAGE, default_timeout=60).run(), ["plain8", "resnet8"], iterations=6, eval_every=3)
    poll_until(at, lambda store: {run.status for run in store.runs()} == {"finished"})
    state = {key: at.session_state[key] for key in at.session_state._state._state.filtered_state}
    assert state["train_runs"] == [1, 2]
    assert all(isinstance(value, (str, int, float, bool, list, type(None))) for value in state.values()), state
    assert len(pickle.dumps(state)) < 2_000


def test_a_page_opened_on_runs_shows_the_settings_they_were_started_with(app_home):
    run_ids = admission.submit_all(["plain14", "resnet14"], "synthetic", iterations=123, batch_size=32, lr=0.05,
                              eval_every=7, seed=5)
    for run_id in run_ids:
        control.cancel(run_id)
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.query_params["runs"] = ",".join(map(str, run_ids))
    at.run()
    assert not at.exception and not at.warning
    values = {key: at.session_state[key] for key in ("train_nets", "train_data", "train_length_iterations",
                                                     "train_batch", "train_eval_every", "train_lr", "train_seed")}
    assert values == {"train_nets": ["plain14", "resnet14"], "train_data": "synthetic", "train_length_iterations": 123,
                      "train_batch": 32, "train_eval_every": 7, "train_lr": 0.05, "train_seed": 5}
    at.multiselect(key="train_nets").set_value(["resnet8"]).run()  # the person's own changes then stay
    assert at.session_state["train_nets"] == ["resnet8"] and at.session_state["train_batch"] == 32


def test_a_fresh_tab_shows_the_persons_own_active_runs(app_home):
    at = start(AppTest.from_file(PAGE, default_timeout=60).run(), ["plain8", "resnet8"], iterations=LONG,
               eval_every=100)
    someone_else = admission.submit("resnet8", "synthetic", iterations=10, owner="someone else")
    fresh = AppTest.from_file(PAGE, default_timeout=60)
    fresh.session_state["user_id"] = at.session_state["user_id"]  # the same browser, as its cookie says
    fresh.run()
    titles = [m.value for m in fresh.markdown if m.value.startswith("**#")]
    assert [title.split()[0] for title in titles] == ["**#1", "**#2"] and f"#{someone_else}" not in str(titles)
    for run in Store().runs():
        control.cancel(run.id)


def test_start_and_the_cli_train_with_the_same_recipe_and_the_page_says_which(app_home):
    """One rule: the page's Start and `python -m resnet_core train` with no recipe flags give the same recipe."""
    from resnet_core.cli import main

    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.button(key="train_preset_plain56_resnet56").click().run()
    assert at.session_state["train_nets"] == ["plain56", "resnet56"]
    assert at.number_input(key="train_length_iterations").value == 450
    captions = [caption.value for caption in at.caption]
    assert ":material/tune: Short-run recipe: 450 iterations of 128; lr rising linearly to 0.1 over the first 270 " \
           "iterations, then falling linearly to 0 at the end." in captions, captions
    at.multiselect(key="train_nets").set_value(["resnet8"])
    at.radio(key="train_data").set_value("synthetic")
    at.number_input(key="train_length_iterations").set_value(20)
    at.button(key="train_start").click().run()
    assert not at.error and not at.exception
    (page_run,) = Store().runs()
    control.cancel(page_run.id)
    assert main(["train", "--model", "resnet8", "--data", "synthetic", "--iterations", "20",
                 "--home", str(app_home)]) == 0
    cli_run = Store().runs()[-1]
    assert cli_run.id != page_run.id and cli_run.recipe == page_run.recipe
    assert (cli_run.recipe["warmup_iterations"], cli_run.recipe["eval_interval"]) == (12, 4)


def test_a_link_to_the_page_reproduces_its_settings(app_home):
    app_url_round_trip(PAGE, {"train_nets": ["plain56", "resnet56"], "train_data": "synthetic", "train_batch": 64,
                              "train_lr": 0.01, "train_seed": 7, "train_eval_every": 50, "train_unit": "epochs",
                              "train_length_epochs": 3})


@pytest.mark.parametrize("minutes", [1, 30])
def test_start_says_how_long_the_runs_take_here_and_a_preset_why_its_length(app_home, monkeypatch, minutes):
    monkeypatch.setenv(settings.DEMO_MINUTES_VARIABLE, str(minutes))
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.button(key=by_label("Shortcuts: plain-56 vs ResNet-56").key).click().run()
    [length] = [length for length in preset_lengths(app_home, budget_s=60 * minutes)
                if length.preset.nets == ("plain56", "resnet56")]  # at the canned calibration's speed
    assert at.number_input(key="train_length_iterations").value == length.iterations
    estimate = estimate_planned(admission.planned_runs(["plain56", "resnet56"], "cifar10", iterations=length.iterations,
                                                       batch_size=128, lr=0.1), here(), measurements(),
                                train_images=50_000, test_images=10_000)
    timed = [caption.value for caption in at.caption if caption.value.startswith(":material/timer:")]
    assert timed == [f":material/timer: Start: {estimate.describe()} (from this server's calibration). Shortcuts: "
                     f"plain-56 vs ResNet-56: {length.reason()}"]
    assert estimate.describe().endswith("on this server, both runs at once")
    # ResNet-56 at the canned 180 img/s: the pair's shortest length that shows its effect takes over a minute, so the
    # page says so; half an hour holds a longer run than that.
    assert length.fits == (minutes == 30)
    assert length.reason().startswith(f"{length.iterations:,} iterations: the longest that fit the 30 min budget"
                                      if minutes == 30 else "Even ")


def test_a_server_never_measured_measures_itself_once_in_the_background(app_home, monkeypatch):
    book_path(app_home).unlink()  # no calibration: the page starts a real one, made short here
    monkeypatch.setattr(calibrate, "PROBE_SECONDS", 0.3)
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert ":material/timer: " + MEASURING in [caption.value for caption in at.caption]
    deadline = time.monotonic() + 120
    while not any(caption.value.startswith(":material/timer: Start: about") for caption in at.caption):
        assert time.monotonic() < deadline, [caption.value for caption in at.caption]
        time.sleep(0.5)
        at.run()
    measured = {m.net: m for m in measurements(app_home)}  # measured once, not twice
    assert sorted(measured) == ["resnet20", "resnet56"] and all(m.source == "calibration" for m in measured.values())
    # Two real probes at once: ResNet-56 has ~3x ResNet-20's mult-adds per image.
    assert measured["resnet20"].train_images_per_s > measured["resnet56"].train_images_per_s > 0
