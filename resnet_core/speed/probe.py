"""Measure one net's speeds in this process, as a run trains it: `calibrate` starts one probe per slot at once.

    python -m resnet_core.speed.probe --net resnet56 --device cpu --precision fp32 --threads 1 --seconds 6

Prints one JSON object: train_images_per_s (the training loop itself, on synthetic images of the net's input size),
test_images_per_s (a test pass) and overhead_s (data, model and the first step's warm-up, as `meter` counts a run's).
"""
from __future__ import annotations

import argparse
import json
import time

WARMUP_STEPS = 3  # the first steps allocate and pick kernels: slower than the rest
TEST_IMAGES = 1_000


def probe(net: str, *, device: str, precision: str, threads: int, seconds: float) -> dict:
    import torch

    from ..nets.model import ResNet
    from ..nets.specs import get_spec
    from ..training.augment import Pipeline
    from ..training.data import synthetic_data
    from ..training.evaluate import loss_and_error
    from ..training.recipe import training_recipe
    from ..training.train import TrainMetrics, train

    torch.set_num_threads(threads)
    created = time.monotonic()
    spec = get_spec(net)
    data = synthetic_data(2_048, TEST_IMAGES, image_size=spec.input_size)
    recipe = training_recipe(spec, iterations=1_000_000, train_images=len(data.train_labels), kind="paper",
                             eval_interval=1_000_000)  # steps only: the test pass is timed on its own below
    first_done = timed_from = None
    steps = 0
    for record in train(spec, data, recipe, device=device, precision=precision):
        if not isinstance(record, TrainMetrics):
            continue
        if first_done is None:
            first_done = time.monotonic()
        if record.iteration == WARMUP_STEPS:
            timed_from = time.monotonic()
        elif timed_from is not None:
            steps += 1
            if time.monotonic() - timed_from >= seconds:
                break
    train_s = time.monotonic() - timed_from
    model = ResNet(spec).to(device).eval()
    pipeline = Pipeline.for_recipe(recipe, data.to(device), spec.input_size)
    started = time.monotonic()
    loss_and_error(model, data.to(device).test_images, data.to(device).test_labels, pipeline, precision=precision)
    test_s = time.monotonic() - started
    return {"train_images_per_s": steps * recipe.batch_size / train_s, "test_images_per_s": TEST_IMAGES / test_s,
            "overhead_s": first_done - created}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--net", required=True)
    parser.add_argument("--device", required=True, choices=("cpu", "cuda"))
    parser.add_argument("--precision", required=True, choices=("fp32", "bf16"))
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True, help="how long to time training steps")
    args = parser.parse_args()
    print(json.dumps(probe(args.net, device=args.device, precision=args.precision, threads=args.threads,
                           seconds=args.seconds)))


if __name__ == "__main__":
    main()
