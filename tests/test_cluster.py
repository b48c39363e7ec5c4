"""Runs on a real Ray cluster (tests/ray_cluster.py: a head with no CPUs and two one-CPU worker nodes, in a private
network namespace with only loopback, with the deployment's dispatcher), the store in a real PostgreSQL server. This
process, like the app, never connects to the cluster: it queues runs and reads them through the store.

Short runs spread over both machines and finish; a cancel written to the store stops its run after a checkpoint; a
machine killed mid-run loses nothing (its run continues on the other machine and records every iteration once); the
cluster is one command away; the Train page's Start trains on the cluster with its curves live.
"""
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys

import psutil
import pytest
from helpers import REPO, eventually, screenshot, serve_app, start_pair, wait_for_more_points

from resnet_core.nets.specs import get_spec
from resnet_core.runs import admission, control, settings
from resnet_core.runs.store import Store
from resnet_core.training.recipe import Recipe

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed (requirements-dev.txt)"),
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                       reason="a private network namespace (unshare -n) needs root"),
]
TINY = dict(iterations=12, batch_size=8, eval_every=6)
ADDRESS = "127.0.0.1:6390"  # tests/ray_cluster.py's head, inside its namespace


@pytest.fixture(scope="module")
def ray_cluster(postgres_server, tmp_path_factory) -> dict:
    """The cluster's settings (the environment every process of the deployment shares) while it runs."""
    home = tmp_path_factory.mktemp("cluster")
    chosen = {settings.DATABASE_VARIABLE: postgres_server.create_database(), settings.HOME_VARIABLE: str(home),
              settings.RAY_ADDRESS_VARIABLE: ADDRESS, settings.LEASE_VARIABLE: "10",
              settings.THREADS_VARIABLE: "1", settings.SPARES_VARIABLE: "0"}
    ready, stop = home / "ready", home / "stop"
    env = {**{name: value for name, value in os.environ.items() if not name.startswith("RESNET_EXPLORER_")},
           **chosen, "PYTHONPATH": str(REPO)}
    with (home / "cluster.log").open("w") as log:
        cluster = subprocess.Popen(["unshare", "-n", sys.executable, str(REPO / "tests" / "ray_cluster.py"),
                                    str(ready), str(stop)], env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        def up():
            if cluster.poll() is not None:  # no use waiting on
                pytest.fail((home / "cluster.log").read_text()[-3000:])
            assert ready.exists()

        eventually(up, timeout=180)
        yield {**chosen, "pid": cluster.pid}
    finally:
        stop.touch()
        try:
            cluster.wait(60)
        except subprocess.TimeoutExpired:
            cluster.kill()


@pytest.fixture
def on_cluster(ray_cluster, monkeypatch) -> Store:
    """This test's process as a page of the deployment: the cluster's settings, its store."""
    for name, value in ray_cluster.items():
        if name != "pid":
            monkeypatch.setenv(name, value)
    return Store()


def finished(store: Store, run_id: int, timeout: float = 180) -> None:
    def done():
        run = store.run(run_id)
        assert run.status == "finished", (run.status, run.error)

    eventually(done, timeout=timeout)


def test_short_runs_spread_over_both_machines_and_finish(on_cluster):
    store = on_cluster
    pair = admission.submit_all(["plain8", "resnet8"], "synthetic", owner="ada", store=store,
                                limits=admission.Limits.workshop(cap=2), **TINY)
    for run_id in pair:
        finished(store, run_id)
        assert [row["iteration"] for row in store.metrics(run_id, "train")] == list(range(1, 13))
        assert [row["iteration"] for row in store.metrics(run_id, "test")] == [6, 12]
    nodes = {store.run(run_id).node for run_id in pair}
    assert len(nodes) == 2 and nodes <= {node["name"] for node in store.nodes()}  # one machine each


def test_the_cluster_is_one_command_away(on_cluster, ray_cluster):
    # Inside the cluster's namespace, as on one of its machines.
    listed = subprocess.run(["nsenter", f"--net=/proc/{ray_cluster['pid']}/ns/net", sys.executable, "-m",
                             "resnet_core", "cluster", "--json"], cwd=REPO, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert listed.returncode == 0, listed.stderr[-3000:]
    state = json.loads(listed.stdout)
    assert (state["slots"], state["free"]) == (2, 2)
    assert sorted((node["cpus"], node["alive"], node["jobs"]) for node in state["nodes"]) == [
        (0, True, []), (1, True, []), (1, True, [])]
    assert all(set(node) == {"id", "address", "alive", "cpus", "gpus", "jobs"} for node in state["nodes"])
    assert sorted(node["slots"] for node in on_cluster.nodes()) == [0, 1, 1]  # what the app counts


def test_a_cancel_in_the_store_stops_the_run_after_a_checkpoint(on_cluster):
    store = on_cluster
    run_id = admission.submit("resnet8", "synthetic", iterations=100_000, batch_size=8, eval_every=20, store=store)

    def training():
        assert len(store.metrics(run_id, "train")) >= 5

    eventually(training, timeout=180)
    assert control.cancel(run_id, store) == f"Run {run_id} stops after saving a checkpoint."

    def stopped():
        assert store.run(run_id).status == "cancelled"

    eventually(stopped, timeout=60)
    last = store.metrics(run_id, "train")[-1]["iteration"]
    assert store.latest_checkpoint(run_id)[0] == last


@pytest.mark.browser
def test_start_on_the_train_page_trains_on_the_cluster_with_live_curves(on_cluster, ray_cluster, app_free_port,
                                                                      browser_page, tmp_path):
    chosen = {name: value for name, value in ray_cluster.items() if name != "pid"}
    with serve_app(app_free_port, tmp_path / "server.log", chosen):
        url = f"http://127.0.0.1:{app_free_port}"
        page = browser_page
        page.set_viewport_size({"width": 1400, "height": 1800})
        start_pair(page, url, 2_000, 16, 20)
        first = wait_for_more_points(page, 0)
        wait_for_more_points(page, first + 4)
        screenshot(page, "train_on_cluster.png")
        runs = [run for run in on_cluster.runs() if run.status == "running"]
        assert len(runs) == 2 and {run.node for run in runs} <= {node["name"] for node in on_cluster.nodes()}
        # The limits line counts the cluster's slots and machines, as its dispatcher recorded them.
        assert page.get_by_text("2 runs train at a time on 2 machines of the cluster").count() == 1
        for run in runs:
            control.cancel(run.id, on_cluster)


def test_an_image_folder_missing_on_its_machine_fails_the_run_naming_both(on_cluster):
    """Admission checks a folder where the run is queued; the machine that trains it may not have it."""
    store = on_cluster
    [run_id] = store.create_runs([dict(name="pets", spec=get_spec("resnet8").to_dict(), data="/nowhere/pets",
                                       recipe=Recipe(iterations=4, batch_size=8).to_dict(), device="cpu",
                                       precision="fp32", seed=0)])

    def failed():
        run = store.run(run_id)
        assert run.status == "failed" and run.node, (run.status, run.error)
        return run

    run = eventually(failed, timeout=120)
    assert run.error == (f"The image folder /nowhere/pets does not exist on {run.node}; every machine of the cluster "
                         "needs it at the same path.")


def test_a_machine_lost_mid_run_resumes_elsewhere_and_records_every_iteration_once(on_cluster):
    """Last in this module: it leaves the cluster one machine short."""
    store = on_cluster
    run_id = admission.submit("resnet8", "synthetic", iterations=240, batch_size=8, eval_every=40, store=store)

    def checkpointed():
        run = store.run(run_id)
        assert run.status == "running" and store.latest_checkpoint(run_id) and len(store.metrics(run_id)) > 50
        return run

    run = eventually(checkpointed, timeout=180)
    raylet = psutil.Process(run.pid).parent()  # the machine's raylet started the worker executing the run
    assert "raylet" in raylet.name()
    for process in [*raylet.children(recursive=True), raylet]:
        process.send_signal(signal.SIGKILL)  # the machine is gone, its worker with it
    finished(store, run_id, timeout=240)
    again = store.run(run_id)
    assert again.node != run.node
    assert [row["iteration"] for row in store.metrics(run_id, "train")] == list(range(1, 241))
    assert [row["iteration"] for row in store.metrics(run_id, "test")] == [40, 80, 120, 160, 200, 240]
