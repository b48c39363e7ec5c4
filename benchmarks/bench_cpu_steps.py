"""CPU step options for short runs, end to end: today's eager path against NCHW, torch.compile and threads.

    .venv/bin/python -m benchmarks.bench_cpu_steps [--iterations 300] [--models resnet20 resnet56]

Each configuration trains a whole run with `resnet_core.training.train.train` (the §4.2 recipe shortened to
`--iterations`, one test pass over the 10,000 test images at the end) in a process of its own, so a
compile, its caches and torch's thread pool never leak into the next. Two configurations run at once, one
torch thread each, as the two runs of a workshop pair share the two cores; the baseline (today's default:
eager, channels_last, 1 thread) is always half of a pair, so every ratio compares runs that shared the
machine. "2 threads" runs a lone process with both cores: the other way to spend them on a pair, one run
after the other. Wall time includes the process start, the model build and any compile.
Needs ../shared/data/cifar10-jpeg.tar.gz (extracted once into data/bench-cifar10, git-ignored).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_training import HOME, extracted  # noqa: E402

BASELINE = "eager, channels_last"
# name -> (memory format, compile, threads)
CONFIGS = {BASELINE: ("channels_last", False, 1), "eager, NCHW": ("nchw", False, 1),
           "compile, channels_last": ("channels_last", True, 1)}
LONE_CONFIG = ("eager, channels_last, 2 threads (alone)", ("channels_last", False, 2))


def child(model: str, iterations: int, memory_format: str, compile: bool, threads: int, folder: str) -> None:
    """One run in this process; prints a JSON line with its wall time and speed."""
    started = time.perf_counter()
    import torch

    torch.set_num_threads(threads)
    if memory_format == "nchw":
        # The training loop asks for torch.channels_last by name; pointing the name at the default layout
        # makes the same loop run NCHW without a switch in the library that only this benchmark would use.
        torch.channels_last = torch.contiguous_format
    from resnet_core.nets.specs import get_spec
    from resnet_core.training.data import load_data
    from resnet_core.training.device import pick_device, pick_precision
    from resnet_core.training.recipe import Recipe
    from resnet_core.training.train import TestMetrics, TrainMetrics, train

    data = load_data(folder, home=HOME)
    recipe = Recipe(eval_interval=10 ** 9).shortened(iterations=iterations)
    first_step = test_error = None
    for record in train(get_spec(model), data, recipe, seed=0, device="cpu", compile=compile):
        if isinstance(record, TrainMetrics) and record.iteration == 1:
            first_step = time.perf_counter() - started
        if isinstance(record, TestMetrics):
            test_error = record.error
    wall = time.perf_counter() - started
    print(json.dumps({"wall_s": wall, "first_step_s": first_step, "test_error": test_error,
                      "precision": pick_precision(pick_device("cpu"))}))


def launch(model: str, iterations: int, config: tuple[str, bool, int], folder: Path) -> subprocess.Popen:
    memory_format, compile, threads = config
    return subprocess.Popen([sys.executable, "-m", "benchmarks.bench_cpu_steps", "--child", model, str(iterations),
                             memory_format, str(int(compile)), str(threads), str(folder)],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": str(threads)})


def result(process: subprocess.Popen) -> dict:
    out, _ = process.communicate()
    if process.returncode:
        raise SystemExit(f"a benchmark run failed (exit {process.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        model, iterations, memory_format, compile, threads, folder = sys.argv[2:]
        child(model, int(iterations), memory_format, compile == "1", int(threads), folder)
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--models", nargs="+", default=["resnet20", "resnet56"])
    args = parser.parse_args()
    folder = extracted()
    if folder is None:
        print("skipped: ../shared/data/cifar10-jpeg.tar.gz is absent (see ../shared/data/README.md)")
        return
    from resnet_core.training.data import load_data

    load_data(str(folder), home=HOME)  # decode once, so no run below pays for it
    print(f"{args.iterations} iterations of 128 + one test pass, end to end, wall seconds "
          f"(ratio = baseline / this; > 1 is faster)")
    print(f"{'model':<9} {'configuration':<42} {'wall':>7} {'first step':>10} {'baseline':>8} {'ratio':>6}")
    for model in args.models:
        for name, config in CONFIGS.items():
            if name == BASELINE:
                continue
            pair = [launch(model, args.iterations, CONFIGS[BASELINE], folder),
                    launch(model, args.iterations, config, folder)]
            base, other = (result(process) for process in pair)
            print(f"{model:<9} {name + ' (' + other['precision'] + ')':<42} {other['wall_s']:7.1f} "
                  f"{other['first_step_s']:10.1f} {base['wall_s']:8.1f} {base['wall_s'] / other['wall_s']:6.2f}",
                  flush=True)
        name, config = LONE_CONFIG
        lone = result(launch(model, args.iterations, config, folder))
        # A pair on 1 thread each takes one baseline wall; two lone 2-thread runs back to back take two.
        print(f"{model:<9} {name:<42} {lone['wall_s']:7.1f} {lone['first_step_s']:10.1f} {base['wall_s']:8.1f} "
              f"{base['wall_s'] / (2 * lone['wall_s']):6.2f}  (pair: 2 x {lone['wall_s']:.1f} s in turn)", flush=True)


if __name__ == "__main__":
    main()
