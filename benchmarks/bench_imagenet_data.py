"""The share of a ResNet-18 training step spent on §3.4's data path (issue 16: under 10 % on a GPU-sized batch).

    .venv/bin/python benchmarks/bench_imagenet_data.py [--batch 32] [--steps 5] [--device cpu]

Writes a synthetic image folder (500 training JPEGs of 10 classes, sides 300-600 px, aspect ratios 3:4 to 4:3) to a
temporary directory, loads it as an ImageNet net stores it, and times, per step: the data path (indexing the
uint8 tensor, per-image scale in [256, 480], 224 crop, flip, PCA lighting, per-pixel mean) and the whole step
(data + forward + backward + SGD) of a ResNet-18 with 10 outputs, in fp32. Reports medians over `--steps` after
one warm-up step.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from resnet_core.nets.model import ResNet  # noqa: E402
from resnet_core.nets.specs import get_spec  # noqa: E402
from resnet_core.training.augment import Pipeline, iteration_generator  # noqa: E402
from resnet_core.training.data import load_data, storage  # noqa: E402
from resnet_core.training.device import set_cpu_threads  # noqa: E402
from resnet_core.training.recipe import IMAGENET_RECIPE  # noqa: E402

CLASSES = 10
TRAIN_IMAGES = 500


def write_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, count in (("train", TRAIN_IMAGES), ("test", CLASSES)):
        for index in range(count):
            folder = root / split / f"class{index % CLASSES}"
            folder.mkdir(parents=True, exist_ok=True)
            height, width = rng.integers(300, 601), rng.integers(300, 601)
            width = int(np.clip(width, 0.75 * height, 4 / 3 * height))
            coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)  # smooth colour fields, JPEG-friendly
            Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR).save(folder / f"{index}.jpg")
    return root


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    set_cpu_threads()
    device = torch.device(args.device)
    spec = get_spec("resnet18", num_classes=CLASSES)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        data = load_data(str(write_folder(Path(tmp) / "folder")), **storage(spec.family, spec.input_size),
                         home=Path(tmp) / "home").to(device)
        print(f"{TRAIN_IMAGES} images written and decoded in {time.perf_counter() - started:.1f} s, stored as "
              f"{tuple(data.train_images.shape)} uint8 on {device}")
    started = time.perf_counter()
    pipeline = Pipeline.for_recipe(IMAGENET_RECIPE, data, spec.input_size, training=True)
    print(f"pipeline (mean image, RGB eigenvectors) ready in {time.perf_counter() - started:.2f} s")
    torch.manual_seed(0)
    model = ResNet(spec).to(device).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    data_s, step_s = [], []
    for step in range(args.steps + 1):
        synchronize(device)
        begin = time.perf_counter()
        indices = torch.randint(TRAIN_IMAGES, (args.batch,), generator=iteration_generator(0, step)).to(device)
        images = pipeline.train_batch(data.train_images[indices], iteration_generator(0, step))
        images = images.contiguous(memory_format=torch.channels_last)
        labels = data.train_labels[indices]
        synchronize(device)
        loaded = time.perf_counter()
        loss = loss_fn(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        synchronize(device)
        if step:  # the first step warms up allocators and kernels
            data_s.append(loaded - begin)
            step_s.append(time.perf_counter() - begin)
    data_median, step_median = statistics.median(data_s), statistics.median(step_s)
    print(f"ResNet-18, batch {args.batch}, {device.type}, fp32, {torch.get_num_threads()} threads: data "
          f"{1000 * data_median:.1f} ms of a {1000 * step_median:.0f} ms step = {100 * data_median / step_median:.1f} %"
          f" (medians of {args.steps} steps)")


if __name__ == "__main__":
    main()
