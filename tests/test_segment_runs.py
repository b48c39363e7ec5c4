"""Segmentation runs (issue 25) go through the same queue, store and curves as training runs: `segment train` as a
script drives it, `segment evaluate --json`, bad inputs refused before anything is recorded, a run started by a real
dispatcher, a cancel and a resume, migration 0004 on both databases, and `db copy` carrying what it added. Tiny nets
and scenes: a few seconds per run on one thread."""
from __future__ import annotations

import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from alembic import command
from alembic.config import Config
from helpers import SETTINGS_PREFIX, eventually
from sqlalchemy import create_engine, text

from resnet_core.cli import main
from resnet_core.errors import RunLimitError, UserError
from resnet_core.explain.trained import trained_model
from resnet_core.nets.model import ResNet
from resnet_core.nets.specs import get_spec
from resnet_core.pixels.jobs import submit_segmentation
from resnet_core.pixels.segmenter import load_segmenter
from resnet_core.runs import settings
from resnet_core.runs.admission import Limits
from resnet_core.runs.database import MIGRATIONS
from resnet_core.runs.executor import execute
from resnet_core.runs.launchers import local
from resnet_core.runs.store import Store
from resnet_core.training.checkpoint import save_model

REPO = Path(__file__).resolve().parents[1]
TINY = ["--scenes-from", "synthetic", "--iterations", "6", "--scenes", "64", "--test-scenes", "16",
        "--batch-size", "16", "--threads", "1"]
TINY_SETTINGS = dict(iterations=6, train_scenes=64, test_scenes=16, batch_size=16)
CLASSES = ["background", *(f"pattern{k}" for k in range(10))]  # synthetic's ten patterns


def clean_environment() -> dict[str, str]:
    """This process's environment without a developer's RESNET_EXPLORER_* settings (a module fixture starts before
    `isolated_home` removes them) and on one thread."""
    return {**{name: value for name, value in os.environ.items() if not name.startswith(SETTINGS_PREFIX)},
            "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A segmentation run trained by `segment train` as a script runs it: (data folder, run id, its stdout)."""
    home = tmp_path_factory.mktemp("segment-home")
    done = subprocess.run([sys.executable, "-m", "resnet_core", "segment", "train", "--backbone", "random:resnet8",
                           *TINY, "--home", str(home)], capture_output=True, text=True, cwd=REPO,
                          env=clean_environment(), timeout=300)
    assert done.returncode == 0, done.stderr
    return home, int(done.stdout.split()[-1]), done.stdout


def test_segment_train_prints_the_run_id_last_and_records_its_curves(trained):
    home, run_id, stdout = trained
    assert stdout.splitlines()[-1] == str(run_id) and f"run {run_id} finished at iteration 6" in stdout
    store = Store(home)
    run = store.run(run_id)
    assert (run.kind, run.status, run.model, run.data) == ("segment", "finished", "resnet8", "synthetic")
    assert run.settings["backbone"] == "random:resnet8" and run.settings["train_scenes"] == 64
    assert run.recipe["iterations"] == 6 and run.recipe["batch_size"] == 16
    assert [row["iteration"] for row in store.metrics(run_id, "train")] == list(range(1, 7))
    tests = store.metrics(run_id, "test")
    assert [row["iteration"] for row in tests] == [2, 4, 6]
    for row in tests:
        assert 0 <= row["error"] <= 1 and 0 < row["miou"] <= 1  # pixel error and mIoU
    assert all(row["miou"] is None for row in store.metrics(run_id, "train"))
    iteration, path = store.latest_checkpoint(run_id)
    segmenter, metadata = load_segmenter(path)  # the run's checkpoint is the segmenter itself
    assert iteration == 6 and segmenter.spec.name == "fcn-resnet8" and metadata["classes"] == CLASSES
    listed = {summary["id"]: summary for summary in store.summaries()}  # `runs --json` lists it with the others
    assert listed[run_id]["kind"] == "segment" and listed[run_id]["test_miou"] == tests[-1]["miou"]
    assert store.runs() == []  # not a classifier: the model lists and the Train page's runs leave it out


def test_segment_evaluate_json_scores_the_runs_segmenter(trained, capsys):
    home, run_id, _ = trained
    assert main(["segment", "evaluate", str(run_id), "--json", "--home", str(home)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"pixel_accuracy", "miou", "iou", "background_share", "classes", "scenes"} <= set(report)
    assert report["classes"] == CLASSES and list(report["iou"]) == CLASSES and report["scenes"] == 16
    for value in (report["pixel_accuracy"], report["miou"], report["background_share"],
                  *(iou for iou in report["iou"].values() if iou is not None)):
        assert 0 <= value <= 1
    last = Store(home).metrics(run_id, "test")[-1]
    assert report["pixel_accuracy"] == pytest.approx(1 - last["error"], abs=1e-3)  # the same test scenes
    assert report["miou"] == pytest.approx(last["miou"], abs=1e-3)
    assert main(["segment", "evaluate", str(run_id), "--home", str(home)]) == 0
    table = capsys.readouterr().out
    assert "pixel accuracy" in table and "mIoU" in table and "background" in table
    assert main(["evaluate", str(run_id), "--home", str(home)]) == 2  # a classifier's evaluation
    assert f"`python -m resnet_core segment evaluate {run_id}` scores it" in capsys.readouterr().err


def imagenet_checkpoint(tmp_path) -> str:
    path = tmp_path / "resnet18.safetensors"
    save_model(path, ResNet(get_spec("resnet18")))
    return str(path)


@pytest.mark.parametrize("backbone, changes, message", [
    ("resnet56", [], "Unknown backbone 'resnet56'; allowed: reference:NET"),
    ("random:vgg16", [], "Unknown backbone 'random:vgg16'; after random: name a CIFAR net"),
    ("random:resnet50", [], "resnet50 is an ImageNet net; the segmenter's backbone must be a CIFAR net"),
    ("reference:resnet50", [], "No reference net 'resnet50'; shipped: plain20, resnet20, plain56, resnet56"),
    (imagenet_checkpoint, [], "holds resnet18, an ImageNet net; the experiments and the segmenter take the CIFAR"),
    ("random:resnet8", ["--iterations", "0"], "iterations must be a whole number of at least 1; got 0"),
    ("random:resnet8", ["--scenes-from", "nowhere"], "Unknown dataset"),
    ("random:resnet8", ["--scenes-from", "nowhere-scenes"], "nowhere'; allowed: cifar10"),
    ("random:resnet8", ["--scenes", "0"], "train_count must be a whole number of scenes of at least 1"),
])
def test_bad_inputs_are_one_line_and_record_nothing(tmp_path, capsys, backbone, changes, message):
    backbone = backbone(tmp_path) if callable(backbone) else backbone
    assert main(["segment", "train", "--backbone", backbone, *TINY, *changes]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: ") and message in line
    assert Store().summaries() == [] and not list((Store().home / "runs").glob("*"))


def test_a_segmentation_run_is_no_backbone(trained, capsys):
    home, run_id, _ = trained
    assert main(["segment", "train", "--backbone", str(run_id), *TINY, "--home", str(home)]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert f"Run {run_id} is a segment run, not a classifier's; name a training run, reference:NET" in line
    assert [summary["id"] for summary in Store(home).summaries()] == [run_id]


def test_a_run_submitted_to_the_queue_is_trained_by_its_own_process(tmp_path, monkeypatch):
    """A page's path: submitted with a person's limits, started by a real dispatcher in a process of its own. A
    frozen reference backbone with FCN-16s's skip: the saved segmenter holds the reference's backbone as it was."""
    monkeypatch.setenv(settings.CAP_VARIABLE, "1")
    monkeypatch.setenv(settings.SPARES_VARIABLE, "0")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    store = Store(tmp_path)
    room = Limits(per_owner=1, max_waiting=5, cap=1, cpu_server=True)
    run_id = submit_segmentation("reference:resnet20", "synthetic", freeze=True, skip=True, owner="alice",
                                 limits=room, store=store, **{**TINY_SETTINGS, "iterations": 3})
    with pytest.raises(RunLimitError, match="Each person may have 1 runs queued or running"):
        submit_segmentation("random:resnet8", "synthetic", owner="alice", limits=room, store=store, **TINY_SETTINGS)
    deadline = time.monotonic() + 120
    while store.run(run_id).status not in ("finished", "failed"):
        assert time.monotonic() < deadline, (store.run_dir(run_id) / local.LOG_NAME).read_text()
        time.sleep(0.2)
    run = store.run(run_id)
    assert run.status == "finished", run.error
    assert [row["iteration"] for row in store.metrics(run_id, "test")] == [1, 2, 3]
    segmenter, _ = load_segmenter(store.latest_checkpoint(run_id)[1])
    assert segmenter.spec.skip and segmenter.spec.backbone.name == "resnet20"
    reference = trained_model("reference:resnet20").state_dict()
    for key, value in segmenter.backbone.state_dict().items():
        assert value.equal(reference[key]), key


def test_a_source_named_as_its_scenes_is_that_source(tmp_path):
    store = Store(tmp_path)
    run_id = submit_segmentation("random:resnet8", "synthetic-scenes", store=store, taken_by=os.getpid(),
                                 **TINY_SETTINGS)
    assert store.run(run_id).data == "synthetic"  # what its scenes are made of, as `cifar10-scenes` is `cifar10`


def test_a_cpu_server_refuses_a_run_it_would_take_hours_over(tmp_path):
    with pytest.raises(UserError, match="4,000 iterations of 64 are too long for this CPU-only server; train on at "
                                        r"most 125,000 images of 64 x 64 pixels \(as long as 10 CIFAR-10 epochs"):
        submit_segmentation("random:resnet8", "synthetic", iterations=4_000, owner="bob", store=Store(tmp_path),
                            limits=Limits(cpu_server=True))
    assert Store(tmp_path).summaries() == []


def test_a_cancel_in_the_store_ends_the_run_cancelled_and_a_resume_goes_on_into_the_same_curve(tmp_path):
    store = Store(tmp_path)
    run_id = submit_segmentation("random:resnet8", "synthetic", store=store, taken_by=os.getpid(),
                                 **{**TINY_SETTINGS, "iterations": 10_000})
    assert store.request_cancel(run_id)  # e.g. from a page: the lease's first renewal reads it
    end = execute(store, run_id)
    assert end.status == "cancelled" and 0 < end.done < 10_000
    run = store.run(run_id)
    assert run.status == "cancelled" and run.error == f"Cancelled at iteration {end.done}."
    assert store.latest_checkpoint(run_id)[0] == end.done  # its segmenter as it was, for `segment evaluate`

    uninterrupted = submit_segmentation("random:resnet8", "synthetic", store=store, taken_by=os.getpid(),
                                        **TINY_SETTINGS)
    assert execute(store, uninterrupted).status == "finished"
    shorter = submit_segmentation("random:resnet8", "synthetic", store=store, taken_by=os.getpid(),
                                  **TINY_SETTINGS)
    polls = itertools.count()  # the loop asks after each iteration: stopped after the third, between test points
    first = execute(store, shorter, should_stop=lambda: next(polls) >= 2)
    assert (first.status, first.done) == ("cancelled", 3) and store.latest_checkpoint(shorter)[0] == 3
    store.requeue_for_resume(shorter, taken_by=os.getpid())
    resumed = []
    assert execute(store, shorter, on_event=resumed.append).status == "finished"
    trained = [record.iteration for record in resumed if getattr(record, "kind", None) == "train"]
    assert trained == [4, 5, 6]  # from its checkpoint
    assert_same_curve(store, shorter, uninterrupted)
    assert store.run(shorter).status == "finished" and store.latest_checkpoint(shorter)[0] == 6


def assert_same_curve(store: Store, run_id: int, reference: int) -> None:
    """Run `run_id` recorded every row once, as the uninterrupted `reference` did, and ended with its segmenter."""
    for kind in ("train", "test"):
        rows, expected = store.metrics(run_id, kind), store.metrics(reference, kind)
        assert [row["iteration"] for row in rows] == [row["iteration"] for row in expected], kind
        for row, wanted in zip(rows, expected):
            assert row["loss"] == pytest.approx(wanted["loss"], rel=1e-5), (kind, row["iteration"])
    mine, theirs = (load_segmenter(store.latest_checkpoint(run)[1])[0].state_dict() for run in (run_id, reference))
    for key, value in mine.items():
        assert torch.allclose(value.float(), theirs[key].float(), rtol=1e-4, atol=1e-6), key


def test_a_segment_train_killed_mid_run_resumes_from_its_last_checkpoint_losing_and_doubling_nothing(tmp_path):
    """SIGKILL, as a lost machine: no handler, no last write. The resumed run goes on from the last test point's
    checkpoint, forgets the rows the killed process wrote after it and writes them again, the same. The run is too long
    to end by itself, so the kill always lands mid-run; the resumed one is stopped past its next checkpoint."""
    flags = ["--iterations", "100000", "--eval-every", "20", "--scenes", "64", "--test-scenes", "16",
             "--batch-size", "16", "--threads", "1"]
    process = subprocess.Popen([sys.executable, "-m", "resnet_core", "segment", "train", "--backbone",
                                "random:resnet8", "--scenes-from", "synthetic", *flags, "--home", str(tmp_path)],
                               cwd=REPO, env=clean_environment(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    store = Store(tmp_path)

    def past_a_checkpoint() -> None:
        latest = store.latest_checkpoint(1)
        rows = store.metrics(1, "train")
        assert latest is not None and rows and rows[-1]["iteration"] > latest[0], "no row past a checkpoint yet"

    try:
        eventually(past_a_checkpoint, timeout=120)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    written = store.metrics(1, "train")  # what the killed process had written, past its checkpoint too
    checkpointed = store.latest_checkpoint(1)[0]
    assert checkpointed >= 20 and checkpointed % 20 == 0 and written[-1]["iteration"] > checkpointed

    store.requeue_for_resume(1, taken_by=os.getpid())
    resumed = []
    stop_at = checkpointed + 25  # past the next test point and its checkpoint
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the killed process trained: the same arithmetic
    try:
        outcome = execute(store, 1, on_event=resumed.append,
                          should_stop=lambda: bool(resumed) and resumed[-1].iteration >= stop_at)
    finally:
        torch.set_num_threads(threads)
    assert (outcome.status, outcome.done) == ("cancelled", stop_at)
    assert next(record.iteration for record in resumed if getattr(record, "kind", None) == "train") == checkpointed + 1
    rows = store.metrics(1, "train")
    assert [row["iteration"] for row in rows] == list(range(1, stop_at + 1))  # nothing lost, nothing doubled
    for before, after in zip(written, rows):  # the rows written again past the checkpoint are the same
        assert after["loss"] == pytest.approx(before["loss"], rel=1e-5), before["iteration"]
    assert [row["iteration"] for row in store.metrics(1, "test")] == list(range(20, checkpointed + 21, 20))
    assert load_segmenter(store.latest_checkpoint(1)[1])[1]["training"]["iteration"] == stop_at


def test_a_resumed_run_goes_on_from_its_own_weights_when_its_backbone_file_is_gone(tmp_path):
    path = tmp_path / "backbone.safetensors"
    net = ResNet(get_spec("resnet8"))
    save_model(path, net)
    store = Store(tmp_path)
    run_id = submit_segmentation(str(path), "synthetic", freeze=True, store=store, taken_by=os.getpid(),
                                 **TINY_SETTINGS)
    polls = itertools.count()
    assert execute(store, run_id, should_stop=lambda: next(polls) >= 2).done == 3
    path.unlink()  # its backbone's source, read when it started, not since
    store.requeue_for_resume(run_id, taken_by=os.getpid())
    assert execute(store, run_id).status == "finished"
    assert [row["iteration"] for row in store.metrics(run_id, "train")] == list(range(1, 7))
    segmenter, _ = load_segmenter(store.latest_checkpoint(run_id)[1])
    original = net.state_dict()
    for key, value in segmenter.backbone.state_dict().items():  # frozen on the resume too: still the file's net
        assert value.equal(original[key]), key


def test_a_backbone_file_replaced_by_another_net_fails_the_run(tmp_path):
    path = tmp_path / "backbone.safetensors"
    save_model(path, ResNet(get_spec("resnet8")))
    store = Store(tmp_path)
    run_id = submit_segmentation(str(path), "synthetic", store=store, taken_by=os.getpid(), **TINY_SETTINGS)
    save_model(path, ResNet(get_spec("plain8")))  # after it was queued, before it started
    with pytest.raises(UserError, match="holds a plain8, but this segmenter's backbone is a resnet8"):
        execute(store, run_id)
    assert store.run(run_id).status == "failed" and "holds a plain8" in store.run(run_id).error


def test_migration_0004_keeps_every_row_on_both_databases(tmp_path, database_url):
    """A store at revision 0003 with a training run: 0004 adds the settings and the mIoU, and leaves it as it was."""
    url = database_url or f"sqlite:///{tmp_path / 'runs.sqlite'}"
    spec, recipe = json.dumps(get_spec("resnet8").to_dict()), json.dumps({"iterations": 2})
    with create_engine(url).begin() as connection:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, "0003")
        connection.execute(text("INSERT INTO runs (name, model, spec, recipe, data, device, precision, seed, status, "
                                "created, kind) VALUES ('old', 'resnet8', :spec, :recipe, 'synthetic', 'cpu', "
                                "'fp32', 0, 'finished', 1.0, 'train')"), {"spec": spec, "recipe": recipe})
        connection.execute(text("INSERT INTO metrics (run_id, kind, iteration, epoch, loss, error) VALUES "
                                "(1, 'train', 1, 0, 2.0, 0.9), (1, 'test', 2, 0, 1.5, 0.6)"))
    store = Store(tmp_path)  # opening migrates
    run = store.run(1)
    assert (run.name, run.kind, run.status, run.settings, run.experiment) == ("old", "train", "finished", None, None)
    assert [(row["kind"], row["error"], row["miou"]) for row in store.metrics(1)] == [
        ("train", 0.9, None), ("test", 0.6, None)]
    with store.engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0004"
    assert store.summaries()[0]["test_miou"] is None and store.runs()[0].id == 1


def test_db_copy_carries_a_segmentation_run(trained, postgres_url, monkeypatch, capsys, tmp_path):
    home, run_id, _ = trained
    before = Store(home)
    assert main(["db", "copy", "--to", postgres_url, "--home", str(home)]) == 0
    assert "checkpoints 1 new of 1" in capsys.readouterr().out
    monkeypatch.setenv(settings.DATABASE_VARIABLE, postgres_url)
    remote = Store(tmp_path / "another-machine")
    run = remote.run(run_id)
    assert (run.kind, run.settings) == ("segment", before.run(run_id).settings)
    assert remote.metrics(run_id) == before.metrics(run_id)
    assert all(not math.isnan(row["miou"]) for row in remote.metrics(run_id, "test"))
    segmenter, metadata = load_segmenter(remote.latest_checkpoint(run_id)[1])  # its bytes came in the database
    assert segmenter.spec.name == "fcn-resnet8" and metadata["classes"] == CLASSES
