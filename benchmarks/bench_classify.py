"""Classify and attribution timings for docs/BENCHMARKS.md (issue 6): one image, CPU, median of N.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_classify.py --threads 1 --repeats 15
"""
import argparse
import statistics
import time
from pathlib import Path

import torch
from PIL import Image

import resnet_core as rc
from resnet_core.explain.attribution import METHODS
from resnet_core.explain.classifier import demo_classifier

PAGES = Path(__file__).resolve().parents[1] / "pages"


def median_ms(function, repeats: int) -> float:
    function()  # warm-up: lazy imports, allocator
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def page_seconds(page: str, example: str | None) -> float:
    """One AppTest run of a page from a cold cache (models loaded, figures computed), in seconds."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_data.clear()
    st.cache_resource.clear()
    start = time.perf_counter()
    at = AppTest.from_file(str(PAGES / page), default_timeout=300).run()
    if example:
        at.selectbox(key="classify_example").select(example).run()
        at.selectbox(key="classify_method").select("grad_cam").run()
    assert not at.exception, at.exception
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    image = Image.new("RGB", (64, 48), (200, 40, 40))
    print(f"threads {args.threads}, median of {args.repeats}, ms per image")
    for name in ("resnet20", "resnet56"):
        model = demo_classifier(name).model if name == "resnet20" else rc.build_model(name).eval()
        x = rc.to_model_input(image, 32, rc.Normalization.from_stats((0.49, 0.48, 0.45), (0.25, 0.24, 0.26)))
        with torch.no_grad():
            row = {"predict": median_ms(lambda: model(x).softmax(-1), args.repeats)}
        for method in METHODS:
            row[method] = median_ms(lambda: rc.attribute(model, x, method, private_copy=True), args.repeats)
        print(name, "  ".join(f"{key} {value:.1f}" for key, value in row.items()))
    classify_seconds = page_seconds("5_Classify.py", "red ball in the sky (drawn)")
    print(f"Classify page, cold, example + Grad-CAM: {classify_seconds:.1f} s")
    print(f"Inside page, cold: {page_seconds('6_Inside.py', None):.1f} s")


if __name__ == "__main__":
    main()
