"""Loss-landscape timings for docs/BENCHMARKS.md (issue 14): a 1-D slice of 41 points on 1,000 training
images of ResNet-56 (target ≤ 45 s on 2 CPU cores) against the naive loop a user would write, and where the time goes.

    flock /tmp/cpu-bench.lock .venv/bin/python benchmarks/bench_landscape.py \\
        --data /work/main/data/bench-cifar10 --home /work/main/data/bench-home

The naive loop deep-copies the model for every point, moves its weights, and evaluates one image at a time. Every
point costs it the same, so it runs on every `--naive-every`-th point of the slice and its total is that time per
point × the points; `--naive-every 1` runs it all. At its points its losses are checked against ours.
"""
import argparse
import copy
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from resnet_core.explain.landscape import (BATCH_SIZE, _folded_copy, _loss_and_error, loss_landscape,
                                           random_directions, training_subset)
from resnet_core.explain.trained import trained_with_data
from resnet_core.training.device import set_cpu_threads

REPO = Path(__file__).resolve().parents[1]


def naive_point(model, direction, alpha, inputs, labels) -> tuple[float, float, float]:
    """(seconds, loss, error) of one point as a user would write it, on the same normalised images as ours."""
    start = time.perf_counter()
    moved = copy.deepcopy(model)
    with torch.no_grad():
        for name, weight in moved.named_parameters():
            weight.add_(alpha * direction[name])
        moved.eval()
        losses, wrong = [], 0
        for image, label in zip(inputs, labels):
            logits = moved(image[None])  # (1, classes)
            losses.append(F.cross_entropy(logits, label[None]).item())
            wrong += int(logits.argmax(-1).item() != label.item())
    return time.perf_counter() - start, sum(losses) / len(losses), wrong / len(labels)


def seconds_per_pass(net, inputs, labels) -> float:
    _loss_and_error(net, inputs[:BATCH_SIZE], labels[:BATCH_SIZE])  # warm-up: oneDNN builds its kernels
    times = []
    for _ in range(3):
        start = time.perf_counter()
        _loss_and_error(net, inputs, labels)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="reference:resnet56")
    parser.add_argument("--data", required=True, metavar="SOURCE")
    parser.add_argument("--home", metavar="DIR")
    parser.add_argument("--points", type=int, default=41)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--naive-every", type=int, default=10, metavar="K")
    parser.add_argument("--no-cli", action="store_true", help="skip timing the whole command")
    args = parser.parse_args()
    threads = set_cpu_threads()
    start = time.perf_counter()
    model, data = trained_with_data(args.model, args.data, args.home)
    # The lock keeps other benchmarks out, not other people's tests: the load says how quiet the machine was.
    print(f"{model.spec.name}, {args.images} training images of {data.name}, {threads} threads, load average "
          f"{os.getloadavg()[0]:.1f}; model and data loaded in {time.perf_counter() - start:.1f} s")

    start = time.perf_counter()
    fast = loss_landscape(model, data, dims=1, points=args.points, images=args.images, seed=0)
    fast_s = time.perf_counter() - start
    print(f"loss_landscape, {args.points} points: {fast_s:.1f} s ({fast_s / args.points:.2f} s per point)")

    (direction,) = random_directions(model, 1, seed=0)
    inputs, labels = training_subset(model, data, args.images, seed=0)
    naive_s, gaps = [], []
    for index in range(0, args.points, args.naive_every):
        alpha = fast.alphas[index]
        seconds, loss, error = naive_point(model, direction, alpha, inputs.contiguous(), labels)
        naive_s.append(seconds)
        gaps.append(abs(loss - fast.loss[index]))
        print(f"  naive point α={alpha:+.2f}: {seconds:.1f} s, loss {loss:.5f} (ours {fast.loss[index]:.5f}), "
              f"error {error:.3f} (ours {fast.error[index]:.3f})")
    naive_total = statistics.mean(naive_s) * args.points
    print(f"naive, {len(naive_s)} of {args.points} points run: {statistics.mean(naive_s):.1f} s per point, "
          f"{naive_total:.0f} s for the slice; ours is {naive_total / fast_s:.1f}× faster; "
          f"largest loss difference {max(gaps):.1e}")

    # Where the time goes: one pass over the subset at the trained weights, each step added in turn.
    contiguous = copy.deepcopy(model).eval()
    print(f"one pass over {args.images} images: batches of {BATCH_SIZE}, contiguous "
          f"{seconds_per_pass(contiguous, inputs.contiguous(), labels):.2f} s; channels-last "
          f"{seconds_per_pass(contiguous.to(memory_format=torch.channels_last), inputs, labels):.2f} s; "
          f"+ BN folded, ReLUs in place {seconds_per_pass(_folded_copy(model)[0], inputs, labels):.2f} s")

    if not args.no_cli:
        command = [sys.executable, "-m", "resnet_core", "landscape", args.model, "--data", args.data,
                   "--points", str(args.points), "--images", str(args.images), "--json"]
        command += ["--home", args.home] if args.home else []
        start = time.perf_counter()
        subprocess.run(command, cwd=REPO, check=True, capture_output=True)
        print(f"the whole command (python start, imports, loading, slice): {time.perf_counter() - start:.1f} s")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
