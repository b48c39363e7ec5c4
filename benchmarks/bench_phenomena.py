"""Does the demo show what the paper shows, and from which length on? Each preset's nets on real CIFAR-10 images.

    .venv/bin/python -m benchmarks.bench_phenomena [--seeds 0 1 2] [--lengths 150 200 300 450] [--presets all]
        [--normalization per-pixel] [--json results.json]

For each seed and length, trains every net the chosen presets need with `python -m resnet_core train --model M
--data FOLDER --iterations N --seed S --threads 1` (no recipe flag: the short-run rule the Train page's Start
uses), two runs at a time on one thread each, as a workshop pair trains (the longest first). Every net is trained
once per seed and length and the presets are read off those runs (training is deterministic for a net, seed and
recipe); a preset's wall time is the longer of its nets', each measured beside another run. Prints a row per run
and, per preset, length and seed, whether its effect (`resnet_core.presets`: e.g. Fig. 1, plain-56's final smoothed
training error at least 0.05 above plain-20's) showed, then the shortest length at which it showed in every seed —
the preset's `minimum_iterations`.

With --json FILE the results are written after every run and a run already in FILE is not trained again, so an
interrupted benchmark continues where it stopped.

Needs ../shared/data/cifar10-jpeg.tar.gz (extracted once into data/bench-cifar10, git-ignored); skips without it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_training import HOME, extracted  # noqa: E402
from resnet_core.nets.specs import get_spec  # noqa: E402
from resnet_core.presets import PRESETS  # noqa: E402
from resnet_core.runs.store import Store  # noqa: E402
from resnet_core.training.data import load_data  # noqa: E402
from resnet_core.training.recipe import NORMALIZATIONS, Recipe  # noqa: E402

SLOTS = 2  # runs at once, one thread each: a workshop pair on a 2-core server


@dataclass
class Result:
    model: str
    seed: int
    iterations: int
    train_error: float  # the last smoothed training error, as the page's thin curve ends
    test_error: float
    wall_s: float  # from start to exit of its process, beside another run
    recipe: str
    train_error_every_50: list[float]  # the curve's shape: were the two nets level all along, or did one pull away?


def train_all(jobs: list[tuple[str, int, int]], folder: Path, home: Path, normalization: str | None,
              done: callable) -> None:
    """Train every (model, seed, iterations) job, SLOTS at a time, the slowest first; `done(result)` after each."""
    jobs = sorted(jobs, key=lambda job: -get_spec(job[0]).depth * job[2])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RESNET_EXPLORER_HOME": str(home)}
    running: dict[subprocess.Popen, tuple[tuple[str, int, int], float, Path]] = {}
    while jobs or running:
        while jobs and len(running) < SLOTS:
            model, seed, iterations = job = jobs.pop(0)
            log = home / f"{model}-{seed}-{iterations}.log"
            process = subprocess.Popen(
                [sys.executable, "-m", "resnet_core", "train", "--model", model, "--data", str(folder),
                 "--iterations", str(iterations), "--seed", str(seed), "--threads", "1", "--quiet",
                 "--name", f"{model} seed {seed} {iterations} it",
                 *(["--normalization", normalization] if normalization else [])],
                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log.open("w"), text=True)
            running[process] = (job, time.perf_counter(), log)
        for process in [process for process in running if process.poll() is not None]:
            (model, seed, iterations), started, log = running.pop(process)
            wall = time.perf_counter() - started
            output = process.stdout.read().split()
            if process.returncode or not output:
                lines = log.read_text().strip().splitlines()
                raise SystemExit(f"{model} seed {seed} failed (exit {process.returncode}): {lines[-1] if lines else ''}")
            done(_result(Store(home), int(output[-1]), model, seed, iterations, wall))  # the CLI prints the id last
        time.sleep(0.2)


def _result(store: Store, run_id: int, model: str, seed: int, iterations: int, wall: float) -> Result:
    run = store.run(run_id)
    train = store.metrics(run.id, "train")
    test = store.metrics(run.id, "test")[-1]
    return Result(model, seed, iterations, train[-1]["smoothed_error"], test["error"], wall,
                  Recipe.from_dict(run.recipe).describe(),
                  [row["smoothed_error"] for row in train if row["iteration"] % 50 == 0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lengths", type=int, nargs="+", default=[450], help="iterations per run (default 450)")
    parser.add_argument("--presets", nargs="+", default=["all"], metavar="LABEL",
                        help="preset labels, or all (default)")
    parser.add_argument("--json", type=Path, help="write the results to this file, and skip runs already in it")
    parser.add_argument("--normalization", choices=NORMALIZATIONS,
                        help="the runs' input normalisation (default: the short-run recipe's, per channel)")
    args = parser.parse_args()
    presets = PRESETS if args.presets == ["all"] else [p for p in PRESETS if p.label in args.presets]
    if len(presets) != (len(PRESETS) if args.presets == ["all"] else len(args.presets)):
        raise SystemExit(f"unknown preset among {args.presets}; allowed: {', '.join(p.label for p in PRESETS)}")
    folder = extracted()
    if folder is None:
        print("skipped: ../shared/data/cifar10-jpeg.tar.gz is absent (see ../shared/data/README.md)")
        return
    load_data(str(folder), home=HOME)  # decoded once into the shared cache, so no run pays for it
    home = Path(tempfile.mkdtemp(prefix="phenomena-"))
    (home / "cache").symlink_to(HOME / "cache")
    # Created here, not by two runs at once: once, one of two runs started together on a fresh folder exited with
    # status 2 before training (cause not found, not reproduced); the store's creation is the step they shared.
    Store(home)
    results: dict[tuple[str, int, int], Result] = {}
    if args.json and args.json.exists():
        for row in json.loads(args.json.read_text()):
            results[row["model"], row["seed"], row["iterations"]] = Result(**row)
    nets = sorted({net for preset in presets for net in preset.nets})
    jobs = [(net, seed, length) for length in args.lengths for seed in args.seeds for net in nets
            if (net, seed, length) not in results]
    print(f"{len(jobs)} runs to train ({len(results)} already in {args.json}), {SLOTS} at a time, 1 thread each, "
          f"CIFAR-10 JPEG copy at {folder}")
    print(f"{'net':<9} {'seed':>4} {'length':>6} {'train err':>9} {'test err':>8} {'wall s':>7}")

    def done(result: Result) -> None:
        results[result.model, result.seed, result.iterations] = result
        print(f"{result.model:<9} {result.seed:>4} {result.iterations:>6} {result.train_error:9.3f} "
              f"{result.test_error:8.3f} {result.wall_s:7.1f}", flush=True)
        if args.json:
            args.json.write_text(json.dumps([asdict(r) for r in results.values()], indent=1))

    train_all(jobs, folder, home, args.normalization, done)
    print()
    all_shown = True
    for preset in presets:
        shortest = None
        for length in sorted(args.lengths, reverse=True):
            shown_here = True
            for seed in args.seeds:
                errors = {net: results[net, seed, length].train_error for net in preset.nets}
                gap, shown = preset.effect.gap(errors), preset.effect.shown(errors)
                shown_here &= shown
                wall = max(results[net, seed, length].wall_s for net in preset.nets)
                print(f"{preset.label:<34} {length:>4} it. seed {seed}: {preset.effect.describe()}: {gap:+.3f} "
                      f"{'shown' if shown else 'NOT shown'}; wall {wall:.0f} s")
            if not shown_here:
                break
            shortest = length
        all_shown &= shortest is not None
        print(f"{preset.label}: shortest length shown in every seed: {shortest or 'none of ' + str(args.lengths)}\n")
    print(f"every effect in every seed at some length: {'yes' if all_shown else 'no'}")


if __name__ == "__main__":
    main()
