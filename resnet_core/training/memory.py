"""How much memory a training run will take, and how much this machine has free for it.

The estimate is calibrated on this project's CPU server (`benchmarks/bench_run_memory.py`, results in
docs/BENCHMARKS.md): a run's peak RSS was 0.93-0.96 GB with almost no activations (torch, the training code,
evaluation buffers) plus 0.6-0.75 of the layer outputs torchinfo counts for one batch (autograd shares some of
them). Both are rounded up: the guard may refuse a little early, never let a run in that will not fit.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

from ..nets.specs import NetSpec

PROCESS_BYTES = 1_050_000_000  # a training process before its first batch, rounded up from 0.93-0.96 GB
SAVED_FRACTION = 0.75  # of torchinfo's layer outputs, what autograd keeps for the backward pass
WEIGHT_COPIES = 4  # weights, gradients, momentum, and the copy a checkpoint is written from


def training_bytes(spec: NetSpec, batch_size: int, dataset_images: int, device: str = "cpu") -> int:
    """Estimated peak memory of training `spec` with batches of `batch_size` on `dataset_images` stored images."""
    from .data import IMAGENET_SHORTER_SIDE, stored_size

    per_image, parameters = _model_size(spec)
    activations = SAVED_FRACTION * 4 * per_image * batch_size  # fp32
    weights = WEIGHT_COPIES * 4 * parameters
    # uint8, decoded once. Image folders for ImageNet nets keep their aspect: counted as 4:3 photos with the stored
    # shorter side (CIFAR and synthetic sources, stored as small squares, take less).
    pixels = (stored_size(spec.family, spec.input_size) ** 2 if spec.family == "cifar"
              else IMAGENET_SHORTER_SIDE ** 2 * 4 // 3)
    images = dataset_images * 3 * pixels
    process = PROCESS_BYTES if device == "cpu" else 0  # on a GPU the process lives in host memory
    return int(process + activations + weights + images)


@functools.lru_cache(maxsize=64)
def _model_size(spec: NetSpec) -> tuple[int, int]:
    """(layer output values for one image, parameters): a torchinfo pass, so remembered per spec."""
    from ..nets.model import ResNet
    from ..nets.summary import count_parameters, layer_table

    model = ResNet(spec)
    return int(layer_table(model)["activations"].sum()), count_parameters(model)


def available_bytes(device: str = "cpu") -> int:
    """Memory a new run can use now: the GPU's free memory, else the host's available memory, within the
    container's cgroup limit when that is lower."""
    if device == "cuda":
        return torch.cuda.mem_get_info()[0]
    available = _meminfo_available()
    limit, used = _cgroup_value("memory.max"), _cgroup_value("memory.current")
    if limit is not None and used is not None:
        available = min(available, limit - used)
    return max(available, 0)


def _meminfo_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _cgroup_value(name: str) -> int | None:
    try:
        text = (Path("/sys/fs/cgroup") / name).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def gigabytes(count: int) -> str:
    return f"{count / 1e9:,.1f} GB"
