"""Shattered gradients of 8 nets (plain and residual, depths 8, 20, 56, 110; 256 points) against the baselines a
user would write (issue 14 target: <= 20 s on 2 cores).

    flock /tmp/cpu-bench.lock .venv/bin/python -m benchmarks.bench_shattering [--threads 2] [--seed 0] [--repeats 3]

Every way builds the same seeded nets and line and normalises with the same line statistics (`line_statistics`):

- ours: `shattering()`, the library call: statistics pass, then backward passes of 64 points with the weights
  frozen (no weight gradients);
- one backward per point: the loop a user writes first, one input of batch 1 at a time, `x.grad · v`;
- one batched backward: all 256 points in one pass, weights left trainable (their gradients computed too).

Each baseline's largest difference from our gradients is printed per net, with both lag-1 autocorrelations. The
residual nets' gradients agree to rounding; a deep plain net's do not: its gradient changes completely within
float32 rounding of the input (docs/EXPERIMENTS.md, "Shattered gradients"), so rounding that differs between a batch and a
single image draws another sample of the same white noise. Also times the CLI end to end (`python -m
resnet_core shattering --json`, a fresh process: imports included). Times are medians of --repeats runs after a
warm-up; the per-point baseline runs once (it is the slow one).

    flock /tmp/cpu-bench.lock .venv/bin/python -m benchmarks.bench_shattering --variants --seeds 0 1 2 3 4

prints instead each net's lag-1 autocorrelation under the choices the issue leaves open, beside ours: float64
instead of float32, BN with its initial statistics (the identity: no normalisation at all), a line twice as
long (t in [-2, 2]), and BN in training mode with the gradient through the batch's statistics (one backward
pass per point through the whole batch: only for --coupled-depths, it is slow).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from resnet_core.explain.shattering import (OUTPUT, Line, autocorrelation, init_model, line_gradient,  # noqa: E402
                                            line_statistics, make_line, shattering)

DEPTHS = (8, 20, 56, 110)
POINTS = 256
TARGET_S = 20.0


def one_backward_per_point(model, line) -> torch.Tensor:
    gradients = []
    for position in line.positions:
        point = (line.origin + position * line.direction).requires_grad_()  # (1, C, H, W)
        model(point)[0, OUTPUT].backward()
        gradients.append(float((point.grad * line.direction).sum()))
    return torch.tensor(gradients, dtype=torch.float64)


def one_batched_backward(model, line) -> torch.Tensor:
    inputs = line.inputs().requires_grad_()  # (P, C, H, W)
    model(inputs)[:, OUTPUT].sum().backward()
    return (inputs.grad * line.direction).sum(dim=(1, 2, 3)).double()


def baseline(way: Callable, seed: int) -> tuple[float, dict[str, torch.Tensor]]:
    """Seconds for all 8 nets (building them and their statistics included) and each net's gradients."""
    line = make_line(POINTS, seed)
    start = time.perf_counter()
    gradients = {}
    for depth in DEPTHS:
        for residual in (False, True):
            model = init_model(depth, residual, seed)
            with line_statistics(model, line.inputs()):
                gradients[model.spec.name] = way(model, line)
    return time.perf_counter() - start, gradients


def ours(seed: int) -> tuple[float, dict[str, torch.Tensor]]:
    start = time.perf_counter()
    points = shattering(DEPTHS, points=POINTS, seed=seed)
    seconds = time.perf_counter() - start
    return seconds, {point.model: torch.tensor(point.gradients, dtype=torch.float64) for point in points}


def cli_seconds() -> float:
    """The CLI uses every core (`set_cpu_threads`), whatever --threads says."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "resnet_core", "shattering", "--depths", ",".join(map(str, DEPTHS)),
                    "--json"], cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - start


def differences(reference: dict[str, torch.Tensor], other: dict[str, torch.Tensor]) -> str:
    """Per net: the largest difference (a fraction of our largest gradient) and the lag-1 autocorrelations."""
    return "\n".join(f"    {name:<10} difference {float((other[name] - g).abs().max() / g.abs().max()):7.1e}, lag 1 "
                     f"{autocorrelation(g)[1]:6.3f} ours, {autocorrelation(other[name])[1]:6.3f} this way"
                     for name, g in reference.items())


def with_line_statistics(model, line) -> torch.Tensor:
    with line_statistics(model, line.inputs()):
        return line_gradient(model, line)


def with_initial_statistics(model, line) -> torch.Tensor:
    return line_gradient(model, line)


def on_a_longer_line(model, line) -> torch.Tensor:
    return with_line_statistics(model, Line(2 * line.positions, line.origin, line.direction))


def with_batch_coupling(model, line) -> torch.Tensor:
    """d f(x_i) / dt_i with BN in training mode: x_i's output depends on every input through the batch's
    statistics, so each point needs its own backward pass (through the whole batch's graph)."""
    model.train().requires_grad_(False)
    positions = line.positions.clone().requires_grad_()
    outputs = model(line.origin + positions[:, None, None, None] * line.direction)[:, OUTPUT]  # (P,)
    return torch.stack([torch.autograd.grad(output, positions, retain_graph=True)[0][index]
                        for index, output in enumerate(outputs)]).double()


def in_float64(model, line) -> torch.Tensor:
    return with_line_statistics(model.double(), Line(*(tensor.double() for tensor in
                                                        (line.positions, line.origin, line.direction))))


VARIANTS = {"ours": with_line_statistics, "float64": in_float64, "initial BN statistics": with_initial_statistics,
            "t in [-2, 2]": on_a_longer_line, "training-mode BN, coupled": with_batch_coupling}


def print_variants(seeds: list[int], coupled_depths: list[int]) -> None:
    print("| seed | net | " + " | ".join(VARIANTS) + " |")
    print("|---|---|" + "---:|" * len(VARIANTS))
    for seed in seeds:
        line = make_line(POINTS, seed)
        for depth in DEPTHS:
            for residual in (False, True):
                cells = []
                for way in VARIANTS.values():
                    if way is with_batch_coupling and depth not in coupled_depths:
                        cells.append("")
                        continue
                    model = init_model(depth, residual, seed)
                    cells.append(f"{autocorrelation(way(model, line))[1]:.3f}")
                name = f"{'resnet' if residual else 'plain'}{depth}"
                print(f"| {seed} | {name} | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", action="store_true", help="lag-1 autocorrelations under other choices")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="with --variants")
    parser.add_argument("--coupled-depths", type=int, nargs="*", default=[8, 20], help="with --variants")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.variants:
        print_variants(args.seeds, args.coupled_depths)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, seed {args.seed}, {POINTS} points, "
          f"depths {DEPTHS}; load average {os.getloadavg()[0]:.1f} (other people's work on these cores)")
    first, _ = ours(args.seed)  # warm-up: oneDNN creates its kernels for each shape on first use
    runs = [ours(args.seed) for _ in range(args.repeats)]
    fast, reference = statistics.median(seconds for seconds, _ in runs), runs[0][1]
    print(f"ours (shattering()):           {fast:6.2f} s  (runs {', '.join(f'{s:.2f}' for s, _ in runs)}; "
          f"first call {first:.2f})")
    batched_runs = [baseline(one_batched_backward, args.seed) for _ in range(args.repeats)]
    batched = statistics.median(seconds for seconds, _ in batched_runs)
    print(f"one batched backward:          {batched:6.2f} s  = {batched / fast:.1f}x ours\n"
          f"{differences(reference, batched_runs[0][1])}")
    naive, gradients = baseline(one_backward_per_point, args.seed)
    print(f"one backward per point:        {naive:6.2f} s  = {naive / fast:.1f}x ours\n"
          f"{differences(reference, gradients)}")
    cli = cli_seconds()
    print(f"CLI end to end (fresh process): {cli:5.2f} s; load average {os.getloadavg()[0]:.1f}")
    verdict = "meets" if fast <= TARGET_S and cli <= TARGET_S else "MISSES"
    print(f"8 nets: ours {fast:.2f} s, CLI {cli:.2f} s: {verdict} the {TARGET_S:.0f} s target; "
          f"{naive / fast:.0f}x faster than one backward per point")


if __name__ == "__main__":
    main()
