"""AppTest of the Class page and the teacher's cells: the room's runs pooled per net (median and range across
people), "you" highlighted, the teacher key accepted, refused and throttled, cells handed out in turn, reset and
preselected on the Train page, anyone's run cancelled by the teacher only.

The runs are written straight into the store as training processes would write them (no process trains), and
the server's dispatcher is held off, so nothing here waits on another process.
"""
from __future__ import annotations

import json
import os

import pytest
from helpers import REPO, ManualClock, app_assert_figures_download, app_plotly_array, app_url_round_trip
from streamlit.testing.v1 import AppTest

from explorer import identity
from resnet_core.nets.specs import get_spec
from resnet_core.runs.classroom import CELL_DEPTHS, KeyGate
from resnet_core.runs.settings import TEACHER_KEY_VARIABLE
from resnet_core.runs.store import Store
from resnet_core.training.recipe import Recipe

CLASS = str(REPO / "pages" / "8_Class.py")
TRAIN = str(REPO / "pages" / "3_Train.py")
KEY = "chalk-and-talk"
ITERATIONS = 40


@pytest.fixture
def app_class_home(app_home, app_no_dispatcher, monkeypatch) -> Store:
    """An empty store with a teacher key set, no dispatcher (queued runs stay queued) and a fresh key gate on a
    hand-moved clock."""
    monkeypatch.setenv(TEACHER_KEY_VARIABLE, KEY)
    monkeypatch.setattr(identity, "_gate", KeyGate(clock=ManualClock()))
    return Store(app_home)


def add_run(store: Store, owner: str | None, model: str, status: str, test_errors: list[float] = (),
            data: str = "synthetic", iterations: int = ITERATIONS) -> int:
    """A run of `owner` as the queue records it: test points every 10 iterations with `test_errors`, a training
    row at each of them, then `status`."""
    recipe = Recipe(iterations=iterations, batch_size=8, eval_interval=10).to_dict()
    # A run past the queue is this process's (alive, so no dispatcher calls it interrupted) from the start.
    (run_id,) = store.create_runs([dict(name=f"secret name of {owner}", spec=get_spec(model).to_dict(), recipe=recipe,
                                        data=data, device="cpu", precision="fp32", seed=0)], owner=owner,
                                  taken_by=None if status == "queued" else os.getpid())
    if status == "queued":
        return run_id
    rows = []
    for index, error in enumerate(test_errors, start=1):
        rows += [{"iteration": 10 * index, "kind": "train", "epoch": 0, "error": error + 0.1,
                  "smoothed_error": error + 0.1},
                 {"iteration": 10 * index, "kind": "test", "epoch": 0, "error": error, "loss": 1.0}]
    store.add_metrics(run_id, rows)
    if status != "running":
        store.finish(run_id, status)
    return run_id


def page(script: str, user: str, key: str | None = None, runs: str | None = None, teacher: bool = False) -> AppTest:
    at = AppTest.from_file(script, default_timeout=60)
    at.session_state["user_id"] = user  # one browser each, as its cookie would say
    if teacher:  # signed in earlier in this session, on the Class page
        at.session_state["teacher"] = True
    if key is not None:
        at.query_params["key"] = key
    if runs is not None:
        at.query_params["runs"] = runs
    at.run()
    assert not at.exception, at.exception
    return at


def cell_lines(at: AppTest) -> list[str]:
    return [info.value for info in at.info if info.value.startswith("Your part of Fig. 6")]


def test_the_rooms_runs_are_pooled_per_net_with_you_highlighted(app_class_home, app_chart_traces):
    store = app_class_home
    add_run(store, "alice", "plain20", "finished", [0.8, 0.6, 0.5, 0.4], data="cifar10")
    add_run(store, "bob", "plain20", "finished", [0.9, 0.7, 0.6, 0.5], data="cifar10")
    add_run(store, "carol", "plain20", "running", [0.7, 0.2], data="cifar10")  # still training: two points so far
    add_run(store, "alice", "resnet20", "finished", [0.7, 0.5, 0.3, 0.2], data="cifar10")
    add_run(store, "bob", "resnet20", "failed", [0.9], data="cifar10")  # stopped: counted, not pooled
    add_run(store, "dave", "plain56", "queued", data="cifar10")
    add_run(store, "erin", "plain20", "finished", [0.1] * 4)  # another dataset: filtered out
    add_run(store, "erin", "plain20", "finished", [0.1] * 8, data="cifar10", iterations=80)  # another length: out

    at = page(CLASS, "alice")
    assert at.selectbox(key="class_dataset").value == "cifar10"
    assert at.selectbox(key="class_length").value == ITERATIONS
    table = at.dataframe[0].value.set_index("net")
    assert list(table.index) == ["plain-20", "plain-56", "ResNet-20"]  # plain before residual, shallow first
    assert table.loc["plain-20", ["people", "runs", "finished", "running", "queued", "stopped"]].tolist() == [
        3, 3, 2, 1, 0, 0]
    assert table.loc["ResNet-20", ["people", "runs", "finished", "stopped"]].tolist() == [2, 2, 1, 1]
    assert table.loc["plain-56", ["people", "queued"]].tolist() == [1, 1]
    assert table.loc["plain-20", ["final test error, median (%)", "lowest (%)", "highest (%)",
                                  "paper, Table 6 (%)"]].tolist() == ["45.00", "40.00", "50.00", ""]  # alice, bob
    assert table.loc["ResNet-20", "paper, Table 6 (%)"] == "8.75"
    assert table.loc["plain-56", "final test error, median (%)"] == ""  # queued: nothing to say yet
    assert list(table["you"]) == ["you", "", "you"]
    assert "secret name" not in str(at.dataframe[0].value) and "alice" not in str(at.dataframe[0].value)

    traces = app_chart_traces(at)
    # At 10 and 20 iterations three people, after that the two who got there.
    assert traces["plain-20 test"]["y"] == pytest.approx([80, 60, 55, 45])
    assert app_plotly_array(traces["plain-20 test"]["customdata"]).tolist() == [3, 3, 2, 2]
    assert traces["plain-20 test lowest"]["y"] == pytest.approx([70, 20, 50, 40])
    assert traces["plain-20 test highest"]["y"] == pytest.approx([90, 70, 60, 50])
    assert traces["ResNet-20 test"]["y"] == pytest.approx([70, 50, 30, 20])  # bob's failed run is not pooled
    assert traces["you: plain-20 test"]["y"] == pytest.approx([80, 60, 50, 40])
    assert traces["you: plain-20 test"]["xaxis"] == "x" and traces["you: ResNet-20 test"]["xaxis"] == "x2"
    assert "plain-56 test" not in traces  # queued: no curve yet

    others = page(CLASS, "zoe")  # someone with no runs sees the same room, none of it theirs
    assert list(others.dataframe[0].value["you"]) == ["", "", ""] and not any(
        name.startswith("you:") for name in app_chart_traces(others))

    store.add_metrics(3, [{"iteration": 30, "kind": "test", "epoch": 0, "error": 0.1}])  # carol's run goes on
    at.run()
    assert app_plotly_array(app_chart_traces(at)["plain-20 test"]["customdata"]).tolist() == [3, 3, 3, 2]

    at.selectbox(key="class_dataset").select("synthetic").run()  # Table 6 is CIFAR-10's: no column beside others
    assert "paper, Table 6 (%)" not in at.dataframe[0].value and list(at.dataframe[0].value["net"]) == ["plain-20"]


def test_an_empty_room_says_what_will_appear_and_a_first_run_brings_the_filters(app_class_home):
    at = page(CLASS, "alice")
    assert at.info[0].value.startswith("No runs started in the last 3 hours yet")
    add_run(app_class_home, "bob", "resnet32", "running", [0.9])
    at.run()  # the live part sees a dataset the filters do not offer, and reruns the page
    assert at.selectbox(key="class_dataset").value == "synthetic" and not at.info
    assert list(at.dataframe[0].value["net"]) == ["ResNet-32"]


def test_a_link_to_the_page_reproduces_its_filters_and_the_figure_downloads(app_class_home):
    add_run(app_class_home, "alice", "plain20", "finished", [0.8, 0.6, 0.5, 0.4])
    add_run(app_class_home, "bob", "resnet20", "finished", [0.1] * 8, data="cifar10", iterations=80)
    opened = app_url_round_trip(CLASS, {"class_hours": 5, "class_dataset": "cifar10", "class_length": 80})
    # On the way there, CIFAR-10 with the first length (alice's 40) matched no run: the page said so, in one line.
    assert list(opened.dataframe[0].value["net"]) == ["ResNet-20"]  # the link's filters, not the defaults
    app_assert_figures_download(opened, data_figures=1)
    config = json.loads(opened.get("plotly_chart")[0].proto.config)
    assert config["toImageButtonOptions"]["filename"] == "class-fig6-cifar10-80-iterations"


def test_the_teacher_key_is_accepted_once_and_taken_out_of_the_url(app_class_home):
    at = page(CLASS, "teacher", key=KEY)
    assert "key" not in at.query_params and not at.error
    assert at.button(key="class_hand_out").label == "Hand out cells"
    at.run()  # the session remembers: no key in the URL any more
    assert at.button(key="class_reset") and not at.error


def test_a_wrong_key_is_refused_in_one_line_and_not_retried_within_a_second(app_class_home):
    clock = identity._gate.clock
    wrong = page(CLASS, "guesser", key="chalk")
    assert [error.value for error in wrong.error] == [
        "That is not this server's teacher key; check the link you were given."]
    assert "key" not in wrong.query_params and not wrong.get("button")
    clock.now += 0.5  # a second try, even with the right key, within the second is refused unchecked
    hurried = page(CLASS, "teacher", key=KEY)
    assert hurried.error[0].value.startswith("Too many tries: a teacher key can be tried once every 1 s")
    assert "teacher" not in hurried.session_state
    clock.now += 0.5
    assert not page(CLASS, "teacher", key=KEY).error


def test_without_a_key_variable_there_is_no_teacher(app_class_home, monkeypatch):
    monkeypatch.delenv(TEACHER_KEY_VARIABLE)
    at = page(CLASS, "teacher", key="anything")
    assert at.error[0].value.startswith("This server has no teacher: $RESNET_EXPLORER_TEACHER_KEY is not set")
    assert not at.get("button")


def test_cells_go_round_robin_preselected_on_train_and_a_reset_starts_again(app_class_home):
    before = page(TRAIN, "early")  # no cells handed out yet: the page is as ever
    assert not cell_lines(before) and before.session_state["train_nets"] == ["plain20", "resnet20"]

    head = page(CLASS, "teacher", key=KEY)
    head.number_input(key="class_lesson_iterations").set_value(600)
    head.button(key="class_hand_out").click().run()
    assert app_class_home.lesson_iterations() == (True, 600)

    for arrival, person in enumerate(["ann", "ben", "cat", "dan", "eve"]):
        depth = CELL_DEPTHS[arrival % 4]
        if arrival in (0, 1):  # two of them open Train (the rest are given cells the same way; quicker here)
            at = page(TRAIN, person)
            assert cell_lines(at) == [f"Your part of Fig. 6: plain-{depth} and ResNet-{depth}, 600 iterations"]
            assert at.session_state["train_nets"] == [f"plain{depth}", f"resnet{depth}"]
            assert at.number_input(key="train_length_iterations").value == 600
            at.multiselect(key="train_nets").set_value(["resnet8"]).run()  # their own change then stays
            assert at.session_state["train_nets"] == ["resnet8"]
        else:
            assert app_class_home.assign(person).depth == depth
    assert cell_lines(page(TRAIN, "ann"))[0].startswith("Your part of Fig. 6: plain-20")  # a reload: the same cell
    assert not cell_lines(page(TRAIN, "teacher", teacher=True))  # the teacher gets no cell
    assert app_class_home.assigned_depths() == {20: 2, 32: 1, 44: 1, 56: 1}

    head.run()
    head.button(key="class_reset").click().run()
    assert app_class_home.assigned_depths() == {20: 0, 32: 0, 44: 0, 56: 0}
    assert "5 assignments forgotten" in head.toast[0].value
    assert cell_lines(page(TRAIN, "eve"))[0].startswith("Your part of Fig. 6: plain-20 and ResNet-20")
    head.button(key="class_stop").click().run()
    assert not cell_lines(page(TRAIN, "fay")) and not cell_lines(page(TRAIN, "eve"))  # no more handed out


def test_only_the_teacher_cancels_other_peoples_runs(app_class_home):
    store = app_class_home
    head = page(CLASS, "teacher", key=KEY)  # open before anything is queued: the list is empty
    assert head.selectbox(key="class_cancel_run").value is None and head.button(key="class_cancel").disabled
    anns = add_run(store, "ann", "plain44", "queued")
    ben = page(TRAIN, "ben", runs=str(anns))  # a shared link shows ann's run with its buttons
    ben.button(key=f"train_cancel_{anns}").click().run()
    assert ben.toast[0].value == f"Run {anns} is someone else's; only they or the teacher can cancel it."
    assert store.run(anns).status == "queued"
    assert not page(CLASS, "ben").get("button")  # no teacher panel for ben

    head.run()
    assert head.selectbox(key="class_cancel_run").value == anns
    assert head.selectbox(key="class_cancel_run").options == [f"#{anns} plain-44 on synthetic (queued)"]
    head.button(key="class_cancel").click().run()
    assert store.run(anns).status == "cancelled"
    assert head.toast[0].value == f"Run {anns} was cancelled before it started."
