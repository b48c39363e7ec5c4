"""The job queue: the cap under racing dispatchers, queue order, real runs started by the queue, bad actions, and
each race made deterministic with a hook: a crash between claim and launch, a process that exits just before its
signal, a reused pid, a process that dies before it confirms."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from resnet_core.errors import StoreError, UserError
from resnet_core.runs import admission, control, dispatch
from resnet_core.runs import processes, settings
from resnet_core.runs.launchers import local
from resnet_core.runs.store import Store

REPO = Path(__file__).resolve().parents[1]
TINY = dict(iterations=4, batch_size=8, eval_every=2)


def queue(store: Store, count: int) -> list[int]:
    return [admission.submit("resnet8", "synthetic", store=store, **TINY) for _ in range(count)]


def sleeper() -> subprocess.Popen:
    """A process that stands in for a training process: alive until killed; SIGTERM only asks it to stop, as a
    training process saves its checkpoint first."""
    process = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                                "signal.SIG_IGN); print('ready', flush=True); time.sleep(120)"],
                               start_new_session=True, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "ready\n"  # SIGTERM is ignored from here on
    return process


def launching(monkeypatch, pid_of) -> None:
    """Dispatches launch no training process: `pid_of(run)` stands in for the one they would start."""
    monkeypatch.setattr(local, "start_run", lambda store, run_id, threads, spares: pid_of(store.run(run_id)))


# The same racing claim, in threads of this process and in other processes: only the cap decides how many start.
RACE = """
import sys
from resnet_core.runs.store import Store
store = Store(sys.argv[1])
for _ in range(20):
    store.claim_slots(int(sys.argv[2]))
"""


def last_log_word(store: Store, run_id: int, seconds: float = 60) -> str:
    """The last word of a run's log once its process has exited: the process records the run finished before it
    prints its last lines (the run id last), so a finished status alone does not mean the log is complete."""
    run = store.run(run_id)
    deadline = time.monotonic() + seconds
    while processes.running(run.pid, run.process_started):
        assert time.monotonic() < deadline, f"run {run_id}'s process {run.pid} did not exit"
        time.sleep(0.05)
    return (store.run_dir(run_id) / local.LOG_NAME).read_text().split()[-1]


def test_cap_holds_under_dispatchers_racing_in_threads_and_processes(tmp_path):
    store = Store(tmp_path)
    queue(store, 12)
    cap = 3
    processes = [subprocess.Popen([sys.executable, "-c", RACE, str(tmp_path), str(cap)], cwd=REPO) for _ in range(3)]

    def race() -> None:
        mine = Store(tmp_path)
        for _ in range(20):
            mine.claim_slots(cap)

    threads = [threading.Thread(target=race) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(process.wait(timeout=60) == 0 for process in processes)
    assert store.count_running() == cap
    assert [run.id for run in store.runs() if run.status == "starting"] == [1, 2, 3]  # oldest first
    assert dispatch.queue_positions(store) == {run_id: run_id - 3 for run_id in range(4, 13)}


def test_queued_runs_start_in_order_as_runs_finish(tmp_path):
    """Real training processes: with a cap of 1 the second run waits, and the first starts it when it ends."""
    store = Store(tmp_path)
    first, second = queue(store, 2)
    assert dispatch.queue_positions(store) == {first: 1, second: 2}
    os.environ[settings.CAP_VARIABLE] = "1"  # the first run's own dispatch at its end must see the same cap
    os.environ[settings.SPARES_VARIABLE] = "0"
    try:
        assert dispatch.dispatch(store) == [first]
        assert dispatch.queue_positions(store) == {second: 1}
        deadline = time.monotonic() + 90
        while {store.run(first).status, store.run(second).status} != {"finished"}:
            assert time.monotonic() < deadline, (tmp_path / "runs" / "1" / local.LOG_NAME).read_text()
            assert store.count_running() <= 1
            time.sleep(0.2)
    finally:
        del os.environ[settings.CAP_VARIABLE], os.environ[settings.SPARES_VARIABLE]
    for run_id in (first, second):
        assert [row["iteration"] for row in store.metrics(run_id, "test")] == [2, 4]
        assert store.latest_checkpoint(run_id)[0] == 4
        assert last_log_word(store, run_id) == str(run_id)  # the CLI's last line
    assert store.run(second).started >= store.run(first).ended - 1


def test_cancel_twice_delete_running_and_a_dead_process(tmp_path, monkeypatch):
    store = Store(tmp_path)
    run_id, = queue(store, 1)
    process = sleeper()
    launching(monkeypatch, lambda run: process.pid)
    try:
        assert dispatch.dispatch(store, cap=1) == [run_id]
        assert store.run(run_id).status == "starting" and store.run(run_id).pid == process.pid
        assert store.confirm(run_id, process.pid)  # what the training process does first
        assert "stops after saving a checkpoint" in control.cancel(run_id, store)
        with pytest.raises(StoreError, match="already stopping"):
            control.cancel(run_id, store)  # a second SIGTERM would stop it without its checkpoint
        with pytest.raises(StoreError, match="is running; cancel it and wait"):
            control.delete(run_id, store)
        assert store.run(run_id).status == "running"
    finally:
        process.kill()
        process.wait()
    assert dispatch.needs_dispatch(store, cap=1)  # a read notices the process is gone
    dispatch.dispatch(store, cap=1)
    run = store.run(run_id)
    assert run.status == "interrupted"
    assert run.error.startswith(f"Interrupted: its process {process.pid} stopped without finishing")
    assert run.error.endswith("resume it to continue from the start.")
    with pytest.raises(StoreError, match="already interrupted"):
        control.cancel(run_id, store)
    assert not dispatch.needs_dispatch(store, cap=1)


def test_cancel_of_a_process_that_exits_just_before_the_signal(tmp_path, monkeypatch):
    """The process is alive when cancel checks and gone when it signals: one clear error, no stale marker."""
    store = Store(tmp_path)
    run_id, = queue(store, 1)
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    launching(monkeypatch, lambda run: process.pid)
    assert dispatch.dispatch(store, cap=1) == [run_id] and store.confirm(run_id, process.pid)

    def exits_first(pid, started, signum):  # the hook: the process finishes exactly between check and signal
        process.kill()
        process.wait()
        return False

    monkeypatch.setattr(processes, "signal_if_same", exits_first)
    with pytest.raises(StoreError, match=f"Run {run_id} had already stopped: its process {process.pid} is gone."):
        control.cancel(run_id, store)
    assert not store.run(run_id).cancel_requested
    assert store.run(run_id).status == "interrupted" and store.run(run_id).error.startswith("Interrupted")


def test_a_reused_pid_is_not_the_runs_process(tmp_path, monkeypatch):
    """The run's process died and the system gave its pid to another process: the run is interrupted, and a
    cancel never signals the stranger."""
    store = Store(tmp_path)
    run_id, = queue(store, 1)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    launching(monkeypatch, lambda run: stranger.pid)
    try:
        assert dispatch.dispatch(store, cap=1) == [run_id]
        # The hook: the run's own process, recorded at its confirm, started an hour before the stranger did.
        real_start_time = processes.start_time
        monkeypatch.setattr(processes, "start_time", lambda pid: real_start_time(pid) - 3600)
        assert store.confirm(run_id, stranger.pid)
        monkeypatch.setattr(processes, "start_time", real_start_time)
        run = store.run(run_id)
        assert processes.running(run.pid) and not processes.running(run.pid, run.process_started)
        with pytest.raises(StoreError, match="had already stopped"):
            control.cancel(run_id, store)
        assert stranger.poll() is None  # not signalled
        assert store.run(run_id).status == "interrupted"
        store.requeue_for_resume(run_id)  # the stranger is alive, but it is not the run's process
        assert store.run(run_id).status == "queued"
    finally:
        stranger.kill()
        stranger.wait()


def test_a_crash_between_claim_and_launch_gives_the_run_back_to_the_queue(tmp_path, monkeypatch):
    store = Store(tmp_path)
    run_id, = queue(store, 1)

    def crash(store, run_id, threads, spares):  # the dispatcher dies after its claim committed, before any launch
        raise KeyboardInterrupt

    monkeypatch.setattr(local, "start_run", crash)
    with pytest.raises(KeyboardInterrupt):
        dispatch.dispatch(store, cap=1)
    run = store.run(run_id)
    assert run.status == "starting" and run.pid is None
    assert not dispatch.needs_dispatch(store, cap=1)  # its dispatcher may still be launching it
    monkeypatch.setattr(dispatch, "STARTING_TIMEOUT_S", 0.0)  # the hook: the claim is now stale
    assert dispatch.needs_dispatch(store, cap=1)
    process = sleeper()
    launching(monkeypatch, lambda run: process.pid)
    try:
        assert dispatch.dispatch(store, cap=1) == [run_id]  # reclaimed and launched again
        assert store.confirm(run_id, process.pid) and store.run(run_id).status == "running"
    finally:
        process.kill()
        process.wait()


def test_a_process_that_dies_before_it_confirms_fails_the_run_with_its_last_words(tmp_path, monkeypatch):
    store = Store(tmp_path)
    run_id, = queue(store, 1)
    store.run_dir(run_id).mkdir(parents=True)
    (store.run_dir(run_id) / local.LOG_NAME).write_text("ImportError: no module named torch\n")
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    launching(monkeypatch, lambda run: process.pid)
    assert dispatch.dispatch(store, cap=1) == [run_id]
    process.wait()
    dispatch.dispatch(store, cap=1)
    run = store.run(run_id)
    assert run.status == "failed"
    assert run.error == (f"It could not start: its process {process.pid} ended before it began (ImportError: no "
                         "module named torch).")


def test_a_run_cancelled_while_starting_is_not_taken_by_its_process(tmp_path, monkeypatch):
    store = Store(tmp_path)
    run_id, = queue(store, 1)
    launching(monkeypatch, lambda run: os.getpid())
    assert dispatch.dispatch(store, cap=1) == [run_id]
    assert control.cancel(run_id, store) == f"Run {run_id} was cancelled before it started."
    assert not store.confirm(run_id, os.getpid()) and store.run(run_id).status == "cancelled"


def test_dead_child_of_this_process_is_noticed(tmp_path):
    """An exited child stays a zombie until reaped, and a zombie still answers os.kill(pid, 0)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    while not os.path.exists(f"/proc/{process.pid}") or open(f"/proc/{process.pid}/stat").read().split()[2] != "Z":
        time.sleep(0.05)
    assert not processes.running(process.pid)


def test_the_servers_dispatcher_advances_the_queue_and_polls_take_no_write_lock(tmp_path, monkeypatch):
    """Page polls only read; the Dispatcher thread notices a dead process and starts the next run."""
    monkeypatch.setenv("RESNET_EXPLORER_HOME", str(tmp_path))
    monkeypatch.setenv(settings.CAP_VARIABLE, "1")
    store = Store(tmp_path)
    first, second = queue(store, 2)
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    assert store.claim(first, process.pid)
    process.wait()  # the first run's process died; nothing has noticed yet
    from explorer.training import live_runs as page_runs
    from explorer.training import run_history
    from resnet_core.explain import catalog

    catalog.add_references_to(store)  # what a server's first page visit writes, once; not a poll's doing
    writes = []
    real_transaction = Store._transaction
    with monkeypatch.context() as patch:  # no dispatcher thread, and every write transaction counted
        patch.setattr(Store, "_transaction", lambda self: writes.append(1) or real_transaction(self))
        patch.setattr(dispatch.Dispatcher, "keep_alive", lambda self: None)
        states = page_runs.poll([first, second])
        run_history.history()
    assert writes == [] and [state.status for state in states] == ["running", "queued #1"]
    sleeping = sleeper()
    launching(monkeypatch, lambda run: sleeping.pid)
    dispatcher = dispatch.Dispatcher(tmp_path, interval_s=0.05)
    dispatcher.keep_alive()
    try:
        deadline = time.monotonic() + 30
        while store.run(second).status != "starting":
            assert time.monotonic() < deadline, [run.status for run in store.runs()]
            time.sleep(0.05)
        assert store.run(first).status == "interrupted" and store.run(second).pid == sleeping.pid
    finally:
        sleeping.kill()
        sleeping.wait()
        dispatcher.stop()
    assert not serving(tmp_path)


def serving(home: Path) -> list[threading.Thread]:
    """The dispatcher threads of this process serving the data folder `home`."""
    return [thread for thread in threading.enumerate() if thread.name == f"dispatcher {home}"]


def test_clearing_the_apps_cache_stops_the_dispatcher_it_held(tmp_path, monkeypatch, app_clear_caches):
    """Streamlit's "Clear cache" drops the server's dispatcher; its thread must end with it, not serve the folder
    for ten more minutes beside the new one a page visit starts."""
    import streamlit as st

    from explorer import run_service as page_runs

    monkeypatch.setenv("RESNET_EXPLORER_HOME", str(tmp_path))
    page_runs.store()
    assert len(serving(tmp_path)) == 1
    st.cache_resource.clear()
    assert not serving(tmp_path)
    page_runs.store()  # the next visit: one again
    assert len(serving(tmp_path)) == 1


def test_cancel_queued_resume_and_delete(tmp_path):
    store = Store(tmp_path)
    first, second = queue(store, 2)
    assert control.cancel(first, store) == f"Run {first} was cancelled before it started."
    assert dispatch.queue_positions(store) == {second: 1}
    with pytest.raises(StoreError, match="already cancelled"):
        control.cancel(first, store)
    store.run_dir(first).mkdir(parents=True)
    assert control.delete(first, store) == f"Run {first} was deleted."
    assert not store.run_dir(first).exists() and [run.id for run in store.runs()] == [second]
    with pytest.raises(StoreError, match="already queued"):
        control.resume(second, store)
    store.finish(second, "finished")
    with pytest.raises(StoreError, match="has finished"):
        control.resume(second, store)
    assert store.run(second).status == "finished"
    with pytest.raises(StoreError, match="No run 99"):
        control.delete(99, store)


def test_submit_refuses_what_a_cpu_server_cannot_train(tmp_path, monkeypatch):
    """A shared server's limits apply when the caller passes them, as the app does; a library caller owns its
    machine."""
    store = Store(tmp_path)
    workshop = admission.Limits.workshop()
    with pytest.raises(UserError, match="too deep to train on this CPU-only server"):
        admission.submit("resnet1202", "synthetic", iterations=1, store=store, limits=workshop)
    with pytest.raises(UserError, match="train on at most 500,000 images"):
        admission.submit("resnet20", "cifar10", epochs=11, store=store, limits=workshop)
    assert store.runs() == []
    assert admission.submit("resnet20", "cifar10", epochs=11, store=store) == 1  # no limits asked for
    assert store.run(1).status == "queued" and store.cancel_queued(1)
    with pytest.raises(UserError, match="Unknown dataset"):
        admission.submit("resnet20", str(tmp_path / "missing"), epochs=1, store=store)
    monkeypatch.setenv(settings.CAP_VARIABLE, "zero")
    with pytest.raises(UserError, match="must be a whole number"):
        settings.max_concurrent_runs()
    assert len(store.runs()) == 1


def test_threads_share_the_cores(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert settings.max_concurrent_runs() == 8 and settings.threads_per_run() == 1
    assert settings.threads_per_run(2) == 4
    monkeypatch.setenv(settings.THREADS_VARIABLE, "4")  # the cap follows: cores / threads per run
    assert settings.max_concurrent_runs() == 2 and settings.threads_per_run() == 4
    monkeypatch.delenv(settings.THREADS_VARIABLE)
    monkeypatch.setenv(settings.CAP_VARIABLE, "3")  # and the threads follow a cap
    assert settings.max_concurrent_runs() == 3 and settings.threads_per_run() == 2
    monkeypatch.delenv(settings.CAP_VARIABLE)
    # On a GPU the cap follows its memory, one run per core at most. (No GPU here: its two answers stand in.)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (70 * 10**9, 24 * 10**9))
    assert settings.max_concurrent_runs() == 6 and settings.threads_per_run() == 1
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (70 * 10**9, 80 * 10**9))
    assert settings.max_concurrent_runs() == 8
    monkeypatch.setenv(settings.THREADS_VARIABLE, "0")
    with pytest.raises(UserError, match=r"RESNET_EXPLORER_THREADS_PER_RUN must be at least 1 thread; got 0\."):
        settings.threads_per_run()


@pytest.mark.parametrize("value, message", [("two", r"RESNET_EXPLORER_SPARES must be a whole number of spares; "
                                                    r"got 'two'\."),
                                            ("-1", r"RESNET_EXPLORER_SPARES must be at least 0 spares; got -1\.")])
def test_a_bad_spares_setting_is_refused_before_anything_starts(tmp_path, monkeypatch, value, message):
    store = Store(tmp_path)
    run_id = admission.submit("resnet8", "synthetic", store=store, **TINY)
    monkeypatch.setenv(settings.SPARES_VARIABLE, value)
    with pytest.raises(UserError, match=message):
        dispatch.dispatch(store)
    assert store.run(run_id).status == "queued" and not (tmp_path / "workers").exists()
    monkeypatch.setenv(settings.SPARES_VARIABLE, "0")  # none at all is a valid choice
    assert settings.spares_wanted() == 0


def test_a_spare_takes_the_next_run_and_a_new_spare_replaces_it(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.SPARES_VARIABLE, "1")
    store = Store(tmp_path)
    local.keep_spares(store)
    spare, = (tmp_path / "workers").glob("*.spare")
    local.keep_spares(store)  # idempotent: still one
    assert list((tmp_path / "workers").glob("*.spare")) == [spare]
    run_id, = queue(store, 1)
    try:
        assert dispatch.dispatch(store, cap=1) == [run_id]
        assert store.run(run_id).pid == int(spare.stem)  # the warm process took it
        replacement, = (tmp_path / "workers").glob("*.spare")
        assert replacement != spare
        deadline = time.monotonic() + 120  # the spare and its replacement both import torch meanwhile
        while store.run(run_id).status != "finished":
            assert time.monotonic() < deadline, (store.run_dir(run_id) / local.LOG_NAME).read_text()
            time.sleep(0.2)
        assert last_log_word(store, run_id) == str(run_id)
        assert [row["iteration"] for row in store.metrics(run_id, "test")] == [2, 4]
    finally:
        for waiting in (tmp_path / "workers").glob("*.spare"):
            os.kill(int(waiting.stem), 15)


def test_sessions_keeping_spares_at_once_start_only_the_missing_ones(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.SPARES_VARIABLE, "2")
    store = Store(tmp_path)
    threads = [threading.Thread(target=local.keep_spares, args=(Store(tmp_path),)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spares = list((tmp_path / "workers").glob("*.spare"))
    for spare in spares:
        os.kill(int(spare.stem), 15)
    assert len(spares) == 2 and store.runs() == []
