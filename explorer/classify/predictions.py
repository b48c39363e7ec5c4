"""Classify page answers: each network's top-5 and attribution for an image, cached by content, and the column
that shows them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

import resnet_core as rc
from explorer import explain_charts, model_widgets, models, plots
from explorer.classify.inputs import decode

METHOD_LABELS = {"grad_cam": "Grad-CAM", "integrated_gradients": "Integrated Gradients (50 steps)",
                 "saliency": "Saliency", "occlusion": "Occlusion"}
METHOD_HELP = ("Grad-CAM: where the last block with a map of at least 8×8 looked, weighted by how much each of its "
               "channels pushes the class. Integrated Gradients: evidence for (red) and against (blue) the class, "
               "integrated from a mean-colour image. Saliency: how strongly each pixel's gradient moves the score. "
               "Occlusion: how much the score drops when a patch is greyed out.")


@dataclass(frozen=True)
class Prediction:
    seen: np.ndarray  # (S, S, 3) uint8: the input as the network sees it, normalisation undone
    top: list[tuple[str, float]]  # top-5 classes and probabilities


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


def model_column(choice: str, data: bytes, method: str | None, key: str) -> None:
    """One model's answer for one image: what it sees, its top-5 and, with a `method`, an attribution overlay."""
    model = model_widgets.loaded(choice)
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
