"""The Pixels page's models and results, cached: models in `st.cache_resource` (keyed by the weights file and its
modification time, so a file put in place or replaced is read again), results in `st.cache_data` keyed by the model,
that stamp and the upload's bytes. Cached models are in eval mode and shared by every session; only forward passes
run on them, on the CPU: a published model's on the cores no training run uses (run_service.idle_cores), the rest on
the app's torch threads (explorer.setup); attributions work on a private copy.

Two kinds of model: torchvision's published ones, for photos, and this server's scene models, the segmentation runs
of its store (resnet_core.pixels), for their own test scenes or a photo shrunk to their scenes' size.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st
import torch
from PIL import Image

from explorer import identity, model_widgets, run_service
from explorer.classify.inputs import decode
from explorer.setup import torch_threads
from resnet_core.explain import catalog
from resnet_core.explain.attribution import Attribution
from resnet_core.pixels import jobs, scene_models
from resnet_core.pixels import torchvision_models as tm
from resnet_core.pixels.attribution import pixel_attribution
from resnet_core.pixels.scene_models import SceneModel
from resnet_core.pixels.scenes import Scenes
from resnet_core.pixels.segment_train import SegmentationReport, evaluate_segmentation
from resnet_core.runs.store import Store


@dataclass(frozen=True)
class Answer:
    """A model's result for one photo, and how long it took here."""

    image: Image.Image  # the working image the net saw (tm.working_image)
    result: tm.Segmentation | tm.Detection
    seconds: float
    threads: int  # the torch threads it ran on: the cores no training run was using


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
    threads = run_service.idle_cores()
    with torch_threads(threads):
        start = time.perf_counter()
        result = model.run(image)
        seconds = time.perf_counter() - start
    return Answer(image, result, seconds, threads)


def explain_photo_pixel(model: tm.PixelNet, data: bytes, x: int, y: int, method: str,
                        target: int | None) -> Attribution:
    """Which pixels of the photo decided the class a published segmentation model gives pixel (x, y) of its working
    image: `method` (tm.EXPLAIN_METHODS) on its score for `target` there (None: the pixel's own class)."""
    return _explain_photo_pixel(model.name, _stamp(model.name), data, x, y, method, target)


@st.cache_data(max_entries=16, show_spinner="Computing the attribution on this CPU (a forward and a backward pass)…")
def _explain_photo_pixel(name: str, stamp: int | None, data: bytes, x: int, y: int, method: str,
                         target: int | None) -> Attribution:
    model = net(name)
    with torch_threads(run_service.idle_cores()):
        # A private copy: the cached model is shared by every session and must never change mode under another.
        return pixel_attribution(model.model, model.model_input(working(data)), x, y, method, target,
                                 private_copy=True)


# ------------------------------------------------------------------------------------------- this server's scene models
# A segmentation run of the store (resnet_core.pixels) is a model too: its segmenter is a few MB at most, its test
# scenes a few MB (2,000 scenes of 64 x 64). Models are keyed by their file and its modification time, scenes by the
# run (a run's scenes never change), results by both and the input.

SCRATCH_BACKBONES = ("resnet20", "plain20", "resnet8")  # offered from scratch: small enough for a CPU server


@dataclass(frozen=True)
class SceneAnswer:
    """A scene model's labels for one input: a test scene of its own (with its true labels) or a photo."""

    picture: np.ndarray  # (H, W, 3) uint8: what the net saw
    segmentation: tm.Segmentation
    truth: np.ndarray | None  # (H, W) uint8 labels of a test scene; None for a photo
    seconds: float


def scene_runs() -> dict[int, str]:
    """The finished segmentation runs with a saved segmenter, newest first: run id -> its label (what it trained,
    on which backbone, its latest mIoU)."""
    db = run_service.store()
    found = {}
    for run, summary in reversed(db.runs_and_summaries(kinds=(jobs.KIND,))):
        if run.status != "finished" or db.latest_checkpoint(run.id) is None:
            continue
        miou = summary["test_miou"]
        score = "" if miou is None else f" · mIoU {100 * miou:.1f} %"
        found[run.id] = f"#{run.id} {run_service.model_label(run)} from {backbone_origin(run)} on {run.data}{score}"
    return found


def backbone_origin(run) -> str:
    """Where a segmentation run's backbone came from, in a few words: `the reference`, `scratch`, `run 3`, a file."""
    backbone = (run.settings or {}).get("backbone", "")
    if backbone.startswith("reference:"):
        return "the reference"
    if backbone.startswith(jobs.RANDOM_PREFIX):
        return "scratch"
    if backbone.lstrip("-").isdigit():
        return f"run {backbone}"
    return Path(backbone).name


def scene_model(run_id: int) -> SceneModel:
    """The run's segmenter; raises a one-line `UserError` when it has none."""
    db = run_service.store()
    latest = db.latest_checkpoint(run_id)
    stamp = latest[1].stat().st_mtime_ns if latest and latest[1].is_file() else None
    return _scene_model(str(db.home), run_id, stamp)


@st.cache_resource(max_entries=4, show_spinner="Loading the scene model…")
def _scene_model(home: str, run_id: int, stamp: int | None) -> SceneModel:
    return scene_models.load_scene_model(Store(home), run_id)


def scenes(run_id: int) -> Scenes:
    """The run's test scenes, composed again (its source dataset is read from the data folder, as the run did)."""
    return _scenes(str(run_service.store().home), run_id)


@st.cache_resource(max_entries=2, show_spinner="Composing its test scenes…")
def _scenes(home: str, run_id: int) -> Scenes:
    store = Store(home)
    return scene_models.test_scenes(store, store.run(run_id))


def scores(run_id: int) -> SegmentationReport:
    """The run's segmenter scored on its test scenes: pixel accuracy, mIoU and every class's IoU."""
    return _scores(str(run_service.store().home), run_id, _scene_stamp(run_id))


@st.cache_data(max_entries=8, show_spinner="Scoring it on its test scenes…")
def _scores(home: str, run_id: int, stamp: int | None) -> SegmentationReport:
    # On the CPU: the cached segmenter is shared by every session, and `label` feeds it CPU tensors.
    return evaluate_segmentation(scene_model(run_id).segmenter, scenes(run_id), device="cpu")


def _scene_stamp(run_id: int) -> int | None:
    latest = run_service.store().latest_checkpoint(run_id)
    return latest[1].stat().st_mtime_ns if latest and latest[1].is_file() else None


def scene_image(run_id: int, index: int | None, photo: bytes | None) -> torch.Tensor:
    """uint8 (3, H, W): test scene `index` of the run, or the `photo` resized to its scenes' canvas."""
    if photo is not None:
        model = scene_model(run_id)
        return scene_models.photo_scene(decode(photo), model.canvas, model.stride)
    return scenes(run_id).test_images[index]


def scene_answer(run_id: int, index: int | None = None, photo: bytes | None = None) -> SceneAnswer:
    """The scene model's labels for test scene `index`, or for the `photo`."""
    return _scene_answer(str(run_service.store().home), run_id, _scene_stamp(run_id), index, photo)


@st.cache_data(max_entries=32, show_spinner="Labelling the pixels…")
def _scene_answer(home: str, run_id: int, stamp: int | None, index: int | None, photo: bytes | None) -> SceneAnswer:
    image = scene_image(run_id, index, photo)
    start = time.perf_counter()
    segmentation = scene_model(run_id).label(image)
    seconds = time.perf_counter() - start
    truth = None if photo is not None else scenes(run_id).test_masks[index].numpy()
    return SceneAnswer(scene_models.picture(image), segmentation, truth, seconds)


def explain_pixel(run_id: int, index: int | None, photo: bytes | None, x: int, y: int, method: str,
                  target: int | None) -> Attribution:
    """Which input pixels decided the class of pixel (x, y): `method` (explain.attribution.METHODS) on the scene
    model's score for `target` there (None: the class it gives that pixel)."""
    return _explain_pixel(str(run_service.store().home), run_id, _scene_stamp(run_id), index, photo, x, y, method,
                          target)


@st.cache_data(max_entries=64, show_spinner="Computing the attribution…")
def _explain_pixel(home: str, run_id: int, stamp: int | None, index: int | None, photo: bytes | None, x: int,
                   y: int, method: str, target: int | None) -> Attribution:
    model = scene_model(run_id)
    # A private copy: the cached segmenter is shared by every session and must never change mode under another.
    return pixel_attribution(model.segmenter, model.model_input(scene_image(run_id, index, photo)), x, y, method,
                             target, private_copy=True)


def start_scene_run(backbone: str, scenes_from: str, **settings) -> int:
    """Queue one segmentation run for this person within the server's limits, as run_service.start queues a
    classifier's (submit_segmentation dispatches it); its id. A one-line `UserError` for settings it refuses."""
    return jobs.submit_segmentation(backbone, scenes_from, owner=identity.user_id(), store=run_service.store(),
                                    limits=run_service.server_limits(), **settings)


def backbone_choices() -> dict[str, str]:
    """What a scene model may start from, as submit_segmentation names it -> its label: the shipped reference nets,
    the CIFAR classifiers trained here (finished, with a checkpoint), and a few nets from scratch."""
    choices = {f"reference:{name}": f"{run_service.net_label(name)}, the shipped reference (CIFAR-10)"
               for name in catalog.REFERENCE_NAMES}
    db = run_service.store()
    for run in reversed(db.runs()):
        if run.status == "finished" and run.spec["family"] == "cifar" and db.latest_checkpoint(run.id) is not None:
            choices[str(run.id)] = f"{run_service.net_label(run.model)} of run #{run.id} ({run.data})"
    choices.update({f"{jobs.RANDOM_PREFIX}{name}": f"{run_service.net_label(name)} from scratch (He's initialisation)"
                    for name in SCRATCH_BACKBONES})
    return choices
