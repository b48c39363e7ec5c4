"""Runs that live beyond one process tree, caused for real: a CLI `train` killed with SIGKILL reads as interrupted
with no app or dispatcher running; a cancel is a row another process writes; a PostgreSQL server stopped for 10 s
while a run trains loses and doubles no metric row."""
import json
import os
import signal
import subprocess
import sys
import time

import psutil
from helpers import REPO, eventually

from resnet_core.runs import settings
from resnet_core.runs.store import Store
from resnet_core.training.checkpoint import load_training_checkpoint

LEASE_S = 3
# Long enough never to end by itself within a test; small batches so each step is quick.
ENDLESS = ["--model", "resnet8", "--data", "synthetic", "--iterations", "200000", "--batch-size", "8",
           "--eval-every", "40", "--threads", "1"]


def train(home, *flags, env=None) -> subprocess.Popen:
    """`python -m resnet_core train` in the foreground of a process of its own, as a user starts it."""
    return subprocess.Popen([sys.executable, "-m", "resnet_core", "train", "--home", str(home), *flags],
                            cwd=REPO, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def training_rows(store: Store, run_id: int = 1, at_least: int = 1) -> list[dict]:
    rows = store.metrics(run_id, "train")
    assert len(rows) >= at_least, f"{len(rows)} rows so far"
    return rows


def test_a_killed_cli_train_reads_interrupted_within_its_lease_with_nothing_else_running(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.LEASE_VARIABLE, str(LEASE_S))
    process = train(tmp_path, *ENDLESS)
    try:
        eventually(lambda: training_rows(Store(tmp_path), at_least=5))
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # no handler, no last write: as a lost machine
        process.wait()
    killed = time.monotonic()

    def listed_interrupted():
        listed = subprocess.run([sys.executable, "-m", "resnet_core", "runs", "--json", "--home", str(tmp_path)],
                                cwd=REPO, capture_output=True, text=True, check=True)
        (run,) = json.loads(listed.stdout)
        assert run["status"] == "interrupted", run["status"]
        return run

    run = eventually(listed_interrupted, timeout=LEASE_S + 30)
    assert time.monotonic() - killed < LEASE_S + 15  # the lease, a renewal interval and a CLI start or two
    assert "stopped renewing its lease" in run["error"] and run["node"]
    assert Store(tmp_path).run(1).recorded_status == "running"  # nobody wrote it: every reader sees it so


def test_a_cancel_written_by_another_process_stops_the_run_after_a_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.LEASE_VARIABLE, str(LEASE_S))
    process = train(tmp_path, *ENDLESS)
    try:
        eventually(lambda: training_rows(Store(tmp_path), at_least=5))
        # Another process, e.g. a page on another machine: it writes the row and signals nothing.
        subprocess.run([sys.executable, "-c", "import sys; from resnet_core.runs.store import Store; "
                        "assert Store(sys.argv[1]).request_cancel(1)", str(tmp_path)], cwd=REPO, check=True)
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    store = Store(tmp_path)
    run = store.run(1)
    assert run.status == "cancelled" and "run 1 cancelled at iteration" in output, output
    iterations = [row["iteration"] for row in store.metrics(1, "train")]
    assert iterations == list(range(1, len(iterations) + 1))
    iteration, path = store.latest_checkpoint(1)
    assert iteration == iterations[-1] == load_training_checkpoint(path).iteration  # it stopped after a checkpoint


def test_postgresql_stopped_for_10_s_while_a_run_trains_loses_and_doubles_nothing(tmp_path, postgres_server,
                                                                                  monkeypatch):
    url = postgres_server.create_database()
    monkeypatch.setenv(settings.DATABASE_VARIABLE, url)
    iterations = 300
    process = train(tmp_path, "--model", "resnet8", "--data", "synthetic", "--iterations", str(iterations),
                    "--batch-size", "8", "--eval-every", "50", "--threads", "1")
    try:
        before = len(eventually(lambda: training_rows(Store(tmp_path), at_least=20)))
        postgres_server.stop()
        try:
            time.sleep(10)  # the fault itself: the database is gone for 10 s while the run goes on
        finally:
            postgres_server.start()
        output, _ = process.communicate(timeout=240)
    finally:
        process.kill()
    assert process.returncode == 0, output
    assert "cannot be reached" in output  # it did meet the outage, and said so in its log
    store = Store(tmp_path)
    assert store.run(1).status == "finished" and before < iterations
    train_rows = [row["iteration"] for row in store.metrics(1, "train")]
    assert train_rows == list(range(1, iterations + 1))  # every row once: none lost, none doubled
    assert [row["iteration"] for row in store.metrics(1, "test")] == list(range(50, iterations + 1, 50))
    iteration, path = store.latest_checkpoint(1)
    assert iteration == iterations and load_training_checkpoint(path).iteration == iterations


def dispatcher(home, env=None) -> subprocess.Popen:
    """`python -m resnet_core dispatch` in the foreground of its own process, as a teacher starts it."""
    return subprocess.Popen([sys.executable, "-m", "resnet_core", "dispatch", "--home", str(home)], cwd=REPO,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def test_two_dispatchers_never_both_dispatch_and_a_stopped_one_frees_its_place(tmp_path, database_url, monkeypatch):
    monkeypatch.setenv(settings.SPARES_VARIABLE, "0")
    first = dispatcher(tmp_path)
    try:
        assert first.stdout.readline().startswith("Dispatching the queue of ")
        second = dispatcher(tmp_path)
        output, _ = second.communicate(timeout=60)
        assert second.returncode == 2 and "Another dispatcher is already running" in output.splitlines()[-1]
    finally:
        first.send_signal(signal.SIGINT)  # Ctrl-C: it stops after the tick in progress, and frees the lock
        first.communicate(timeout=60)
    assert first.returncode == 0
    again = dispatcher(tmp_path)
    assert again.stdout.readline().startswith("Dispatching the queue of ")  # the lock was released
    again.send_signal(signal.SIGINT)
    again.communicate(timeout=60)


def test_a_page_starts_the_deployments_dispatcher_when_none_is_alive(tmp_path, monkeypatch):
    from resnet_core.runs.dispatch import dispatcher_lock, start_dispatcher_if_none

    monkeypatch.setenv(settings.SPARES_VARIABLE, "0")
    store = Store(tmp_path)
    assert start_dispatcher_if_none(store)

    def held():
        with dispatcher_lock(store) as free:
            assert not free, (tmp_path / "dispatcher.log").read_text() if (tmp_path / "dispatcher.log").exists() else ""

    eventually(held)
    assert not start_dispatcher_if_none(store)  # one is alive: no second
    (pid,) = [process.pid for process in psutil.process_iter(["cmdline"])
              if "dispatch" in (process.info["cmdline"] or []) and str(tmp_path) in (process.info["cmdline"] or [])]
    os.kill(pid, signal.SIGINT)
    psutil.Process(pid).wait(60)
