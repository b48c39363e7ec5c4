"""The Pixels page's models and results, cached: models in `st.cache_resource` (keyed by the weights file and its
modification time, so a file put in place or replaced is read again), results in `st.cache_data` keyed by the model,
that stamp and the upload's bytes. Cached models are in eval mode and shared by every session; only forward passes
run on them, on the CPU with the app's torch threads (explorer.setup).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import streamlit as st
from PIL import Image

from explorer import model_widgets
from explorer.classify.inputs import decode
from resnet_core.pixels import torchvision_models as tm


@dataclass(frozen=True)
class Answer:
    """A model's result for one photo, and how long it took here."""

    image: Image.Image  # the working image the net saw (tm.working_image)
    result: tm.Segmentation | tm.Detection
    seconds: float


def _stamp(name: str) -> int | None:
    path = tm.weights_path(name)
    return path.stat().st_mtime_ns if path.is_file() else None


def net(name: str, *, download: bool = False) -> tm.PixelNet:
    """The published model; raises a `ValueError` with a one-line message when it cannot be loaded."""
    return _load(name, str(tm.weights_path(name)), _stamp(name), download)


# Errors are not cached: a file put in place (or a download that now works) loads on the next try. Two models at most:
# each holds 140–240 MB of weights.
@st.cache_resource(max_entries=2, show_spinner="Loading the model…")
def _load(name: str, path: str, stamp: int | None, download: bool) -> tm.PixelNet:
    return tm.load(name, download=download)


def loaded(name: str) -> tm.PixelNet | None:
    """The model, or None after a one-line message (and, for missing weights, a download button), as the Classify
    page's model_widgets.loaded does for ImageNet weights."""
    return model_widgets.loaded_or_said(lambda download: net(name, download=download), key=f"pixels_download_{name}")


@st.cache_data(max_entries=8, show_spinner=False)
def working(data: bytes) -> Image.Image:
    """The upload as the nets see it: the Classify page's decoding (and refusals), at SHORT_SIDE."""
    return tm.working_image(decode(data))


def answer(model: tm.PixelNet, data: bytes) -> Answer:
    return _answer(model.name, _stamp(model.name), data)


@st.cache_data(max_entries=16, show_spinner="Labelling the pixels on this CPU…")
def _answer(name: str, stamp: int | None, data: bytes) -> Answer:
    image = working(data)
    model = net(name)
    start = time.perf_counter()
    result = model.run(image)
    return Answer(image, result, time.perf_counter() - start)
