"""Classify page helpers: inputs (uploads and examples), predictions and attributions, cached by content.

Every image travels as the bytes of its file, so caches key on content and nothing but ids and small settings
ever lands in `st.session_state`.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import streamlit as st
from PIL import Image, ImageDraw

import resnet_core as rc
from explorer import models, plots
from explorer.url_state import IN_URL, index_of
from resnet_core.training.image_files import ALLOWED_EXTENSIONS
from resnet_core.training.data import stored_size

METHOD_LABELS = {"grad_cam": "Grad-CAM", "integrated_gradients": "Integrated Gradients (50 steps)",
                 "saliency": "Saliency", "occlusion": "Occlusion"}
METHOD_HELP = ("Grad-CAM: where the last block with a map of at least 8×8 looked, weighted by how much each of its "
               "channels pushes the class. Integrated Gradients: evidence for (red) and against (blue) the class, "
               "integrated from a mean-colour image. Saliency: how strongly each pixel's gradient moves the score. "
               "Occlusion: how much the score drops when a patch is greyed out.")
# Large photos are shrunk once after decoding: every network here sees at most 224 px (256 before the crop).
WORKING_SIDE = 1024
CIFAR_EXAMPLES_PER_CLASS = 2
EXAMPLE_SIDE = 128
UPLOAD_TYPES = list(ALLOWED_EXTENSIONS)  # what the uploader offers: the formats load_image accepts


@dataclass(frozen=True)
class Prediction:
    seen: np.ndarray  # (S, S, 3) uint8: the input as the network sees it, normalisation undone
    top: list[tuple[str, float]]  # top-5 classes and probabilities


# ------------------------------------------------------------------------------------------- inputs
def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _synthetic_examples() -> dict[str, Image.Image]:
    """A few drawn scenes, so the page has something to classify with no file and no dataset at hand."""
    side = EXAMPLE_SIDE
    y, x = np.mgrid[0:side, 0:side] / (side - 1)
    sky = np.stack([90 + 80 * y, 150 + 60 * y, 235 - 20 * y], -1).astype(np.uint8)
    red_ball = Image.fromarray(sky)
    ImageDraw.Draw(red_ball).ellipse((34, 34, 94, 94), fill=(210, 30, 30))
    boat = Image.fromarray(sky)
    draw = ImageDraw.Draw(boat)
    draw.rectangle((0, 80, side, side), fill=(30, 70, 140))  # sea
    draw.polygon([(30, 80), (98, 80), (86, 96), (42, 96)], fill=(245, 245, 245))  # hull
    draw.polygon([(64, 30), (64, 78), (94, 78)], fill=(230, 230, 210))  # sail
    grass = np.stack([60 + 40 * x, 140 + 50 * y, 40 + 0 * x], -1).astype(np.uint8)
    checker = ((np.floor(x * 8) + np.floor(y * 8)) % 2 * 255).astype(np.uint8)
    return {"red ball in the sky (drawn)": red_ball, "sailing boat (drawn)": boat,
            "grass-green gradient (drawn)": Image.fromarray(grass),
            "checkerboard (drawn)": Image.fromarray(np.stack([checker] * 3, -1))}


@st.cache_data(max_entries=1)
def synthetic_examples() -> dict[str, bytes]:
    return {name: _png(image) for name, image in _synthetic_examples().items()}


def dataset_examples(choice: str) -> dict[str, bytes]:
    """A few test images per class from the dataset `choice` was trained on, when it is on this machine."""
    try:
        model = models.classifier(choice)
    except ValueError:  # the model column says why, once
        return {}
    source = models.local_dataset_source(model, choice)
    spec = model.model.spec
    return {} if source is None else _examples_from(source, stored_size(spec.family, spec.input_size))


@st.cache_data(max_entries=2, show_spinner=False)
def _examples_from(source: str, image_size: int) -> dict[str, bytes]:
    data = models.dataset(source, image_size)
    examples = {}
    for class_index, name in enumerate(data.classes):
        indices = (data.test_labels == class_index).nonzero().flatten()[:CIFAR_EXAMPLES_PER_CLASS]
        for number, index in enumerate(indices.tolist(), start=1):
            pixels = data.test_images[index].permute(1, 2, 0).numpy()  # (S, S, 3) uint8
            examples[f"{name} #{number} (test image {index})"] = _png(Image.fromarray(pixels))
    return examples


@st.cache_data(max_entries=32, show_spinner=False)
def decode(data: bytes) -> Image.Image:
    """`rc.load_image` (raises `InvalidImageError`), shrunk to WORKING_SIDE: decoding a 24 MP photo once is enough."""
    image = rc.load_image(data)
    image.thumbnail((WORKING_SIDE, WORKING_SIDE), Image.Resampling.LANCZOS)
    return image


def decode_all(files: list[tuple[str, bytes]]) -> tuple[dict[str, bytes], list[str]]:
    """The files that decode, by name, and one error line for each that does not."""
    good, errors = {}, []
    for name, data in files:
        try:
            decode(data)
        except rc.InvalidImageError as error:
            errors.append(f"{name}: {error}")
        else:
            good[name] = data
    return good, errors


# ------------------------------------------------------------------------------------------- the networks' answers
def _stamp(choice: str) -> int:
    if choice.startswith("upload:"):  # named by its content's hash: it never changes
        return 0
    return models.checkpoint_path(choice).stat().st_mtime_ns


def predict(choice: str, data: bytes) -> Prediction:
    return _predict(choice, _stamp(choice), data)


@st.cache_data(max_entries=64, show_spinner=False)
def _predict(choice: str, _stamp: int, data: bytes) -> Prediction:
    model = models.classifier(choice)
    x = model.model_input(decode(data))
    seen = np.asarray(model.seen_image(x))
    return Prediction(seen, model.top_k(x, 5))


def explain(choice: str, data: bytes, method: str, target: int | None) -> rc.Attribution:
    return _explain(choice, _stamp(choice), data, method, target)


@st.cache_data(max_entries=64, show_spinner="Computing the attribution…")
def _explain(choice: str, _stamp: int, data: bytes, method: str, target: int | None) -> rc.Attribution:
    model = models.classifier(choice)
    # A private copy: the cached model is shared by every session and must never change mode under another.
    return rc.attribute(model.model, model.model_input(decode(data)), method, target, private_copy=True,
                        internal_batch_size=16)


# ------------------------------------------------------------------------------------------- rendering
def model_picker(label: str, key: str, default: str, choices: dict[str, str]) -> str:
    """A model selectbox whose state is only the choice id, in the URL as its label (explorer.url_state)."""
    ids = list(choices)
    if key in st.session_state and st.session_state[key] not in choices:  # a run deleted since
        st.session_state[key] = default if default in choices else ids[0]
    return st.selectbox(label, ids, index_of(ids, default), format_func=choices.get, key=key, bind=IN_URL)


def checkpoint_uploader(key: str, picker_key: str) -> dict[str, str]:
    """An uploader for this person's own checkpoints (a run's, downloaded from the Runs page of any machine, or an
    exported one). Returns choice id -> label of those that load, after one error line for each that does not,
    and points the picker `picker_key` at a checkpoint just uploaded, so it answers at once."""
    files = st.file_uploader("Your own checkpoints (.safetensors)", type=["safetensors"], accept_multiple_files=True,
                             key=key, help="A checkpoint of this app, e.g. downloaded from the Runs page: read "
                                           "without running any code in it, and kept for this session only.")
    before = set(st.session_state.get(models.UPLOADS, {}))
    choices, errors = models.uploaded_choices([(file.name, file.getvalue()) for file in files or []])
    for error in errors:
        st.error(error)
    if new := [choice for choice in choices if choice not in before]:
        st.session_state[picker_key] = new[-1]
    return choices


def loaded(choice: str) -> rc.Classifier | None:
    """The model, or None after a one-line message (and, for missing ImageNet weights, a download button)."""
    try:
        return models.classifier(choice)
    except rc.WeightsUnavailableError as error:
        st.error(str(error))
        if st.button("Try to download them", key=f"download_{choice}"):
            try:
                return models.classifier(choice, download=True)
            except ValueError as retry_error:
                st.error(str(retry_error))
    except ValueError as error:  # InvalidCheckpointError, DatasetError, StoreError: one sentence each
        st.error(str(error))
    return None


def model_column(choice: str, data: bytes, method: str | None, key: str) -> None:
    """One model's answer for one image: what it sees, its top-5 and, with a `method`, an attribution overlay."""
    from explorer import explain_charts

    model = loaded(choice)
    if model is None:
        return
    st.subheader(model.label)
    error = "" if model.test_error is None else f" · test error {model.test_error:.1%}"
    st.caption(f"{len(model.classes)} classes{error}")
    prediction = predict(choice, data)
    st.image(prediction.seen, width=160, caption=f"As the network sees it: {model.input_size}×{model.input_size} "
                                                 "pixels (normalisation undone)")
    plots.show(explain_charts.top_k_figure(prediction.top, "Top-5 classes"), f"{key}_top5",
               f"top5-{model.model.spec.name}")
    if method is None:
        return
    options = [None, *range(len(model.classes))]
    # Keyed by the model too: another model has other classes.
    target = st.selectbox("Explain the class", options, key=f"{key}_target_{choice}",
                          format_func=lambda index: "the predicted class" if index is None else model.classes[index])
    attribution = explain(choice, data, method, target)
    plots.show(explain_charts.attribution_figure(prediction.seen, attribution.map, signed=attribution.signed),
               f"{key}_overlay", f"{method}-{model.model.spec.name}")
    where = f" on {attribution.layer}'s {attribution.layer_map_size[0]}×{attribution.layer_map_size[1]} map" \
        if attribution.layer else ""
    st.caption(f"{METHOD_LABELS[method]}{where} for **{model.classes[attribution.target]}** "
               f"(p = {attribution.target_probability:.2f}), over the {model.input_size}×{model.input_size} input "
               "the network sees.")
