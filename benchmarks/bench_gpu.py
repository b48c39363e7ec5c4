"""One GPU, three loads (issue 24, item 5): the Shortcuts pair at once, many short runs at once, and ResNet-20's full
§4.2 run, all with the library's own training loop and no run store (so no database package is needed).

    python3 benchmarks/bench_gpu.py [--only pair,many,full] [--data DIR | --archive FILE.tar.gz] [--out FILE]

The parts, in the order they run (the short ones first, so that a run cut off by a time limit still has them):
  pair  plain56 and resnet56, 450 iterations each with the short-run recipe (the Shortcuts preset), as two processes
        at once: makespan.
  many  --runs resnet20 runs (default 30) of 200 iterations, one process each, all at once: makespan and the images/s
        of all of them together.
  full  resnet20 with §4.2's recipe (64,000 iterations of 128, lr 0.1 ÷10 at 32k and 48k, a test pass every epoch),
        in this process: wall time and final test error.
Each result is one printed line; the JSON file (--out; default $OUT/bench_gpu.json when $OUT is set, else
data/bench_gpu.json) is rewritten after each part and every 16 epochs of the full run.

On the lent GPU machine (python3 3.12 with torch 2.11 and torchvision 0.26; nothing can be installed there), from the
repository root, with carry ["data/cifar10-jpeg.tar.gz", "data/bench-pydeps"] and timeout_s 600:

    python3 benchmarks/bench_gpu.py --archive data/cifar10-jpeg.tar.gz

Prepare both carried paths here first (both are git-ignored):

    cp ../shared/data/cifar10-jpeg.tar.gz data/ && mkdir -p data/bench-pydeps && \
        cp -r .venv/lib/python3.11/site-packages/safetensors data/bench-pydeps/

The extracted folder does not fit carry's 64 MiB: data/bench-cifar10 is 60,000 files, 55 MB of contents but 237 MB
on disk (`du -sh`). The archive is 19.8 MB; the script extracts it into data/bench-cifar10 on the machine (seconds).
resnet_core's checkpoints and dataset cache need safetensors, which that machine may lack; this venv's copy (1.4 MB)
is built for the stable ABI (cp310-abi3), so it loads under Python 3.12 too, and is used only if none is installed.
Not yet run on a GPU: if the three parts need more than one call's 600 s, run `--only pair,many` and `--only full`
as two calls.

Dry run on a CPU (3.4 min on 2 cores shared with other training runs): add `--device cpu --full-iterations 20
--pair-iterations 10 --runs 2 --many-iterations 5 --test-images 500`.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Nothing is installed on the GPU machine: resnet_core is imported from this checkout.
sys.path.insert(0, str(ROOT))
CARRIED_PACKAGES = ROOT / "data" / "bench-pydeps"
if importlib.util.find_spec("safetensors") is None:  # resnet_core's checkpoints and dataset cache need it
    sys.path.append(str(CARRIED_PACKAGES))  # appended, and only now: an installed safetensors wins
    if importlib.util.find_spec("safetensors") is None:
        raise SystemExit(f"error: safetensors is neither installed nor in {CARRIED_PACKAGES}; copy it there as this "
                         "script's docstring says.")

import torch  # noqa: E402

from resnet_core.errors import UserError  # noqa: E402
from resnet_core.nets.specs import get_spec  # noqa: E402
from resnet_core.training.data import ImageData, load_data  # noqa: E402
from resnet_core.training.device import pick_device, pick_precision, set_cpu_threads  # noqa: E402
from resnet_core.training.recipe import Recipe, training_recipe  # noqa: E402
from resnet_core.training.train import RunEnd, TestMetrics, train  # noqa: E402

PARTS = ("pair", "many", "full")
PAIR = ("plain56", "resnet56")  # the Shortcuts preset
MANY_NET = "resnet20"
FULL_NET = "resnet20"
PAPER_ITERATIONS = 64_000  # §4.2
PROGRESS_EVERY = 16  # test passes (epochs) of the full run between progress lines and JSON saves


def image_folder(folder: Path, archive: Path | None) -> Path:
    """The folder holding train/ and test/ at or under `folder`, extracted there from `archive` if there is none."""
    found = _holding_train_and_test(folder)
    if found is None and archive is not None:
        folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as opened:
            opened.extractall(folder, filter="data")
        found = _holding_train_and_test(folder)
    if found is None:
        raise SystemExit(f"error: {folder} holds no train/ and test/ image folders; pass --data DIR with them or "
                         "--archive FILE.tar.gz to extract there (see this script's docstring).")
    return found


def _holding_train_and_test(folder: Path) -> Path | None:
    if not folder.is_dir():
        return None
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        return folder
    return next((path.parent for path in folder.rglob("train") if (path.parent / "test").is_dir()), None)


def load(folder: Path, home: Path, test_images: int | None) -> ImageData:
    data = load_data(str(folder), home=home)
    if test_images is None:
        return data
    # A dry run tests an even sample of the test set: a pass over all 10,000 images takes seconds per net on a CPU.
    step = max(1, len(data.test_labels) // test_images)
    return dataclasses.replace(data, test_images=data.test_images[::step][:test_images],
                               test_labels=data.test_labels[::step][:test_images])


def train_once(net: str, data: ImageData, recipe: Recipe, device: str, progress=None) -> dict:
    """Trains `net` to the end; `progress(test_metrics, passes)` after each test pass. The run's outcome as a dict."""
    started = time.perf_counter()
    test_error, passes, end = None, 0, None
    for record in train(get_spec(net), data, recipe, seed=0, device=device):
        if isinstance(record, TestMetrics):
            test_error, passes = record.error, passes + 1
            if progress is not None:
                progress(record, passes)
        elif isinstance(record, RunEnd):
            end = record
    return {"net": net, "iterations": end.iteration, "status": end.status, "message": end.message,
            "test_error": test_error, "test_passes": passes, "wall_s": time.perf_counter() - started}


def worker(args: argparse.Namespace) -> None:
    """One run of `pair` or `many`, in its own process: prints its outcome as one JSON line."""
    set_cpu_threads(args.processes)
    data = load(args.data, args.home, args.test_images)
    recipe = training_recipe(get_spec(args.worker), iterations=args.worker_iterations,
                             train_images=len(data.train_labels))
    ready = time.time()  # wall clock: comparable between the processes of one machine
    outcome = train_once(args.worker, data, recipe, args.device)
    peak = torch.cuda.max_memory_allocated() if args.device == "cuda" else None
    print(json.dumps({**outcome, "ready": ready, "ended": time.time(), "peak_gpu_bytes": peak,
                      "images": outcome["iterations"] * recipe.batch_size, "recipe": recipe.describe()}))


def at_once(nets: list[str], iterations: int, args: argparse.Namespace) -> dict:
    """Runs `nets` as one process each, all started together; their outcomes, makespan and throughput."""
    shared = ["--data", str(args.data), "--home", str(args.home), "--device", args.device,
              "--worker-iterations", str(iterations), "--processes", str(len(nets))]
    if args.test_images is not None:
        shared += ["--test-images", str(args.test_images)]
    launched = time.time()
    started = []
    for net in nets:
        # Files, not pipes: 30 children writing warnings would block on full pipes while this waits for another.
        stdout, stderr = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        process = subprocess.Popen([sys.executable, __file__, "--worker", net, *shared], stdout=stdout, stderr=stderr,
                                   text=True)
        started.append((net, process, stdout, stderr))
    runs = []
    for net, process, stdout, stderr in started:
        process.wait()
        stdout.seek(0)
        stderr.seek(0)
        lines = (stdout if process.returncode == 0 else stderr).read().strip().splitlines()
        if process.returncode == 0:
            runs.append(json.loads(lines[-1]))
        else:
            runs.append({"net": net, "status": "failed",
                         "message": lines[-1] if lines else f"exit status {process.returncode}"})
        stdout.close()
        stderr.close()
    makespan = time.time() - launched
    trained = [run for run in runs if run["status"] != "failed"]
    window = max(run["ended"] for run in trained) - min(run["ready"] for run in trained) if trained else None
    images = sum(run["images"] for run in trained)
    return {"nets": nets, "iterations": iterations, "processes": len(nets), "makespan_s": makespan,
            "training_window_s": window, "failed": len(runs) - len(trained), "train_images": images,
            "train_images_per_s_makespan": images / makespan,
            "train_images_per_s_window": images / window if window else None,
            "peak_gpu_bytes_max": max((run.get("peak_gpu_bytes") or 0 for run in trained), default=0) or None,
            "runs": runs}


def machine(device: torch.device) -> dict:
    try:
        torchvision = importlib.metadata.version("torchvision")
    except importlib.metadata.PackageNotFoundError:
        torchvision = None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision,
            "device": name, "cpus": os.cpu_count(), "precision": pick_precision(device)}


def error_text(error: float | None) -> str:
    return "none (no test pass)" if error is None else f"{error:.4f}"


def save(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(results, indent=2))
    partial.replace(path)


def default_out() -> Path:
    return Path(os.environ["OUT"]) / "bench_gpu.json" if os.environ.get("OUT") else ROOT / "data" / "bench_gpu.json"


def parts(text: str) -> list[str]:
    chosen = text.split(",")
    unknown = [part for part in chosen if part not in PARTS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown part {', '.join(unknown)}; allowed: {', '.join(PARTS)}")
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", type=parts, default=list(PARTS), metavar="PARTS",
                        help=f"comma-separated parts to run (default: {','.join(PARTS)})")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "bench-cifar10",
                        help="image folder with train/<class>/ and test/<class>/ (default: data/bench-cifar10)")
    parser.add_argument("--archive", type=Path, help="a .tar.gz of such a folder, extracted into --data if it has none")
    parser.add_argument("--home", type=Path, default=ROOT / "data" / "bench-home",
                        help="data folder for the decoded dataset's cache (default: data/bench-home)")
    parser.add_argument("--out", type=Path, default=default_out(), help="JSON results (default: $OUT/bench_gpu.json "
                        "when $OUT is set, else data/bench_gpu.json)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--full-iterations", type=int, default=PAPER_ITERATIONS,
                        help="iterations of the full run, its milestones scaled (default: §4.2's 64000)")
    parser.add_argument("--pair-iterations", type=int, default=450, help="iterations of each net of the pair")
    parser.add_argument("--runs", type=int, default=30, help="runs at once in the many part")
    parser.add_argument("--many-iterations", type=int, default=200, help="iterations of each run of the many part")
    parser.add_argument("--test-images", type=int, help="test on this many images, an even sample (default: all)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # the net of one run of `pair` or `many`
    parser.add_argument("--worker-iterations", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--processes", type=int, default=1, help=argparse.SUPPRESS)  # runs sharing this machine
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    try:
        device = pick_device(args.device)
    except UserError as error:  # --device cuda on a machine without one
        parser.error(str(error))
    set_cpu_threads()
    args.data = image_folder(args.data, args.archive)
    started = time.perf_counter()
    data = load(args.data, args.home, args.test_images)  # decodes once (or reads the cache) for every run after it
    results = {"machine": machine(device),
               "data": {"folder": str(args.data), "train_images": len(data.train_labels),
                        "test_images": len(data.test_labels), "load_s": time.perf_counter() - started}}
    info = results["machine"]
    print(f"machine: {info['device']}, {info['cpus']} CPUs, {info['precision']}; Python {info['python']}, torch "
          f"{info['torch']}, torchvision {info['torchvision']}", flush=True)
    print(f"data: {len(data.train_labels):,} training and {len(data.test_labels):,} test images from {args.data}; "
          f"loaded in {results['data']['load_s']:.1f} s (decoded, or read from the cache)", flush=True)
    save(results, args.out)

    if "pair" in args.only:
        pair = results["pair"] = at_once(list(PAIR), args.pair_iterations, args)
        errors = ", ".join(f"{run['net']} {error_text(run['test_error'])}" if run["status"] != "failed" else
                           f"{run['net']} failed ({run['message']})" for run in pair["runs"])
        print(f"pair: {' + '.join(PAIR)}, {args.pair_iterations} iterations each, 2 processes at once: makespan "
              f"{pair['makespan_s']:.1f} s (training {pair['training_window_s'] or 0:.1f} s); test error {errors}",
              flush=True)
        save(results, args.out)

    if "many" in args.only:
        many = results["many"] = at_once([MANY_NET] * args.runs, args.many_iterations, args)
        peak = many["peak_gpu_bytes_max"]
        print(f"many: {args.runs} x {MANY_NET}, {args.many_iterations} iterations each, all at once: makespan "
              f"{many['makespan_s']:.1f} s, {many['train_images_per_s_makespan']:,.0f} training images/s over it "
              f"({many['train_images_per_s_window'] or 0:,.0f} over the {many['training_window_s'] or 0:.1f} s "
              f"all trained); {many['failed']} failed"
              + (f"; peak GPU memory of a run {peak / 2 ** 30:.2f} GiB" if peak else ""), flush=True)
        save(results, args.out)

    if "full" in args.only:
        recipe = training_recipe(get_spec(FULL_NET), iterations=args.full_iterations,
                                 train_images=len(data.train_labels), kind="paper")
        results["full"] = {"net": FULL_NET, "recipe": recipe.describe(), "status": "running"}

        def progress(test: TestMetrics, passes: int) -> None:
            if passes % PROGRESS_EVERY == 0:
                results["full"].update(iteration=test.iteration, test_error=test.error, wall_s=test.elapsed_s)
                print(f"  full: iteration {test.iteration:,} of {recipe.iterations:,}, test error {test.error:.4f}, "
                      f"{test.elapsed_s:.0f} s", file=sys.stderr, flush=True)
                save(results, args.out)

        outcome = train_once(FULL_NET, data, recipe, args.device, progress)
        full = results["full"] = {**results["full"], **outcome,
                                  "train_images_per_s": outcome["iterations"] * recipe.batch_size / outcome["wall_s"]}
        print(f"full: {FULL_NET}, {recipe.describe()}: {full['status']} in {full['wall_s']:.1f} s "
              f"({full['train_images_per_s']:,.0f} training images/s, {full['test_passes']} test passes included); "
              f"final test error {error_text(full['test_error'])}", flush=True)
        save(results, args.out)
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
