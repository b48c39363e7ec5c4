"""Are the time estimates honest on this machine? Each pair's estimate before Start against its measured wall time.

    .venv/bin/python -m benchmarks.bench_estimates [--pairs plain56,resnet56 plain20,resnet20] [--iterations 300]

In a fresh data folder (the CIFAR-10 JPEG copy's decoded cache shared), with the Train page's settings (2 runs at
once, 1 thread each, no warm spares): measures the server (`python -m resnet_core calibrate`), then for each pair
prints the estimate the Train page shows before Start (`resnet_core.speed`), queues the pair as Start does
(`admission.submit_all` + `dispatch`, real training processes) and measures from the queuing to the end of its
last run. The ratio measured / estimated is the estimate's error (the target: within 25 %). The second and later
pairs are also estimated from the book as the runs before them left it (a finished run adds its own speeds).

Needs ../shared/data/cifar10-jpeg.tar.gz (extracted once into data/bench-cifar10, git-ignored); skips without it.
Run it on a quiet machine: another job on the cores makes every run slower than any estimate made before it.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_training import HOME, extracted  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", nargs="+", default=["plain56,resnet56", "plain20,resnet20"])
    parser.add_argument("--iterations", type=int, default=300)
    args = parser.parse_args()
    folder = extracted()
    if folder is None:
        print("skipped: ../shared/data/cifar10-jpeg.tar.gz is absent (see ../shared/data/README.md)")
        return
    home = Path(tempfile.mkdtemp(prefix="estimates-"))
    (home / "cache").symlink_to(HOME / "cache")
    os.environ.update({"RESNET_EXPLORER_HOME": str(home), "RESNET_EXPLORER_MAX_RUNS": "2",
                       "RESNET_EXPLORER_SPARES": "0"})

    from resnet_core.runs import admission, dispatch
    from resnet_core.runs.schema import ENDED
    from resnet_core.runs.store import Store
    from resnet_core.speed import book
    from resnet_core.speed.estimate import estimate_planned, here
    from resnet_core.training.data import load_data

    load_data(str(folder), home=HOME)  # decoded once into the shared cache, as a server that trained before has it
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "resnet_core", "calibrate", "--home", str(home)], check=True, cwd=ROOT)
    print(f"calibration took {time.perf_counter() - started:.1f} s; {book.this_machine()}; {here().describe()}")
    store = Store(home)
    print(f"{'pair':<18} {'iterations':>10} {'estimated s':>11} {'from':<60} {'measured s':>10} {'ratio':>6}")
    for pair in args.pairs:
        nets = pair.split(",")
        planned = admission.planned_runs(nets, str(folder), iterations=args.iterations)
        estimates = {}
        for basis, found in (("calibration only", [m for m in book.measurements(home)
                                                   if m.source == book.CALIBRATION]),
                             ("the book (runs before it too)", book.measurements(home))):
            estimates[basis] = estimate_planned(planned, here(), found, train_images=50_000, test_images=10_000)
        queued_at = time.time()
        run_ids = admission.submit_all(nets, str(folder), iterations=args.iterations, store=store)
        dispatch.dispatch(store)
        while not all(store.run(run_id).status in ENDED for run_id in run_ids):
            dispatch.dispatch(store)
            time.sleep(1)
        runs = [store.run(run_id) for run_id in run_ids]
        if any(run.status != "finished" for run in runs):
            raise SystemExit(f"{pair}: {[(run.status, run.error) for run in runs]}")
        measured = max(run.ended for run in runs) - queued_at
        for basis, estimate in estimates.items():
            print(f"{pair:<18} {args.iterations:>10} {estimate.seconds:>11.1f} {basis + ': ' + estimate.basis:<60.60} "
                  f"{measured:>10.1f} {measured / estimate.seconds:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
