"""`python -m resnet_core reproduce`: a table's runs go through the job queue with the paper's recipe, the report
sets them beside the paper's numbers, and bad input or a CPU run too long for the machine queues nothing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from helpers import seed_speeds

from resnet_core.cli import main
from resnet_core.nets.model import ResNet
from resnet_core.nets.specs import get_spec
from resnet_core.nets.summary import count_parameters
from resnet_core.runs import dispatch, reproduce, settings
from resnet_core.runs.launchers import local
from resnet_core.runs.admission import SOURCE_SIZES
from resnet_core.runs.store import Store
from resnet_core.training.recipe import Recipe, training_recipe

SYNTHETIC_IMAGES = SOURCE_SIZES["synthetic"][1]


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A data folder whose queue starts no warm spares (they would outlive the test) and runs two at once, with the
    canned calibration of this server's speed."""
    monkeypatch.setenv(settings.SPARES_VARIABLE, "0")
    monkeypatch.setenv(settings.CAP_VARIABLE, "2")
    seed_speeds(tmp_path)
    return tmp_path


def test_two_nets_train_through_the_queue_and_report_beside_the_paper(home, capsys):
    assert main(["reproduce", "table6", "--nets", "resnet20", "plain20", "--data", "synthetic", "--iterations", "2",
                 "--device", "cpu", "--home", str(home)]) == 0
    assert "Queued runs 1 (plain20), 2 (resnet20)." in capsys.readouterr().out  # the table's order
    store = Store(home)
    runs = store.runs()
    assert [(run.name, run.model, run.device) for run in runs] == [("reproduce table6", "plain20", "cpu"),
                                                                   ("reproduce table6", "resnet20", "cpu")]
    for run in runs:  # the paper's schedule, scaled to 2 iterations: the one rule behind every run
        expected = training_recipe(get_spec(run.model), iterations=2, kind="paper", train_images=SYNTHETIC_IMAGES)
        assert run.recipe == expected.to_dict()

    deadline = time.monotonic() + 120  # two real training processes, each a few seconds
    while any(store.run(run.id).status != "finished" for run in runs):
        assert time.monotonic() < deadline, (store.run_dir(1) / local.LOG_NAME).read_text()
        time.sleep(0.2)

    assert main(["reproduce", "table6", "--report", "--nets", "resnet20", "plain20", "--home", str(home)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:6] == ["net", "params", "paper", "err", "our", "err"]
    for line, expected in zip(lines[1:3], (["plain20", "0.27M", "-"], ["resnet20", "0.27M", "8.75%"])):
        net, params, paper, ours, iterations, wall_time, left, *status = line.split()
        assert [net, params, paper, left] == [*expected, "-"] and ours.endswith("%") and iterations == "2/2"
        assert status == ["finished", f"(#{1 if net == 'plain20' else 2},", "synthetic)"]
    assert "none for plain nets" in lines[3] and "left: the time to its end on this server" in lines[4]

    assert main(["reproduce", "table6", "--report", "--json", "--home", str(home)]) == 0
    rows = {row["net"]: row for row in json.loads(capsys.readouterr().out)}
    assert list(rows) == list(reproduce.TABLES["table6"].nets)
    tested = {summary["model"]: summary["test_error"] for summary in store.summaries()}
    for net, paper_error in (("plain20", None), ("resnet20", 8.75)):
        row = rows[net]
        assert (row["paper_error_percent"], row["iterations_done"], row["iterations_total"]) == (paper_error, 2, 2)
        assert row["our_error_percent"] == pytest.approx(100 * tested[net])
        assert row["parameters"] == count_parameters(ResNet(get_spec(net)))
        assert row["wall_s"] > 0 and row["status"] == "finished"
    assert rows["resnet110"] == dict(net="resnet110", parameters=count_parameters(ResNet(get_spec("resnet110"))),
                                     paper_error_percent=6.43, our_error_percent=None, iterations_done=0,
                                     iterations_total=None, wall_s=None, left_s=None, status="not run", run_id=None,
                                     data=None)


def test_a_waiting_net_is_reported_queued_and_resnet110_keeps_its_warm_up(home, monkeypatch):
    """Python's queue_table: nothing starts (no dispatch), so the report shows the run waiting."""
    monkeypatch.setattr(reproduce, "dispatch", lambda store: [])
    store = Store(home)
    [queued] = reproduce.queue_table("table6", ["resnet110"], iterations=8, device="cpu", data="synthetic",
                                     store=store)
    assert (queued.net, queued.action, queued.status) == ("resnet110", "queued", "queued")
    recipe = store.run(queued.run_id).recipe
    assert (recipe["warmup_lr"], recipe["lr"], recipe["lr_milestones"]) == (0.01, 0.1, (4, 6))  # §4.2, scaled
    [row] = reproduce.report("table6", ["resnet110"], store)
    assert (row.status, row.our_error_percent, row.iterations_done, row.iterations_total, row.wall_s) == (
        "queued", None, 0, 8, None)
    # Its time once started, from this server's (canned) speed: what the same run is estimated to take.
    planned = [(get_spec("resnet110"), Recipe.from_dict(recipe))]
    assert row.left_s == pytest.approx(reproduce.table_estimate(planned, "synthetic", store).seconds)


def test_a_full_length_table_on_a_cpu_is_refused_with_a_length_that_fits(home, capsys, monkeypatch):
    monkeypatch.setattr(reproduce, "dispatch", lambda store: [])  # queued, never started
    argv = ["reproduce", "table6", "--device", "cpu", "--data", "synthetic", "--home", str(home)]
    assert main(argv) == 2
    [line] = capsys.readouterr().err.splitlines()
    planned = [(get_spec(net), training_recipe(get_spec(net), iterations=64_000, kind="paper",
                                               train_images=SYNTHETIC_IMAGES)) for net in reproduce.TABLES["table6"].nets]
    full = reproduce.table_estimate(planned, "synthetic", Store(home))  # from the canned calibration
    assert full.seconds > reproduce.CPU_LIMIT_S
    assert (f"Training 10 nets for 64,000 iterations would take {full.describe()} (speeds from this server's "
            "calibration); train on a GPU (--device cuda), or pass --iterations ") in line
    suggested = int(line.split("--iterations ")[1].split()[0])
    assert suggested % 100 == 0 and 64_000 * reproduce.CPU_LIMIT_S / full.seconds - 100 < suggested
    assert Store(home).runs() == []

    assert main([*argv, "--iterations", str(suggested)]) == 0  # it fits, and goes to the queue as the app's runs
    runs = Store(home).runs()
    assert [run.model for run in runs] == list(reproduce.TABLES["table6"].nets)  # 110 layers: no server's depth cap
    assert {(run.recipe["iterations"], run.device, run.name, run.status) for run in runs} == {
        (suggested, "cpu", "reproduce table6", "queued")}


def test_queuing_a_table_again_finishes_it_instead_of_training_it_twice(home, capsys, monkeypatch):
    monkeypatch.setattr(reproduce, "dispatch", lambda store: [])
    store = Store(home)
    argv = ["reproduce", "table6", "--nets", "plain20", "resnet20", "plain32", "--iterations", "4", "--device", "cpu",
            "--data", "synthetic", "--home", str(home)]
    assert main(argv) == 0
    assert "Queued runs 1 (plain20), 2 (resnet20), 3 (plain32)." in capsys.readouterr().out
    store.claim(2, 1)
    store.finish(2, "finished")
    assert store.cancel_queued(3)

    assert main(argv) == 0
    out = capsys.readouterr().out
    resumed = [(get_spec("plain32"), Recipe.from_dict(store.run(3).recipe))]
    takes = reproduce.table_estimate(resumed, "synthetic", store)  # the runs it trains, at the canned speed
    assert out.startswith(f"Queued no new run. Resumed runs 3 (plain32) from their last checkpoints. They take "
                          f"{takes.describe()} (speeds from this server's calibration). Kept runs 1 (plain20, queued), "
                          "2 (resnet20, finished): the same settings, already queued, training or done.")
    assert [(run.id, run.status) for run in store.runs()] == [(1, "queued"), (2, "finished"), (3, "queued")]

    # Other settings are another experiment: a second seed, or another length, is queued beside the first.
    assert main([*argv, "--seed", "1"]) == 0
    assert "Queued runs 4 (plain20), 5 (resnet20), 6 (plain32)." in capsys.readouterr().out
    [again] = reproduce.queue_table("table6", ["resnet20"], iterations=8, device="cpu", data="synthetic", store=store)
    assert (again.run_id, again.action) == (7, "queued")
    assert len(store.runs()) == 7


def test_a_table_run_whose_process_died_unseen_is_resumed_not_kept(home, monkeypatch):
    """After a reboot no page may have looked: the run still reads "running" until a dispatcher settles it."""
    store = Store(home)
    monkeypatch.setattr(reproduce, "dispatch", lambda store: [])
    [run] = reproduce.queue_table("table6", ["resnet20"], iterations=4, device="cpu", data="synthetic", store=store)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert store.claim(run.run_id, gone.pid) and store.run(run.run_id).status == "running"

    launched = []  # the real dispatcher, with a stand-in for the training process it would start
    monkeypatch.setattr(reproduce, "dispatch", dispatch.dispatch)
    monkeypatch.setattr(local, "start_run",
                        lambda store, run_id, threads, spares: launched.append(run_id) or os.getpid())
    [again] = reproduce.queue_table("table6", ["resnet20"], iterations=4, device="cpu", data="synthetic", store=store)
    assert (again.run_id, again.action, launched) == (run.run_id, "resumed", [run.run_id])
    assert len(store.runs()) == 1


@pytest.mark.parametrize("argv, message", [
    (["table7"], "Unknown table 'table7'; allowed: table6."),
    (["table6", "--nets", "resnet20", "resnet8"], "Unknown net 'resnet8' for table6; allowed: plain20, resnet20, "
                                                  "plain32, resnet32, plain44, resnet44, plain56, resnet56, plain110, "
                                                  "resnet110."),
    (["table6", "--report", "--nets", "resnet1202"], "Unknown net 'resnet1202' for table6; allowed: plain20"),
    (["table6", "--report", "--iterations", "5"], "--report only prints what the runs recorded; drop --iterations."),
    (["table6", "--json", "--data", "synthetic"], "--json goes with --report"),
])
def test_bad_input_is_one_line_exit_2_and_queues_nothing(home, capsys, argv, message):
    assert main(["reproduce", *argv, "--home", str(home)]) == 2
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    assert line.startswith("error: ") and message in line and captured.out == ""
    assert Store(home).runs() == []
