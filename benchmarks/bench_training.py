"""End-to-end training throughput of ResNet-20 (batch 128): resnet_core's data path vs torchvision's.

    .venv/bin/python benchmarks/bench_training.py [--iterations 30] [--warmup 5]

Ours: `resnet_core.training.train.train` on the CIFAR-10 JPEG copy decoded once into a uint8 tensor (cached),
augmented in batches. Theirs: ImageFolder + RandomCrop(32, 4) + RandomHorizontalFlip + ToTensor +
Normalize in a DataLoader, best of num_workers 0/1/2, the same model, optimizer and precision.
Also prints the share of our step time spent on the data path (indexing, crop, flip, normalise).
Needs ../shared/data/cifar10-jpeg.tar.gz (extracted once into data/bench-cifar10, git-ignored).
"""
from __future__ import annotations

import argparse
import sys
import tarfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from resnet_core.nets.model import ResNet  # noqa: E402
from resnet_core.nets.specs import get_spec  # noqa: E402
from resnet_core.training.augment import Pipeline, epoch_order, iteration_generator  # noqa: E402
from resnet_core.training.data import load_data  # noqa: E402
from resnet_core.training.device import autocast, set_cpu_threads  # noqa: E402
from resnet_core.training.recipe import Recipe  # noqa: E402
from resnet_core.training.train import TrainMetrics, train  # noqa: E402

ARCHIVE = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
FOLDER = ROOT / "data" / "bench-cifar10"
HOME = ROOT / "data" / "bench-home"
BATCH = 128


def extracted() -> Path | None:
    if not (FOLDER / "train").is_dir():
        if not ARCHIVE.exists():
            return None
        FOLDER.mkdir(parents=True, exist_ok=True)
        with tarfile.open(ARCHIVE) as archive:
            archive.extractall(FOLDER, filter="data")
    return next(path.parent for path in FOLDER.rglob("train") if (path.parent / "test").is_dir())


def ours(data, precision: str, iterations: int, warmup: int) -> tuple[float, float]:
    """(images/s end to end, fraction of step time in the data path)."""
    recipe = Recipe(batch_size=BATCH, eval_interval=10 ** 9).shortened(iterations=10 ** 6)
    marks = {}
    for record in train(get_spec("resnet20"), data, recipe, device="cpu", precision=precision):
        if isinstance(record, TrainMetrics):
            marks[record.iteration] = time.perf_counter()
            if record.iteration == warmup + iterations:
                break
    step_s = (marks[warmup + iterations] - marks[warmup]) / iterations
    pipeline = Pipeline.for_recipe(recipe, data, 32)
    started = time.perf_counter()
    order = epoch_order(len(data.train_labels), 0, 0)  # once per epoch, as in the training loop
    for iteration in range(iterations):
        indices = order[iteration * BATCH:(iteration + 1) * BATCH]
        images = pipeline.train_batch(data.train_images[indices], iteration_generator(0, iteration))
        images.contiguous(memory_format=torch.channels_last)
        data.train_labels[indices]
    data_s = (time.perf_counter() - started) / iterations
    return BATCH / step_s, data_s / step_s


def torchvision_pipeline(folder: Path, precision: str, iterations: int, warmup: int, workers: int) -> float:
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                                    transforms.ToTensor(),
                                    transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))])
    loader = torch.utils.data.DataLoader(datasets.ImageFolder(str(folder / "train"), transform), batch_size=BATCH,
                                         shuffle=True, num_workers=workers, drop_last=True,
                                         persistent_workers=workers > 0)
    torch.manual_seed(0)
    model = ResNet(get_spec("resnet20")).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    device = torch.device("cpu")
    started = None
    for step, (images, labels) in enumerate(loader):
        if step == warmup:
            started = time.perf_counter()
        if step == warmup + iterations:
            break
        with autocast(device, precision):
            loss = loss_fn(model(images.contiguous(memory_format=torch.channels_last)).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()  # as the real loop, which logs every iteration
    return BATCH * iterations / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=30, help="timed iterations per measurement")
    parser.add_argument("--warmup", type=int, default=5, help="untimed iterations first")
    args = parser.parse_args()
    folder = extracted()
    if folder is None:
        print(f"skipped: {ARCHIVE} is absent (see ../shared/data/README.md)")
        return
    threads = set_cpu_threads()
    started = time.perf_counter()
    load_data(str(folder), home=HOME)
    first = time.perf_counter() - started
    started = time.perf_counter()
    data = load_data(str(folder), home=HOME)
    cached = time.perf_counter() - started
    print(f"{len(data.train_labels)} training images, {threads} threads; load: {first:.2f} s first (decode or cache), "
          f"{cached:.2f} s from the cache")
    for precision in ("fp32", "bf16"):
        ours_rate, data_share = ours(data, precision, args.iterations, args.warmup)
        theirs = {workers: torchvision_pipeline(folder, precision, args.iterations, args.warmup, workers)
                  for workers in (0, 1, 2)}
        best = max(theirs, key=theirs.get)
        print(f"{precision}: resnet_core {ours_rate:.0f} img/s (data path {100 * data_share:.1f}% of a step); "
              f"torchvision {', '.join(f'{w} workers {r:.0f}' for w, r in theirs.items())} img/s; "
              f"ratio {ours_rate / theirs[best]:.2f}x vs best ({best} workers)", flush=True)


if __name__ == "__main__":
    main()
