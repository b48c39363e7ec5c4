"""A class of N people, one short real run each (the same net and length for all), through the local launcher and
through the Ray launcher with two 1-CPU workers, on this machine, in one invocation: makespan, p50/p95 wait for a
slot, Start -> first point, and the overhead ratio (Ray / local, the same two cores). Then the class again on the
cluster with a worker killed mid-class: runs lost, rows doubled, seconds until the lost run trains again elsewhere.

    .venv/bin/python -m benchmarks.bench_cluster [--people 30] [--iterations 60]

Both launchers share one throwaway PostgreSQL server (tests/services.py) so only the launcher differs; the cluster
runs in a private network namespace (tests/ray_cluster.py, as the tests do; root needed). This process is a page:
it queues the runs and reads them through the store, and never connects to the cluster itself.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def play_class(people: int, iterations: int, kill_at: int | None = None) -> dict:
    """Queue one run per person at once and follow them to the end, as their pages would."""
    from resnet_core.runs import admission
    from resnet_core.runs.store import Store

    store = Store()
    settings = dict(iterations=iterations, batch_size=32, eval_every=iterations)
    started = time.time()
    run_ids = [admission.submit("resnet8", "synthetic", owner=f"person {index}", store=store, **settings)
               for index in range(people)]
    first_point: dict[int, float] = {}
    killed = recovered = None
    while True:
        runs = {run_id: store.run(run_id) for run_id in run_ids}
        for run_id in run_ids:
            if run_id not in first_point and store.metrics(run_id, "train", after_iteration=0):
                first_point[run_id] = time.time()
        done = sum(run.status == "finished" for run in runs.values())
        if kill_at is not None and killed is None and done >= kill_at:
            victim = next(run for run in runs.values() if run.status == "running")
            raylet = psutil.Process(victim.pid).parent()
            for process in [*raylet.children(recursive=True), raylet]:
                process.send_signal(signal.SIGKILL)
            killed = (time.time(), victim)
        if killed is not None and recovered is None:
            again = runs[killed[1].id]
            if again.status in ("running", "finished") and again.node != killed[1].node:
                recovered = time.time() - killed[0]
        if all(run.status in ("finished", "failed", "cancelled", "interrupted") for run in runs.values()):
            break
        time.sleep(0.1)
    runs = {run_id: store.run(run_id) for run_id in run_ids}
    rows = {run_id: [row["iteration"] for row in store.metrics(run_id, "train")] for run_id in run_ids}
    return dict(
        makespan=max(run.ended for run in runs.values()) - started,
        waits=[runs[run_id].started - runs[run_id].created for run_id in run_ids],
        first_points=[first_point[run_id] - runs[run_id].created for run_id in run_ids if run_id in first_point],
        lost=sum(run.status != "finished" for run in runs.values()),
        doubled=sum(rows[run_id] != list(range(1, iterations + 1)) for run_id in run_ids if runs[run_id].status
                    == "finished"),
        recovered=recovered)


def report(name: str, result: dict, baseline: dict | None) -> None:
    ratio = f"{result['makespan'] / baseline['makespan']:.2f}x" if baseline else "baseline"
    print(f"{name:<22} makespan {result['makespan']:6.1f} s ({ratio})  "
          f"wait p50 {statistics.median(result['waits']):5.1f} p95 {percentile(result['waits'], 0.95):5.1f} s  start->first point p50 "
          f"{statistics.median(result['first_points']):4.1f} p95 {percentile(result['first_points'], 0.95):4.1f} s  "
          f"lost {result['lost']}  doubled {result['doubled']}"
          + (f"  recovered in {result['recovered']:.1f} s" if result.get("recovered") is not None else ""),
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=30)
    parser.add_argument("--iterations", type=int, default=60, help="of ResNet-8, batch 32, on synthetic images")
    args = parser.parse_args()
    from services import PostgresServer  # the tests' throwaway server

    server = PostgresServer.throwaway()
    root = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    common = {"RESNET_EXPLORER_THREADS_PER_RUN": "1", "RESNET_EXPLORER_RUNS_PER_USER": "2",
              "RESNET_EXPLORER_MAX_WAITING": str(args.people), "RESNET_EXPLORER_LEASE_S": "10"}
    try:
        # Local: two slots on this machine's two cores, warm spares, the app's dispatcher thread.
        os.environ.update(common, RESNET_EXPLORER_DATABASE_URL=server.create_database(),
                          RESNET_EXPLORER_HOME=str(root / "local"), RESNET_EXPLORER_MAX_RUNS="2")
        from resnet_core.runs.dispatch import Dispatcher

        dispatcher = Dispatcher(root / "local", interval_s=0.3)
        dispatcher.keep_alive()
        local = play_class(args.people, args.iterations)
        dispatcher.stop()
        report("local (2 processes)", local, None)

        for name, kill, folder in (("ray (2 workers)", None, "ray"), ("ray, a worker killed", args.people // 3,
                                                                         "ray-kill")):
            home = root / folder
            home.mkdir()
            os.environ.update(RESNET_EXPLORER_DATABASE_URL=server.create_database(), RESNET_EXPLORER_HOME=str(home),
                              RESNET_EXPLORER_RAY_ADDRESS="127.0.0.1:6390")
            os.environ.pop("RESNET_EXPLORER_MAX_RUNS")
            with open(home / "cluster.log", "w") as log:
                cluster = subprocess.Popen(["unshare", "-n", sys.executable, str(REPO / "tests" / "ray_cluster.py"),
                                            str(home / "ready"), str(home / "stop")], cwd=REPO,
                                           env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=log,
                                           stderr=subprocess.STDOUT)
            while not (home / "ready").exists():
                if cluster.poll() is not None:
                    raise RuntimeError(f"the cluster did not start:\n{(home / 'cluster.log').read_text()[-3000:]}")
                time.sleep(0.2)
            try:
                result = play_class(args.people, args.iterations, kill_at=kill)
            finally:
                (home / "stop").touch()
                cluster.wait(120)
            report(name, result, local)
            os.environ["RESNET_EXPLORER_MAX_RUNS"] = "2"
            os.environ.pop("RESNET_EXPLORER_RAY_ADDRESS")
    finally:
        server.close()


if __name__ == "__main__":
    main()
