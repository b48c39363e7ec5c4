"""Does the Train page show what the paper shows? Each preset's pair at its default length, on real CIFAR-10 images.

    .venv/bin/python -m benchmarks.bench_phenomena [--seeds 0 1 2] [--iterations N] [--normalization per-pixel]

Trains plain-20, ResNet-20, plain-56 and ResNet-56 for each seed with `python -m resnet_core train --model M
--data FOLDER --iterations N --seed S --threads 1` (no recipe flag: the short-run rule the Train page's Start
uses), two runs at a time on one thread each, as a workshop pair trains. Every net is trained once per seed and
the three presets are read off those runs (training is deterministic for a net, seed and recipe); a preset's
wall time is the longer of its two nets', each measured beside another run. Prints a row per run and, per
preset and seed, whether its effect showed:

- Fig. 1 (degradation): plain-56's final smoothed training error above plain-20's by at least 0.05;
- Shortcuts (the cure): ResNet-56's below plain-56's by at least 0.10;
- Fig. 6 (deeper is better once residual): ResNet-56's not above ResNet-20's by more than 0.02.

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
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_training import HOME, extracted  # noqa: E402
from explorer.training.presets import PRESETS  # noqa: E402
from resnet_core.runs.store import Store  # noqa: E402
from resnet_core.training.data import load_data  # noqa: E402
from resnet_core.training.recipe import NORMALIZATIONS, Recipe  # noqa: E402

PAIRS = (("plain56", "resnet56"), ("plain20", "resnet20"))  # trained together: similar speeds share the cores
# preset label -> (the net that must be worse, the net that must be better, the least margin; negative: a tolerance)
TARGETS = {"Fig. 1: plain-20 vs plain-56": ("plain56", "plain20", 0.05),
           "Shortcuts: plain-56 vs ResNet-56": ("plain56", "resnet56", 0.10),
           "Fig. 6: ResNet-20 vs ResNet-56": ("resnet20", "resnet56", -0.02)}


@dataclass
class Result:
    model: str
    seed: int
    train_error: float  # the last smoothed training error, as the page's thin curve ends
    test_error: float
    wall_s: float
    recipe: str
    train_error_every_50: list[float]  # the curve's shape: were the two nets level all along, or did one pull away?


def train_pair(models: tuple[str, str], seed: int, iterations: int, folder: Path, home: Path,
               normalization: str | None = None) -> list[Result]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RESNET_EXPLORER_HOME": str(home)}
    started = time.perf_counter()
    processes = {model: subprocess.Popen(
        [sys.executable, "-m", "resnet_core", "train", "--model", model, "--data", str(folder), "--iterations",
         str(iterations), "--seed", str(seed), "--threads", "1", "--name", f"{model} seed {seed}",
         *(["--normalization", normalization] if normalization else [])],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=(home / f"{model}-{seed}.log").open("w"), text=True)
        for model in models}
    walls = {}
    while len(walls) < len(processes):
        for model, process in processes.items():
            if model not in walls and process.poll() is not None:
                walls[model] = time.perf_counter() - started
        time.sleep(0.2)
    store = Store(home)
    results = []
    for model, process in processes.items():
        output = process.stdout.read().split()
        if process.returncode or not output:
            log = (home / f"{model}-{seed}.log").read_text().strip().splitlines()
            raise SystemExit(f"{model} seed {seed} failed (exit {process.returncode}): {log[-1] if log else ''}")
        run = store.run(int(output[-1]))  # the CLI prints the run id last
        train = store.metrics(run.id, "train")
        test = store.metrics(run.id, "test")[-1]
        results.append(Result(model, seed, train[-1]["smoothed_error"], test["error"], walls[model],
                              Recipe.from_dict(run.recipe).describe(),
                              [row["smoothed_error"] for row in train if row["iteration"] % 50 == 0]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, help="override the presets' length (default: theirs)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--normalization", choices=NORMALIZATIONS,
                        help="the runs' input normalisation (default: the short-run recipe's, per channel)")
    args = parser.parse_args()
    folder = extracted()
    if folder is None:
        print("skipped: ../shared/data/cifar10-jpeg.tar.gz is absent (see ../shared/data/README.md)")
        return
    lengths = {next(p for p in PRESETS if p.label == label).iterations for label in TARGETS}
    if args.iterations is None and len(lengths) != 1:
        raise SystemExit(f"the presets have different lengths {sorted(lengths)}; pass --iterations")
    iterations = args.iterations or lengths.pop()
    load_data(str(folder), home=HOME)  # decoded once into the shared cache, so no run pays for it
    home = Path(tempfile.mkdtemp(prefix="phenomena-"))
    (home / "cache").symlink_to(HOME / "cache")
    # Created here, not by two runs at once: once, one of two runs started together on a fresh folder exited with
    # status 2 before training (cause not found, not reproduced); the store's creation is the step they shared.
    Store(home).close()
    print(f"{iterations} iterations of 128 per run, 2 runs at a time, 1 thread each, CIFAR-10 JPEG copy at {folder}")
    results: dict[tuple[str, int], Result] = {}
    print(f"{'net':<9} {'seed':>4} {'train err':>9} {'test err':>8} {'wall s':>7}")
    for seed in args.seeds:
        for pair in PAIRS:
            for result in train_pair(pair, seed, iterations, folder, home, args.normalization):
                results[result.model, seed] = result
                print(f"{result.model:<9} {seed:>4} {result.train_error:9.3f} {result.test_error:8.3f} "
                      f"{result.wall_s:7.1f}", flush=True)
    print(f"recipe: {next(iter(results.values())).recipe}")
    print()
    all_shown = True
    for label, (worse, better, margin) in TARGETS.items():
        for seed in args.seeds:
            gap = results[worse, seed].train_error - results[better, seed].train_error
            shown = gap >= margin
            all_shown &= shown
            wall = max(results[worse, seed].wall_s, results[better, seed].wall_s)
            print(f"{label:<34} seed {seed}: {worse} - {better} = {gap:+.3f} (target ≥ "
                  f"{margin:+.2f}) {'shown' if shown else 'NOT shown'}; pair wall {wall:.0f} s")
    print(f"\nevery effect in every seed: {'yes' if all_shown else 'no'}")
    if args.json:
        args.json.write_text(json.dumps([vars(result) for result in results.values()], indent=2))


if __name__ == "__main__":
    main()
