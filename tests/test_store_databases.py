"""The store's databases: a data folder written by main before Alembic opens with nothing lost, `db copy` into a real
PostgreSQL server twice doubles nothing, claims racing on either database never overshoot the cap, leases and cancel
requests are rows, and a PostgreSQL server that goes away is a clear, retryable error."""
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from resnet_core.cli import main
from resnet_core.errors import StoreError, StoreUnavailableError
from resnet_core.nets.specs import get_spec
from resnet_core.runs import settings
from resnet_core.runs.store import Store
from resnet_core.training.checkpoint import load_training_checkpoint

FIXTURE = Path(__file__).parent / "fixtures" / "store_v6"  # written by main's store (schema version 6)
REPO = Path(__file__).resolve().parents[1]


def new_run(store, name="run"):
    return store.create_run(name=name, spec=get_spec("resnet8").to_dict(), recipe={"iterations": 10},
                            data="synthetic", device="cpu", precision="fp32", seed=0)


def old_folder(tmp_path) -> Path:
    home = tmp_path / "old-home"
    shutil.copytree(FIXTURE, home)
    return home


def cli(*arguments, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "resnet_core", *arguments], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, **(env or {})}, timeout=120)


def test_a_data_folder_of_schema_version_6_opens_with_nothing_lost(tmp_path):
    home = old_folder(tmp_path)
    store = Store(home)
    assert [(run.id, run.status, run.owner, run.kind) for run in store.runs()] == [
        (1, "finished", None, "train"), (2, "cancelled", "alice", "train"), (3, "queued", "bob", "train")]
    (experiment,) = store.experiments()
    assert (experiment.id, experiment.kind, experiment.status) == (4, "lesion", "finished")
    assert [row["type"] for row in store.results(4)] == ["baseline", "block"]
    assert [(row["iteration"], row["kind"]) for row in store.metrics(1)] == [
        (1, "train"), (2, "test"), (2, "train"), (3, "train"), (4, "test"), (4, "train")]
    iteration, path = store.latest_checkpoint(1)
    assert iteration == 4 and load_training_checkpoint(path).iteration == 4
    assert store.lesson_iterations() == (True, 300) and store.assigned_depths() == {20: 1, 32: 1, 44: 0, 56: 0}
    with create_engine(f"sqlite:///{home / 'runs.sqlite'}").connect() as db:
        assert db.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0004"
        assert db.execute(text("PRAGMA integrity_check")).scalar_one() == "ok"
    assert new_run(store) == 5  # ids go on after the old ones
    assert Store(home).run(5).status == "queued"  # opened again: nothing to migrate twice


def test_db_upgrade_migrates_explicitly_and_says_where(tmp_path):
    home = old_folder(tmp_path)
    done = cli("db", "upgrade", "--home", str(home))
    assert done.returncode == 0, done.stderr
    assert f"{home / 'runs.sqlite'} is at the newest schema" in done.stdout
    assert "from schema revision 0001 to 0004" in done.stderr  # said once, when it happens
    again = cli("db", "upgrade", "--home", str(home))
    assert again.returncode == 0 and "Migrating" not in again.stderr


def test_db_copy_into_postgresql_twice_doubles_nothing(tmp_path, postgres_url, capsys, monkeypatch):
    home = old_folder(tmp_path)
    assert main(["db", "copy", "--to", postgres_url, "--home", str(home)]) == 0
    assert "runs 4 new of 4, metrics 6 new of 6, results 2 new of 2, checkpoints 1 new of 1" in capsys.readouterr().out
    assert main(["db", "copy", "--to", postgres_url, "--home", str(home)]) == 0
    assert "runs 0 new of 4, metrics 0 new of 6, results 0 new of 2, checkpoints 0 new of 1, lesson 0 new of 1, " \
           "assignments 0 new of 2" in capsys.readouterr().out

    # Another machine: an empty data folder, the database shared. Everything reads back, the checkpoint included.
    expected_metrics = Store(home).metrics(1)
    monkeypatch.setenv(settings.DATABASE_VARIABLE, postgres_url)
    remote = Store(tmp_path / "another-machine")
    assert [(run.id, run.status, run.owner) for run in remote.runs()] == [
        (1, "finished", None), (2, "cancelled", "alice"), (3, "queued", "bob")]
    assert remote.metrics(1) == expected_metrics and len(expected_metrics) == 6
    iteration, path = remote.latest_checkpoint(1)
    assert path.read_bytes() == (home / "runs" / "1" / "checkpoint-0000004.safetensors").read_bytes()
    assert remote.assigned_depths() == {20: 1, 32: 1, 44: 0, 56: 0} and remote.results(4)[1]["error"] == 0.6
    assert new_run(remote) == 5  # the id sequence goes on after the copied ids


def test_db_copy_refuses_a_database_whose_run_ids_are_other_runs(tmp_path, postgres_url, monkeypatch, capsys):
    monkeypatch.setenv(settings.DATABASE_VARIABLE, postgres_url)
    new_run(Store(tmp_path / "someone-else"), name="someone else's run")
    monkeypatch.delenv(settings.DATABASE_VARIABLE)
    assert main(["db", "copy", "--to", postgres_url, "--home", str(old_folder(tmp_path))]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: ") and "already has other runs numbered 1;" in line
    monkeypatch.setenv(settings.DATABASE_VARIABLE, postgres_url)
    assert [run.name for run in Store(tmp_path / "someone-else").runs()] == ["someone else's run"]  # untouched


@pytest.mark.parametrize("url, message", [
    ("mysql://someone@host/db", "neither SQLite nor PostgreSQL"),
    ("postgresql+psycopg2://someone@host/db", "names the driver 'psycopg2'"),
])
def test_a_database_url_the_store_cannot_use_is_one_line(tmp_path, monkeypatch, url, message):
    monkeypatch.setenv(settings.DATABASE_VARIABLE, url)
    with pytest.raises(StoreError, match=message) as caught:
        Store(tmp_path)
    assert "\n" not in str(caught.value)


def test_two_dispatchers_racing_for_one_free_slot_exactly_one_wins(tmp_path, database_url):
    """Each round one queued run and a cap of 1: two dispatchers, each with its own connections, claim at the same
    moment. The loser must see the slot taken, never claim the run too."""
    store = Store(tmp_path)
    for _ in range(10):
        run_id = new_run(store)
        barrier, claimed = threading.Barrier(2), []

        def dispatcher():
            mine = Store(tmp_path)
            barrier.wait()
            claimed.append([run.id for run in mine.claim_slots(1)])

        threads = [threading.Thread(target=dispatcher) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(claimed) == [[], [run_id]]
        store.finish(run_id, "finished")  # frees the slot for the next round


def test_a_lapsed_lease_reads_interrupted_and_cancel_is_a_row(tmp_path, database_url, monkeypatch):
    monkeypatch.setenv(settings.LEASE_VARIABLE, "3")
    store = Store(tmp_path)
    run_id = new_run(store)
    assert store.claim(run_id, os.getpid())
    assert store.renew_lease(run_id) is False  # renewed; nothing asks it to stop
    assert store.request_cancel(run_id) and store.run(run_id).cancel_requested
    assert store.renew_lease(run_id) is True  # the executor reads the request when it renews
    with store._transaction() as db:  # its executor stopped renewing 4 s ago
        db.execute(text("UPDATE runs SET heartbeat = heartbeat - 4 WHERE id = :id"), {"id": run_id})
    run = store.run(run_id)
    assert (run.status, run.recorded_status, run.lapsed) == ("interrupted", "running", True)
    assert "stopped renewing its lease" in run.error and store.count_running() == 0
    listed = cli("runs", "--json", "--home", str(tmp_path), env={settings.LEASE_VARIABLE: "3"})  # no app, no dispatcher
    assert json.loads(listed.stdout)[0]["status"] == "interrupted", listed.stderr


def test_postgresql_going_away_is_a_retryable_error_and_nothing_is_lost(tmp_path, postgres_server, monkeypatch):
    monkeypatch.setenv(settings.DATABASE_VARIABLE, postgres_server.create_database())
    store = Store(tmp_path)
    run_id = new_run(store)
    store.add_metrics(run_id, [{"iteration": 1, "kind": "train", "epoch": 0, "error": 0.5}])
    postgres_server.stop()
    try:
        with pytest.raises(StoreUnavailableError, match="cannot be reached"):
            store.add_metrics(run_id, [{"iteration": 2, "kind": "train", "epoch": 0, "error": 0.4}])
    finally:
        postgres_server.start()
    store.add_metrics(run_id, [{"iteration": 2, "kind": "train", "epoch": 0, "error": 0.4}])
    store.add_metrics(run_id, [{"iteration": 2, "kind": "train", "epoch": 0, "error": 0.4}])  # a retry: no double
    assert [row["iteration"] for row in store.metrics(run_id)] == [1, 2]
