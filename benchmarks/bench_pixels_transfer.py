"""Does a residual backbone transfer to pixels better than a plain one, and does pretraining matter? The same FCN head
trained on the same scenes of real CIFAR-10 images over four backbones: ResNet-56 and plain-56, each from the
shipped reference weights and from scratch.

    .venv/bin/python -m benchmarks.bench_pixels_transfer [--seeds 0 1 2] [--iterations 300] [--freeze]
        [--scenes 10000] [--test-scenes 2000] [--data FOLDER] [--json results.json]

Each (backbone, seed) is one `python -m resnet_core segment train --backbone B --scenes-from FOLDER --iterations N
--seed S --threads 1` (`reference:resnet56`, `reference:plain56`, `random:resnet56`, `random:plain56`; with
--freeze the backbones are frozen and only the head learns: from scratch that is a head on random features), two
runs at a time on one thread each. Every run sees the same scenes (`--scenes-seed 0`); the seed
picks the head's start, a scratch backbone's weights, the batch order and the flips. Each run tests once, at its
end, on every test scene. Prints a row per run, then per seed the final mIoU of each backbone and the differences
residual − plain (pretrained and from scratch) and pretrained − scratch (residual and plain), and their means over
the seeds.

With --json FILE the results are written after every run and a run already in FILE (same backbone, freezing, seed,
length and scene counts) is not trained again, so an interrupted benchmark continues where it stopped.

Needs ../shared/data/cifar10-jpeg.tar.gz (extracted once into data/bench-cifar10, git-ignored) unless --data names
a folder of CIFAR-10's layout; skips without it.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_training import HOME, extracted  # noqa: E402
from resnet_core.runs.store import Store  # noqa: E402
from resnet_core.training.data import load_data  # noqa: E402

SLOTS = 2  # runs at once, one thread each, as on a 2-core server
NETS = ("resnet56", "plain56")  # residual first: differences are residual − plain
STARTS = ("reference", "random")  # the shipped weights, then He's initialisation: differences are pretrained − scratch


@dataclass
class Result:
    backbone: str  # as --backbone takes it
    freeze: bool
    seed: int
    iterations: int
    scenes: int
    test_scenes: int
    miou: float  # at the run's end, over every test scene
    pixel_accuracy: float
    wall_s: float  # from start to exit of its process, beside another run

    @property
    def key(self) -> tuple:
        return self.backbone, self.freeze, self.seed, self.iterations, self.scenes, self.test_scenes


def train_all(jobs: list[tuple[str, int]], args: argparse.Namespace, folder: Path, home: Path, done) -> None:
    """Train every (backbone, seed) job, SLOTS at a time (all cost about the same: 56 layers each); `done(result)`
    after each."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RESNET_EXPLORER_HOME": str(home)}
    running: dict[subprocess.Popen, tuple[str, int, float, Path]] = {}
    jobs = list(jobs)
    while jobs or running:
        while jobs and len(running) < SLOTS:
            backbone, seed = jobs.pop(0)
            log = home / f"{backbone.replace(':', '-')}-{seed}.log"
            process = subprocess.Popen(
                [sys.executable, "-m", "resnet_core", "segment", "train", "--backbone", backbone,
                 "--scenes-from", str(folder), "--iterations", str(args.iterations), "--seed", str(seed),
                 "--scenes", str(args.scenes), "--test-scenes", str(args.test_scenes), "--scenes-seed", "0",
                 "--eval-every", str(args.iterations), "--threads", "1", "--quiet",
                 *(["--freeze"] if args.freeze else [])],
                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log.open("w"), text=True)
            running[process] = (backbone, seed, time.perf_counter(), log)
        for process in [process for process in running if process.poll() is not None]:
            backbone, seed, started, log = running.pop(process)
            wall = time.perf_counter() - started
            output = process.stdout.read().split()
            if process.returncode or not output:
                lines = log.read_text().strip().splitlines()
                raise SystemExit(f"{backbone} seed {seed} failed (exit {process.returncode}): "
                                 f"{lines[-1] if lines else ''}")
            test = Store(home).metrics(int(output[-1]), "test")[-1]  # the CLI prints the run id last
            done(Result(backbone, args.freeze, seed, args.iterations, args.scenes, args.test_scenes, test["miou"],
                        1 - test["error"], wall))
        time.sleep(0.2)


def report(results: dict[tuple, Result], args: argparse.Namespace) -> None:
    def miou(backbone: str, seed: int) -> float:
        return results[backbone, args.freeze, seed, args.iterations, args.scenes, args.test_scenes].miou

    mode = "frozen backbones (the head alone)" if args.freeze else "fine-tuned backbones"
    print(f"\nfinal mIoU, {mode}, {args.iterations} iterations, {args.scenes:,} scenes, {args.test_scenes:,} test "
          "scenes")
    backbones = [f"{start}:{net}" for net in NETS for start in STARTS]
    print(f"{'seed':>4}" + "".join(f"{backbone:>19}" for backbone in backbones))
    for seed in args.seeds:
        print(f"{seed:>4}" + "".join(f"{miou(backbone, seed):19.4f}" for backbone in backbones))
    # (label, minuend, subtrahend): the residual net's gain over its plain twin, and pretraining's over scratch.
    differences = [*((f"residual − plain, {start}", f"{start}:{NETS[0]}", f"{start}:{NETS[1]}") for start in STARTS),
                   *((f"pretrained − scratch, {net}", f"{STARTS[0]}:{net}", f"{STARTS[1]}:{net}") for net in NETS)]
    print(f"\n{'difference in mIoU':<32}" + "".join(f"{'seed ' + str(seed):>9}" for seed in args.seeds)
          + f"{'mean':>9}")
    for label, minuend, subtrahend in differences:
        values = [miou(minuend, seed) - miou(subtrahend, seed) for seed in args.seeds]
        print(f"{label:<32}" + "".join(f"{value:+9.4f}" for value in values) + f"{statistics.mean(values):+9.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=300, help="iterations per run (default 300)")
    parser.add_argument("--freeze", action="store_true", help="train the head alone on frozen backbones")
    parser.add_argument("--scenes", type=int, default=10_000, help="training scenes (default 10,000)")
    parser.add_argument("--test-scenes", type=int, default=2_000, help="test scenes (default 2,000)")
    parser.add_argument("--data", type=Path, help="a folder of CIFAR-10's layout (default: the JPEG copy)")
    parser.add_argument("--json", type=Path, help="write the results to this file, and skip runs already in it")
    args = parser.parse_args()
    folder = args.data or extracted()
    if folder is None:
        print("skipped: ../shared/data/cifar10-jpeg.tar.gz is absent (see ../shared/data/README.md)")
        return
    load_data(str(folder), home=HOME)  # decoded once into the shared cache, so no run pays for it
    home = Path(tempfile.mkdtemp(prefix="pixels-transfer-"))
    (home / "cache").symlink_to(HOME / "cache")
    Store(home)  # created here, not by two runs at once (bench_phenomena says why)
    results: dict[tuple, Result] = {}
    if args.json and args.json.exists():
        for row in json.loads(args.json.read_text()):
            result = Result(**row)
            results[result.key] = result
    jobs = [(f"{start}:{net}", seed) for start in STARTS for net in NETS for seed in args.seeds
            if (f"{start}:{net}", args.freeze, seed, args.iterations, args.scenes, args.test_scenes) not in results]
    print(f"{len(jobs)} runs to train ({len(results)} already in {args.json}), {SLOTS} at a time, 1 thread each, "
          f"scenes of {folder}")
    print(f"{'backbone':<18} {'frozen':>6} {'seed':>4} {'mIoU':>7} {'pixel acc':>9} {'wall s':>7}")

    def done(result: Result) -> None:
        results[result.key] = result
        print(f"{result.backbone:<18} {'yes' if result.freeze else 'no':>6} {result.seed:>4} {result.miou:7.4f} "
              f"{result.pixel_accuracy:9.4f} {result.wall_s:7.1f}", flush=True)
        if args.json:
            args.json.write_text(json.dumps([asdict(r) for r in results.values()], indent=1))

    train_all(jobs, args, folder, home, done)
    report(results, args)


if __name__ == "__main__":
    main()
