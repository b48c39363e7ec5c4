"""Lesion study (issue 14): its speed against the loop a user would write, and its results on the reference nets.

    flock /tmp/cpu-bench.lock .venv/bin/python -m benchmarks.bench_lesion speed [--images 1000] [--threads 2]
    flock /tmp/cpu-bench.lock .venv/bin/python -m benchmarks.bench_lesion study --seeds 0 1 2 --random-k 20 --draws 10

`speed` deletes every block of ResNet-56 in turn on `--images` test images three ways and checks they agree:
`lesion_study`; "copies, batched" (a deep copy per deletion with the block swapped for its skip path, batches of
250, channels-last, as a careful user would); and "naive" (the same copies, one image at a time in NCHW, as the
issue's baseline). `study` runs `lesion_study` on plain-56 and ResNet-56 for each seed and prints one row per net and
seed (baseline, median and max single-block error, error at each k) plus the raw results as JSON lines.

Needs the CIFAR-10 JPEG copy extracted as an image folder (default data/bench-cifar10; see bench_training).
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from resnet_core.explain.lesion import BATCH_SIZE, LesionStudy, lesion_sites, lesion_study  # noqa: E402
from resnet_core.explain.trained import test_pipeline, trained_with_data  # noqa: E402

NETS = ("reference:plain56", "reference:resnet56")


def lesioned_copy(model, block: str | None):
    """A deep copy of `model` with `block` (`layer2.3`) replaced by its skip path, or intact for None."""
    net = copy.deepcopy(model).eval()
    if block is not None:
        stage, _, index = block.partition(".")
        getattr(net, stage)[int(index)] = next(site.skip for site in lesion_sites(net) if site.name == block)
    return net


def copies_batched(model, images: torch.Tensor, labels: torch.Tensor, pipeline, blocks: list[str]) -> list[float]:
    errors = []
    for block in [None, *blocks]:
        net = lesioned_copy(model, block).to(memory_format=torch.channels_last)
        wrong = 0
        with torch.inference_mode():
            for chunk, chunk_labels in zip(images.split(BATCH_SIZE), labels.split(BATCH_SIZE)):
                logits = net(pipeline.test_batch(chunk).contiguous(memory_format=torch.channels_last))
                wrong += int((logits.argmax(-1) != chunk_labels).sum())
        errors.append(wrong / len(labels))
    return errors


def naive(model, images: torch.Tensor, labels: torch.Tensor, pipeline, blocks: list[str]) -> list[float]:
    errors = []
    for block in [None, *blocks]:
        net = lesioned_copy(model, block)
        with torch.no_grad():
            wrong = sum(int(net(pipeline.test_batch(image[None])).argmax()) != int(label)
                        for image, label in zip(images, labels))
        errors.append(wrong / len(labels))
    return errors


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def speed(args: argparse.Namespace) -> None:
    model, data = trained_with_data("reference:resnet56", args.data, args.home)
    blocks = [site.name for site in lesion_sites(model)]
    study_times = []
    for _ in range(args.repeats):
        study, seconds = timed(lambda: lesion_study(model, data, images=args.images, seed=args.seed))
        study_times.append(seconds)
    ours = [study.baseline_error, *(block.error for block in study.blocks)]
    # The same images as the study (seeded permutation), so every method must give the same errors.
    chosen = torch.randperm(len(data.test_labels), generator=torch.Generator().manual_seed(args.seed))[:args.images]
    images, labels, pipeline = data.test_images[chosen], data.test_labels[chosen], test_pipeline(model, data)
    batched, batched_s = timed(copies_batched, model, images, labels, pipeline, blocks)
    naive_errors, naive_s = timed(naive, model, images, labels, pipeline, blocks)
    differing = [max(abs(a - b) for a, b in zip(ours, other)) * args.images for other in (batched, naive_errors)]
    print(json.dumps({
        "images": args.images, "threads": torch.get_num_threads(), "deletions": len(blocks),
        "lesion_study_s": [round(s, 2) for s in study_times], "copies_batched_s": round(batched_s, 2),
        "naive_s": round(naive_s, 1), "naive_over_lesion_study": round(naive_s / statistics.median(study_times), 1),
        "copies_batched_over_lesion_study": round(batched_s / statistics.median(study_times), 2),
        "most_images_differing_from_lesion_study": {"copies_batched": round(differing[0]),
                                                    "naive": round(differing[1])},
        "baseline_error": study.baseline_error}))


def summary(net: str, seed: int, study: LesionStudy, seconds: float) -> dict:
    singles = sorted(block.error for block in study.blocks)
    worst = max(study.blocks, key=lambda block: block.error)
    return {"net": net, "seed": seed, "images": study.images, "seconds": round(seconds, 1),
            "baseline": study.baseline_error, "median_single": statistics.median(singles), "max_single": worst.error,
            "max_block": worst.block,
            "downsampling": {block.block: block.error for block in study.blocks if block.downsampling},
            "random_median": {deletions.k: statistics.median(deletions.errors) for deletions in study.random}}


def study(args: argparse.Namespace) -> None:
    rows = []
    for net in NETS:
        model, data = trained_with_data(net, args.data, args.home)
        for seed in args.seeds:
            result, seconds = timed(lambda: lesion_study(model, data, images=args.images, random_k=args.random_k,
                                                         draws=args.draws, seed=seed))
            rows.append(summary(net.partition(":")[2], seed, result, seconds))
            print(json.dumps({**rows[-1], "result": result.to_dict()}), flush=True)
    ks = range(1, args.random_k + 1)
    print("\n| net | seed | intact | median single | max single (block) | layer2.0 | layer3.0 | "
          + " | ".join(f"k={k}" for k in ks) + " |")
    print("|---" * (7 + len(ks)) + "|")
    for row in rows:
        print(f"| {row['net']} | {row['seed']} | {row['baseline']:.1%} | {row['median_single']:.1%} | "
              f"{row['max_single']:.1%} ({row['max_block']}) | {row['downsampling']['layer2.0']:.1%} | "
              f"{row['downsampling']['layer3.0']:.1%} | "
              + " | ".join(f"{row['random_median'][k]:.0%}" for k in ks) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("speed", "study"))
    parser.add_argument("--data", default=str(ROOT / "data" / "bench-cifar10"))
    parser.add_argument("--home", default=str(ROOT / "data" / "bench-home"))
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the CLI uses one per core: 2 here)")
    parser.add_argument("--repeats", type=int, default=3, help="speed: timed runs of lesion_study")
    parser.add_argument("--seed", type=int, default=0, help="speed: the image subset")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="study: one run per seed")
    parser.add_argument("--random-k", type=int, default=20)
    parser.add_argument("--draws", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    (speed if args.mode == "speed" else study)(args)


if __name__ == "__main__":
    main()
