"""Classify page inputs: the images to classify (uploads, drawn examples, test images of a model's dataset) and the
person's own checkpoints to classify them with.

Every image travels as the bytes of its file, so caches key on content and nothing but ids and small settings
ever lands in `st.session_state`.
"""
from __future__ import annotations

import io

import numpy as np
import streamlit as st
from PIL import Image, ImageDraw

import resnet_core as rc
from explorer import models
from resnet_core.training.data import stored_size
from resnet_core.training.image_files import ALLOWED_EXTENSIONS

# Large photos are shrunk once after decoding: every network here sees at most 224 px (256 before the crop).
WORKING_SIDE = 1024
CIFAR_EXAMPLES_PER_CLASS = 2
EXAMPLE_SIDE = 128
UPLOAD_TYPES = list(ALLOWED_EXTENSIONS)  # what the uploader offers: the formats load_image accepts


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
