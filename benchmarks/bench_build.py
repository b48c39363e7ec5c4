"""Time to build a net and its full layer table (issue 2 target: ResNet-1202 in <= 2 s on 2 cores).

Baseline in the same run: ResNet-20, the net a workshop opens first. Medians of --repeats runs.

    .venv/bin/python -m benchmarks.bench_build [--repeats 5]
"""
import argparse
import statistics
import time

import torch

import resnet_core as rc


def seconds_to_build_and_tabulate(name: str) -> tuple[float, float]:
    start = time.perf_counter()
    model = rc.build_model(name)
    built = time.perf_counter()
    rc.stage_table(model, rc.layer_table(model))
    return built - start, time.perf_counter() - built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    totals = {}
    for name in ("resnet20", "resnet1202", "resnet152"):
        seconds_to_build_and_tabulate(name)  # warm-up: first-call costs of torch and torchinfo
        runs = [seconds_to_build_and_tabulate(name) for _ in range(args.repeats)]
        build = statistics.median(r[0] for r in runs)
        table = statistics.median(r[1] for r in runs)
        totals[name] = build + table
        print(f"{name:>11}: build {build:.3f} s + layer table {table:.3f} s = {build + table:.3f} s")
    ratio = totals["resnet1202"] / totals["resnet20"]
    verdict = "meets" if totals["resnet1202"] <= 2.0 else "MISSES"
    print(f"resnet1202 / resnet20 = {ratio:.1f}x; resnet1202 {verdict} the 2 s target")


if __name__ == "__main__":
    main()
