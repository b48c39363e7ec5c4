"""The run store: the queue's statuses, transactional metrics, checkpoints and their failure modes; the tests
that take `database_url` run on the SQLite file and on a real PostgreSQL server."""
import json
import os
import shutil
import sqlite3
import threading

import pytest
import torch
from safetensors.torch import save_file

from resnet_core.errors import CheckpointError, StoreError
from resnet_core.nets.specs import NetSpec, get_spec
from resnet_core.runs.settings import resolve_home
from resnet_core.runs.store import Store
from resnet_core.training.checkpoint import Checkpoint, load_training_checkpoint, read_metadata, save_checkpoint


def new_run(store, name="run"):
    return store.create_run(name=name, spec=get_spec("resnet8").to_dict(), recipe={"iterations": 10},
                            data="synthetic", device="cpu", precision="fp32", seed=0)


def test_home_comes_from_flag_then_environment_then_default(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_EXPLORER_HOME", str(tmp_path / "env"))
    assert resolve_home(tmp_path / "flag") == tmp_path / "flag"
    assert resolve_home() == tmp_path / "env"
    monkeypatch.delenv("RESNET_EXPLORER_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert resolve_home() == tmp_path / "user" / ".resnet-explorer"


def test_unwritable_home_is_a_one_line_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="Cannot write to the data folder") as caught:
        Store(tmp_path / "file" / "home")
    assert "\n" not in str(caught.value)


def test_runs_are_queued_then_claimed_once(tmp_path, database_url):
    store = Store(tmp_path)
    run_id = new_run(store)
    assert store.run(run_id).status == "queued"
    assert store.claim(run_id, os.getpid()) and not Store(tmp_path).claim(run_id, 1)
    assert store.run(run_id).status == "running" and store.count_running() == 1
    store.finish(run_id, "finished")
    assert store.run(run_id).status == "finished" and store.run(run_id).ended is not None
    with pytest.raises(StoreError, match="No run 99"):
        store.run(99)


@pytest.mark.parametrize("status, pid, message", [
    ("finished", None, "has finished"),
    ("diverged", None, "diverged"),
    ("running", "parent", "still running"),
])
def test_runs_that_cannot_continue_are_not_requeued(tmp_path, database_url, status, pid, message):
    store = Store(tmp_path)
    run_id = new_run(store)
    store.claim(run_id, os.getppid() if pid == "parent" else 1)
    if status != "running":
        store.finish(run_id, status, "loss became nan")
    with pytest.raises(StoreError, match=message):
        store.requeue_for_resume(run_id)
    assert store.run(run_id).status == status


def test_a_killed_run_is_requeued(tmp_path, database_url):
    store = Store(tmp_path)
    run_id = new_run(store)
    store.claim(run_id, 2 ** 22 + 12345)  # beyond pid_max: no such process
    store.requeue_for_resume(run_id)
    assert store.run(run_id).status == "queued" and store.claim(run_id, os.getpid())


# A store written before `interrupted` was a status (schema version 2): a died run was `failed` with a reason.
VERSION_2 = """
CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, model TEXT NOT NULL, spec TEXT NOT NULL,
    recipe TEXT NOT NULL, data TEXT NOT NULL, device TEXT NOT NULL, precision TEXT NOT NULL, seed INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'finished', 'failed', 'cancelled', 'diverged')),
    created REAL NOT NULL, started REAL, ended REAL, error TEXT, pid INTEGER, owner TEXT);
CREATE TABLE metrics (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, iteration INTEGER NOT NULL,
    kind TEXT NOT NULL, epoch INTEGER NOT NULL, loss REAL, error REAL, smoothed_loss REAL, smoothed_error REAL,
    lr REAL, images_per_s REAL, elapsed_s REAL, eta_s REAL, PRIMARY KEY (run_id, kind, iteration));
CREATE TABLE checkpoints (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    iteration INTEGER NOT NULL, path TEXT NOT NULL, created REAL NOT NULL, PRIMARY KEY (run_id, iteration));
PRAGMA user_version=2;
"""


def test_an_older_store_gets_the_interrupted_status_and_keeps_every_run_and_value(tmp_path):
    old = sqlite3.connect(tmp_path / "runs.sqlite")
    old.executescript(VERSION_2)
    spec, recipe = json.dumps(get_spec("resnet8").to_dict()), json.dumps({"iterations": 10})
    reasons = {1: "Interrupted: its process 4242 stopped without finishing (killed); resume it to continue from "
                  "its checkpoint at iteration 4.", 2: "Cannot read image /data/x.jpg (truncated).", 3: None}
    for run_id, (status, reason) in enumerate([("failed", reasons[1]), ("failed", reasons[2]), ("finished", None)],
                                              start=1):
        old.execute("INSERT INTO runs VALUES (?, 'run', 'resnet8', ?, ?, 'synthetic', 'cpu', 'fp32', 0, ?, 1.0, 2.0, "
                    "3.0, ?, 4242, 'someone')", (run_id, spec, recipe, status, reason))
        old.execute("INSERT INTO metrics (run_id, iteration, kind, epoch, error) VALUES (?, 4, 'train', 0, 0.5)",
                    (run_id,))
        old.execute("INSERT INTO checkpoints VALUES (?, 4, '/nowhere', 1.0)", (run_id,))
    old.commit()
    old.close()

    store = Store(tmp_path)
    assert [(run.status, run.error) for run in store.runs()] == [("interrupted", reasons[1]), ("failed", reasons[2]),
                                                                  ("finished", None)]
    assert all(store.metrics(run_id)[0]["error"] == 0.5 and store.latest_checkpoint(run_id)[0] == 4
               for run_id in (1, 2, 3))
    assert {run.owner for run in store.runs()} == {"someone"} and store.run(1).started == 2.0
    assert store.delete_run(1) and store.metrics(1) == []  # the foreign keys still cascade
    assert new_run(store) == 4 and store.claim_slots(1)[0].id == 4  # new statuses fit the new CHECK
    assert Store(tmp_path).run(4).status == "starting"  # opened again: nothing to migrate twice


def test_metrics_summaries_and_truncation(tmp_path, database_url):
    store = Store(tmp_path)
    run_id = new_run(store)
    store.add_metrics(run_id, [{"iteration": i, "kind": "train", "epoch": 0, "loss": 1 / i, "error": 0.5 / i}
                               for i in range(1, 11)])
    store.add_metrics(run_id, [{"iteration": 10, "kind": "test", "epoch": 0, "loss": 2.0, "error": 0.25}])
    summary = store.summaries()[0]
    assert (summary["iterations_done"], summary["train_error"], summary["test_error"]) == (10, 0.05, 0.25)
    store.truncate_metrics(run_id, 6)
    assert [row["iteration"] for row in store.metrics(run_id, "train")] == [1, 2, 3, 4, 5, 6]
    assert store.metrics(run_id, "test") == [] and store.metrics(run_id, after_iteration=5)[0]["iteration"] == 6


def test_a_reader_never_sees_half_a_transaction(tmp_path, database_url):
    writer_store, reader = Store(tmp_path), Store(tmp_path)
    run_id = new_run(writer_store)
    rows_per_write, writes = 25, 60

    def write():
        store = Store(tmp_path)  # its own connection, as a training process has
        for write_index in range(writes):
            start = write_index * rows_per_write + 1
            store.add_metrics(run_id, [{"iteration": i, "kind": "train", "epoch": 0, "loss": float(i),
                                        "error": i / 1e4} for i in range(start, start + rows_per_write)])

    writer = threading.Thread(target=write)
    writer.start()
    seen = set()
    while writer.is_alive() or len(seen) < 2:
        rows = reader.metrics(run_id)
        assert len(rows) % rows_per_write == 0
        assert [row["iteration"] for row in rows] == list(range(1, len(rows) + 1))
        assert all(row["loss"] == row["iteration"] and row["error"] == row["iteration"] / 1e4 for row in rows)
        seen.add(len(rows))
        if not writer.is_alive():
            break
    writer.join()
    assert len(reader.metrics(run_id)) == rows_per_write * writes


def checkpoint_at(iteration):
    torch.manual_seed(iteration)
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    return Checkpoint(spec=get_spec("resnet8").to_dict(), recipe={"iterations": 10}, iteration=iteration,
                      model_state=model.state_dict(), optimizer_state=optimizer.state_dict(),
                      rng_state=torch.get_rng_state(), trainer_state={"warming_up": False})


def test_a_moved_data_folder_keeps_its_runs_checkpoints(tmp_path):
    store = Store(tmp_path / "old")
    run_id, written_before = new_run(store), new_run(store)
    for run in (run_id, written_before):
        save_checkpoint(store.run_dir(run) / "checkpoint-5.safetensors", checkpoint_at(5))
        store.add_checkpoint(run, 5, store.run_dir(run) / "checkpoint-5.safetensors")
    with sqlite3.connect(store.path) as db:  # as rows were written before: the absolute path of the old folder
        db.execute("UPDATE checkpoints SET path=? WHERE run_id=?",
                   (str(store.run_dir(written_before) / "checkpoint-5.safetensors"), written_before))
    shutil.move(tmp_path / "old", tmp_path / "new")
    moved = Store(tmp_path / "new")
    for run in (run_id, written_before):
        iteration, path = moved.latest_checkpoint(run)
        assert path == tmp_path / "new" / "runs" / str(run) / "checkpoint-5.safetensors" and path.is_file()
        assert load_training_checkpoint(path).iteration == iteration == 5
    with pytest.raises(ValueError, match="belongs in"):
        moved.add_checkpoint(run_id, 6, tmp_path / "elsewhere.safetensors")
    assert moved.latest_checkpoint(run_id)[0] == 5


def test_checkpoints_round_trip_and_only_the_newest_is_kept(tmp_path, database_url):
    store = Store(tmp_path)
    run_id = new_run(store)
    paths = []
    for iteration in (5, 10):
        paths.append(store.run_dir(run_id) / f"checkpoint-{iteration}.safetensors")
        save_checkpoint(paths[-1], checkpoint_at(iteration))
        store.add_checkpoint(run_id, iteration, paths[-1])
    assert store.latest_checkpoint(run_id) == (10, paths[1])
    assert not paths[0].exists() and not list(paths[1].parent.glob(".*tmp*"))
    loaded = load_training_checkpoint(paths[1])
    original = checkpoint_at(10)
    assert loaded.iteration == 10 and NetSpec.from_dict(loaded.spec) == get_spec("resnet8")
    assert torch.equal(loaded.model_state["weight"], original.model_state["weight"])
    assert torch.equal(loaded.optimizer_state["state"][0]["momentum_buffer"],
                       original.optimizer_state["state"][0]["momentum_buffer"])
    assert read_metadata(paths[1])["trainer"] == {"warming_up": False}


@pytest.mark.parametrize("damage, message", [
    ("missing", "is missing"),
    ("truncated", "truncated"),
    ("foreign", "not a ResNet Explorer checkpoint"),
])
def test_damaged_checkpoints_are_one_line_errors(tmp_path, damage, message):
    path = tmp_path / "checkpoint.safetensors"
    if damage == "truncated":
        save_checkpoint(path, checkpoint_at(3))
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "foreign":
        save_file({"weight": torch.zeros(2)}, path, metadata={"framework": json.dumps("someone else")})
    with pytest.raises(CheckpointError, match=message) as caught:
        load_training_checkpoint(path)
    assert "\n" not in str(caught.value)
