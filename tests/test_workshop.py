"""A workshop's load and faults: per-person limit, queue bound, memory guard, a full data folder, a failed store
write, damaged rows and checkpoints, a SIGKILLed run. Each refusal is one sentence and changes nothing."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from resnet_core.errors import RunLimitError, ServerFullError, UserError
from resnet_core.nets.specs import get_spec
from resnet_core.runs import admission, control, dispatch, processes, settings
from resnet_core.runs.admission import Limits
from resnet_core.runs.store import Store
from resnet_core.training import memory

REPO = Path(__file__).resolve().parents[1]
PAGES = REPO / "pages"
TINY = dict(iterations=4, batch_size=8, eval_every=2)


def within_limits() -> dict:
    """TINY runs within the server's limits, as the app submits them (read when called: a fixture's settings)."""
    return dict(limits=Limits.workshop(), **TINY)


def snapshot(store: Store) -> list[tuple]:
    return [(run.id, run.status, run.owner) for run in store.runs()]


def wait_until(condition, timeout: float = 90, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


@pytest.fixture
def workshop_store(tmp_path, monkeypatch) -> Store:
    """A data folder with the workshop defaults: cap 2, two runs a person, no spares."""
    monkeypatch.setenv("RESNET_EXPLORER_HOME", str(tmp_path))
    monkeypatch.setenv(settings.CAP_VARIABLE, "2")
    monkeypatch.setenv(settings.SPARES_VARIABLE, "0")
    for variable in (settings.PER_USER_VARIABLE, settings.WAITING_VARIABLE, settings.THREADS_VARIABLE):
        monkeypatch.delenv(variable, raising=False)
    return Store(tmp_path)


# ------------------------------------------------------------------------------------------- limits
def test_a_person_may_have_a_pair_and_a_third_run_is_refused(workshop_store):
    store = workshop_store
    pair = admission.submit_all(["plain8", "resnet8"], "synthetic", owner="ada", store=store, **within_limits())
    before = snapshot(store)
    with pytest.raises(RunLimitError, match=r"Each person may have 2 runs queued or running at once and you have 2 "
                                            rf"\(#{pair[0]}, #{pair[1]}\), so 1 more cannot start; wait for one"):
        admission.submit("resnet8", "synthetic", owner="ada", store=store, **within_limits())
    assert snapshot(store) == before
    # Another person is not affected.
    assert admission.submit("resnet8", "synthetic", owner="grace", store=store, **within_limits())
    store.cancel_queued(pair[0])  # an ended run frees its place
    third = admission.submit("resnet8", "synthetic", owner="ada", store=store, **within_limits())
    with pytest.raises(RunLimitError, match="you have 2"):  # a pair is refused whole, not half queued
        admission.submit_all(["plain8", "resnet8"], "synthetic", owner="ada", store=store, **within_limits())
    assert [run.id for run in store.runs() if run.owner == "ada" and run.status == "queued"] == [pair[1], third]
    with pytest.raises(RunLimitError, match="you have 2"):  # resuming is starting too
        control.resume(pair[0], store, limits=Limits.workshop())
    assert store.run(pair[0]).status == "cancelled"


def test_past_the_queue_bound_the_server_is_full(workshop_store, monkeypatch):
    store = workshop_store
    monkeypatch.setenv(settings.WAITING_VARIABLE, "3")
    for person in range(2):  # 2 start at once (the cap), 2 wait
        admission.submit_all(["plain8", "resnet8"], "synthetic", owner=f"p{person}", store=store, **within_limits())
    admission.submit("resnet8", "synthetic", owner="p2", store=store, **within_limits())  # the third waiting run
    before = snapshot(store)
    with pytest.raises(ServerFullError, match=r"^The server is full: 3 runs are already waiting for a free slot; try "
                                              r"again in a few minutes\.$"):
        admission.submit("resnet8", "synthetic", owner="p3", store=store, **within_limits())
    assert snapshot(store) == before
    admission.submit("resnet8", "synthetic", store=store, **TINY)  # the CLI's own runs are not the workshop's


def test_thirty_people_pressing_start_at_once_never_overshoot_a_limit(workshop_store):
    """Each submission counts and inserts in one transaction: racing threads cannot both see room for one."""
    spec = get_spec("resnet8").to_dict()
    outcomes = []

    def person(name: str) -> None:
        store = Store(workshop_store.home)  # a connection per thread, as the app has
        for _ in range(2):
            try:
                store.create_runs([dict(name=name, spec=spec, recipe={}, data="synthetic",
                                        device="cpu", precision="fp32", seed=0)] * 2, owner=name, per_owner=2,
                                  max_waiting=10, cap=2)
                outcomes.append("queued")
            except (RunLimitError, ServerFullError) as error:
                outcomes.append(type(error).__name__)

    threads = [threading.Thread(target=person, args=(f"person{index}",)) for index in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    runs = workshop_store.runs()
    assert len(runs) == 12  # 2 slots + 10 waiting
    assert max(sum(run.owner == owner for run in runs) for owner in {run.owner for run in runs}) == 2
    # 6 pairs fill the 2 slots and 10 waiting places; their owners' second pair passes the person's limit.
    assert (outcomes.count("queued"), outcomes.count("RunLimitError"), outcomes.count("ServerFullError")) == (6, 6, 48)


def test_the_memory_guard_refuses_what_the_machine_cannot_hold(workshop_store):
    needed = memory.training_bytes(get_spec("resnet110"), 1024, 2048)
    assert needed > 12e9  # ~2 GB of layer outputs per 128 images
    too_big = memory.available_bytes() // needed + 1
    with pytest.raises(UserError, match=rf"^resnet110 with batches of {1024 * too_big:,} needs about [\d.,]+ GB of "
                                        r"memory to train, but this server has [\d.,]+ GB free; use a smaller batch"):
        admission.submit("resnet110", "synthetic", iterations=1, batch_size=1024 * too_big, store=workshop_store)
    assert workshop_store.runs() == []
    assert memory.training_bytes(get_spec("resnet8"), 16, 2048) < 1.1e9  # measured 0.96 GB: fits easily


# ------------------------------------------------------------------------------------------- faults
def limited_train(home: Path, run_id: int, file_size_limit: int) -> subprocess.CompletedProcess:
    """Train a queued run in a process whose files may not grow past `file_size_limit` bytes: a full disk."""
    script = ("import resource, sys; from resnet_core.cli import main; "
              f"resource.setrlimit(resource.RLIMIT_FSIZE, ({file_size_limit}, {file_size_limit})); "
              f"sys.exit(main(['train', '--run-id', '{run_id}', '--home', '{home}', '--threads', '1']))")
    return subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_a_full_data_folder_fails_the_run_clearly_and_the_store_stays_consistent(workshop_store):
    store = workshop_store
    run_id = admission.submit("resnet8", "synthetic", iterations=12, batch_size=8, eval_every=6, store=store)
    # A ResNet-8 checkpoint (weights + momentum, ~620 kB) cannot be written; the store's small writes can.
    result = limited_train(store.home, run_id, 300_000)
    assert result.returncode == 2, result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line == (f"error: The data folder {store.home} is full (File too large); free some space there "
                         "(delete old runs) and resume the run.")
    run = store.run(run_id)
    assert run.status == "failed" and run.error == last_line.removeprefix("error: ")
    assert [row["iteration"] for row in store.metrics(run_id, "train")] == list(range(1, 7))  # all until the failure
    assert store.latest_checkpoint(run_id) is None
    assert sorted(path.name for path in store.run_dir(run_id).iterdir()) == []  # no half-written checkpoint left
    assert sqlite3.connect(store.path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    control.resume(run_id, store)  # space freed: the run starts again and finishes
    wait_until(lambda: store.run(run_id).status == "finished", what=store.run(run_id).error)
    assert [row["iteration"] for row in store.metrics(run_id, "train")] == list(range(1, 13))


FILL_STORE = """
import resource, sys
from sqlalchemy import exc
from resnet_core.runs.store import Store
store = Store(sys.argv[1])
run_id = int(sys.argv[2])
store.add_metrics(run_id, [{"iteration": 1, "kind": "train", "epoch": 0, "loss": 1.0}])
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
try:
    store.add_metrics(run_id, [{"iteration": i, "kind": "train", "epoch": 0, "loss": float(i)}
                               for i in range(2, 50_000)])
except exc.OperationalError as error:
    print(error.orig)
"""


def test_a_store_write_that_hits_a_full_disk_leaves_nothing_half_written(workshop_store):
    store = workshop_store
    run_id = admission.submit("resnet8", "synthetic", store=store, **TINY)
    result = subprocess.run([sys.executable, "-c", FILL_STORE, str(store.home), str(run_id)], cwd=REPO,
                            capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    # A file-size limit is an I/O error to SQLite; a full disk would be "database or disk is full".
    assert result.stdout.strip() == "disk I/O error", result.stderr
    fresh = Store(store.home)
    assert [row["iteration"] for row in fresh.metrics(run_id)] == [1]  # the first write, none of the failed one
    assert sqlite3.connect(fresh.path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    fresh.add_metrics(run_id, [{"iteration": 2, "kind": "train", "epoch": 0, "loss": 2.0}])  # writable again
    assert len(fresh.metrics(run_id)) == 2


def test_a_sigkilled_run_shows_interrupted_with_its_history(workshop_store, app_clear_caches, app_torch_threads):
    store = workshop_store
    run_id = admission.submit("resnet8", "synthetic", iterations=2_000, batch_size=8, eval_every=5, store=store)
    dispatch.dispatch(store)
    wait_until(lambda: len(store.metrics(run_id, "test")) >= 2, what=store.run(run_id).error)
    os.kill(store.run(run_id).pid, signal.SIGKILL)
    wait_until(lambda: not processes.running(store.run(run_id).pid), timeout=30)
    history = store.metrics(run_id)
    at = AppTest.from_file(str(PAGES / "4_Runs.py"), default_timeout=60).run()
    # The page only reads; the server's dispatcher, kept going by the page, notices the dead process.
    wait_until(lambda: store.run(run_id).status == "interrupted", timeout=30)
    at.run()
    assert not at.exception
    table = at.dataframe[0].value
    row = table[table["id"] == run_id].iloc[0]
    assert row["status"] == "interrupted" and row["reason"].startswith("Interrupted: its process")
    assert "resume it to continue from its checkpoint at iteration" in row["reason"]
    assert store.metrics(run_id) == history and len(history) > 10  # nothing recorded was lost


def test_damaged_rows_are_reported_and_do_not_break_the_pages(workshop_store, app_clear_caches, app_torch_threads,
                                                              monkeypatch):
    from explorer import models

    monkeypatch.setattr(models, "local_dataset_source", lambda model, choice: None)  # no dataset reading here
    store = workshop_store
    good, damaged, queued_damaged = (admission.submit("resnet8", "synthetic", store=store, **TINY) for _ in range(3))
    for run_id in (good, damaged):
        store.cancel_queued(run_id)
    with sqlite3.connect(store.path) as db:  # a row cut short by hand, and a queued one with a foreign spec
        db.execute("UPDATE runs SET recipe='{\"iterations\": 4, \"batch_si' WHERE id=?", (damaged,))
        db.execute("UPDATE runs SET spec='{\"name\": \"resnet8\", \"colour\": \"red\"}' WHERE id=?", (queued_damaged,))
    assert [run.id for run in store.runs()] == [good]
    assert set(store.damaged_runs()) == {damaged, queued_damaged}
    assert dispatch.dispatch(store) == []  # the damaged queued run is failed, not started, and the queue goes on
    assert "It could not start: Run 3's record in the store is damaged" in \
        sqlite3.connect(store.path).execute("SELECT error FROM runs WHERE id=3").fetchone()[0]

    listing = subprocess.run([sys.executable, "-m", "resnet_core", "runs", "--json", "--home", str(store.home)],
                             cwd=REPO, capture_output=True, text=True, check=True)
    assert [run["id"] for run in json.loads(listing.stdout)] == [good]
    assert f"warning: Run {damaged}'s record in the store is damaged" in listing.stderr

    at = AppTest.from_file(str(PAGES / "4_Runs.py"), default_timeout=60).run()
    assert not at.exception
    warnings = [warning.value for warning in at.warning]
    assert any(f"Run {damaged}'s record in the store is damaged" in text for text in warnings)
    assert list(at.dataframe[0].value["id"]) == [good, -1, -2, -3, -4]  # and the shipped references, read-only
    at.button(key=f"runs_delete_damaged_{damaged}").click().run()
    assert not at.exception and damaged not in store.damaged_runs()
    for page in ("3_Train.py", "5_Classify.py"):
        assert not AppTest.from_file(str(PAGES / page), default_timeout=60).run().exception


def test_the_shared_metric_cache_keeps_only_the_runs_polled_last(workshop_store, monkeypatch):
    """Bounded by rows, not runs: three runs of 3 rows fit in 9, not in 8."""
    from explorer.training import live_runs as app_runs

    store = workshop_store
    ids = [admission.submit("resnet8", "synthetic", store=store, **TINY) for _ in range(3)]
    for run_id in ids:
        store.add_metrics(run_id, [{"iteration": i, "kind": "train", "epoch": 0, "loss": float(run_id)}
                                   for i in range(1, 4)])
    cache = app_runs._MetricCache()
    monkeypatch.setattr(cache, "MAX_ROWS", 9)
    for run_id in ids:
        assert [row["loss"] for row in cache.rows(store, store.run(run_id))["train"]] == [float(run_id)] * 3
    assert [key[1] for key in cache._runs] == ids  # a room's short runs all stay
    monkeypatch.setattr(cache, "MAX_ROWS", 8)
    cache.rows(store, store.run(ids[1]))  # polled again: now the newest
    assert [key[1] for key in cache._runs] == [ids[2], ids[1]]  # the one polled longest ago was dropped
    assert len(cache.rows(store, store.run(ids[0]))["train"]) == 3  # and is simply read again
    assert [key[1] for key in cache._runs] == [ids[1], ids[0]] and cache._rows == 6
    monkeypatch.setattr(cache, "MAX_ROWS", 1)  # a run bigger than the bound is still served, alone
    assert len(cache.rows(store, store.run(ids[2]))["train"]) == 3 and list(cache._runs) == [(str(store.home), ids[2])]


@pytest.mark.parametrize("page", sorted(path.name for path in PAGES.glob("*.py")))
def test_every_page_keeps_only_ids_and_small_settings_in_the_session(page, workshop_store, app_clear_caches,
                                                                     app_torch_threads, monkeypatch):
    """Models, tensors, images and figures live in shared caches keyed by content; a closed session frees only
    what it holds, so it must hold almost nothing."""
    import pickle

    from explorer import models

    monkeypatch.setattr(models, "local_dataset_source", lambda model, choice: None)
    at = AppTest.from_file(str(PAGES / page), default_timeout=120).run()
    if page == "5_Classify.py":  # with an image, so both models answer and draw their attributions
        at.selectbox(key="classify_example").select("sailing boat (drawn)").run()
    assert not at.exception
    state = {key: at.session_state[key] for key in at.session_state._state._state.filtered_state}
    # A dict: Classify's uploaded checkpoints (models.UPLOADS), empty unless this person uploaded one: theirs alone.
    assert all(isinstance(value, (str, int, float, bool, list, tuple, dict, type(None))) for value in state.values()), \
        state
    assert len(pickle.dumps(state)) < 4_000, state


def test_a_store_from_before_owners_gains_the_column_and_keeps_its_runs(tmp_path):
    from resnet_core.runs.legacy import RUNS_TABLE

    old_schema = RUNS_TABLE.format(table="runs").replace("    owner TEXT,\n", "")
    assert "owner" not in old_schema
    with sqlite3.connect(tmp_path / "runs.sqlite") as db:
        db.executescript(old_schema + ";\nPRAGMA user_version=1;")
        db.execute("INSERT INTO runs (name, model, spec, recipe, data, device, precision, seed, status, created) "
                   "VALUES ('old', 'resnet8', ?, '{}', 'synthetic', 'cpu', 'fp32', 0, 'finished', 0)",
                   (json.dumps(get_spec("resnet8").to_dict()),))
    store = Store(tmp_path)
    [run] = store.runs()
    assert (run.name, run.status, run.owner) == ("old", "finished", None)
    assert admission.submit("resnet8", "synthetic", owner="ada", store=store, **within_limits()) == 2
    assert store.run(2).owner == "ada"
