"""Pixels page latency (issue 25, item 1): one upload segmented or detected on this CPU, through the page's own path.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_pixels.py [--threads 1 2] [--repeats 3] [--models NAME …]

Per model and torch thread count: the median of `--repeats` answers for a new upload of a 1024×768 JPEG (decoded
and refused as the Classify page does, resized to a 512-px shorter side, the model run, cached by st.cache_data:
the cache is emptied before each), then the page's pictures (class map, overlay and legend, or boxes and table) and
the PNG encoding st.image does. The model itself is loaded once, as st.cache_resource keeps it. Published weights
are used where they are in the torch cache, else random ones of the same architecture: the same arithmetic for
segmentation; for detection the number of boxes differs, and with it the box head's share. Targets on 2 cores:
segmentation 3 s, detection 5 s. The page runs a published model on the cores no training run uses
(run_service.idle_cores): all of them on a quiet server, one while every core trains; so both are measured.
The baseline, in the same run: the same model with its weights in the other memory format than the page's (channels-
last for a model the page keeps contiguous, and the reverse: PixelModel.channels_last); "speed-up" is its total over
the page's, so a ratio below 1 says the page chose the slower one on this CPU.
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import streamlit as st  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from explorer.pixels import figures, service  # noqa: E402
from resnet_core.pixels import torchvision_models as tm  # noqa: E402

TARGET_S = {"segmentation": 3.0, "detection": 5.0}


def photo(size=(1024, 768)) -> bytes:
    """A JPEG with some structure (smooth gradients and a few shapes), as an upload's bytes."""
    y, x = np.mgrid[0:size[1], 0:size[0]] / max(size)
    pixels = np.stack([120 + 100 * x, 150 + 60 * np.sin(6 * y), 200 - 120 * y], -1).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    image.paste((200, 40, 40), (300, 200, 600, 600))
    image.paste((30, 30, 30), (700, 350, 900, 700))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def model_for(name: str) -> tuple[tm.PixelNet, str]:
    try:
        return tm.load(name), "published"
    except ValueError:
        return tm.PixelNet(name, tm.skeleton(name)), "random"


def png(picture) -> int:
    buffer = io.BytesIO()
    (picture if isinstance(picture, Image.Image) else Image.fromarray(picture)).save(buffer, "PNG")
    return buffer.tell()


def page_pictures(answer: service.Answer) -> None:
    """What the page draws from an answer (views._segmentation / views._detection), PNG-encoded as st.image does."""
    if isinstance(answer.result, tm.Segmentation):
        figures.legend_table(answer.result)
        for picture in (answer.image, figures.class_map_image(answer.result),
                        figures.overlay_image(answer.image, answer.result)):
            png(picture)
    else:
        figures.detection_table(answer.result, 0.5)
        png(figures.boxes_image(answer.image, answer.result, 0.5))


def measure(model: tm.PixelNet, data: bytes, repeats: int, threads: int) -> tuple[float, float, float]:
    """Median seconds of (the cached answer for a new upload, the model's forward pass inside it, the pictures)."""
    service.net = lambda name, download=False: model  # the page's st.cache_resource, already warm
    service.run_service.idle_cores = lambda: threads  # as the page finds them; no data folder needed
    answers, forwards, pictures = [], [], []
    for _ in range(repeats + 1):  # the first is a warm-up: allocator, lazy imports
        st.cache_data.clear()
        start = time.perf_counter()
        answer = service.answer(model, data)
        middle = time.perf_counter()
        page_pictures(answer)
        answers.append(middle - start)
        forwards.append(answer.seconds)
        pictures.append(time.perf_counter() - middle)
    return tuple(statistics.median(values[1:]) for values in (answers, forwards, pictures))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, nargs="+", default=sorted({1, os.cpu_count() or 1}))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=list(tm.MODELS))
    args = parser.parse_args()
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    name = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name")), "?")
    data = photo()
    print(f"CPU: {name}, {os.cpu_count()} logical cores; torch {torch.__version__}; upload 1024×768 JPEG, "
          f"working image "
          f"{'×'.join(map(str, tm.working_image(Image.open(io.BytesIO(data))).size))}; median of {args.repeats}")
    print(f"{'model':34} {'weights':9} {'threads':>7} {'answer ms':>10} {'forward ms':>10} {'pictures ms':>11} "
          f"{'total ms':>9} {'target ms':>9} {'ratio':>6} {'baseline ms':>11} {'speed-up':>8}")
    for model_name in args.models:
        model, weights = model_for(model_name)
        task = model.info.task
        formats = {True: torch.channels_last, False: torch.contiguous_format}
        for threads in args.threads:
            model.model.to(memory_format=formats[not model.info.channels_last])
            baseline = sum(measure(model, data, args.repeats, threads)[::2])
            model.model.to(memory_format=formats[model.info.channels_last])  # the page's (PixelNet's)
            answer, forward, pictures = measure(model, data, args.repeats, threads)
            total, target = answer + pictures, TARGET_S[task]
            print(f"{model.info.label:34} {weights:9} {threads:>7} {1000 * answer:>10.0f} {1000 * forward:>10.0f} "
                  f"{1000 * pictures:>11.0f} {1000 * total:>9.0f} {1000 * target:>9.0f} {total / target:>6.2f} "
                  f"{1000 * baseline:>11.0f} {baseline / total:>8.2f}", flush=True)
        del model


if __name__ == "__main__":
    main()
