"""Inside page helpers: Fig. 7's layer responses, gradient norms and a model's test report, cached.

Trained nets are the demo pair (plain-20 and ResNet-20); nets at initialisation are built here with a
fixed seed. Both are measured on the demo's CIFAR-10 test images when they are on this machine, else
on synthetic images; without the dataset the trained demo nets fall back to what their checkpoints
recorded on the test set at export.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st
import torch

import resnet_core as rc
from explorer import models
from resnet_core.training.data import synthetic_data
from resnet_core.training.evaluate import EvaluationReport, evaluate_run, evaluation_report

NETS = ("plain", "residual")
DEMO_CHOICES = {"plain": "demo:plain20", "residual": "demo:resnet20"}
TRAINED_DEPTH = 20  # the demo nets' depth
INIT_DEPTHS = (20, 56, 110)
RESPONSE_IMAGES = 500  # Fig. 7's stds settle to 2 digits with a few hundred images
GRADIENT_BATCH = 128  # one training batch (§4.2)
INIT_SEED = 0


@dataclass(frozen=True)
class Probe:
    """Normalised images (N, 3, 32, 32) with labels, and where they come from, for the caption."""

    images: torch.Tensor
    labels: torch.Tensor
    source: str
    real: bool  # CIFAR-10 test images rather than synthetic ones


@st.cache_resource(max_entries=1, show_spinner="Preparing test images…")
def probe() -> Probe:
    demo = models.classifier(DEMO_CHOICES["residual"])
    data = models.dataset_for(demo, DEMO_CHOICES["residual"])
    real = data is not None
    if real:
        source = f"{len(data.test_labels):,} test images"
    else:
        data, source = synthetic_data(16, RESPONSE_IMAGES), "synthetic images (no CIFAR-10 here)"
    images, labels = data.test_images, data.test_labels
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[:RESPONSE_IMAGES]
    mean = torch.tensor(demo.mean).reshape(3, 1, 1)
    std = torch.tensor(demo.std).reshape(3, 1, 1)
    normalised = (images[order].float() / 255 - mean) / std
    return Probe(normalised, labels[order], f"{len(order)} of the {source}" if real else source, real)


def _net(net: str, state: str, depth: int) -> rc.ResNet:
    if state == "trained":
        return models.classifier(DEMO_CHOICES[net]).model
    torch.manual_seed(INIT_SEED)
    return rc.build_model(rc.cifar_spec(depth, residual=net == "residual"))


@st.cache_data(max_entries=8, show_spinner="Measuring layer responses…")
def layer_responses(state: str, depth: int) -> dict[str, pd.DataFrame]:
    """Fig. 7's std per 3x3 layer for the plain and residual net of `depth`, trained (demo) or at init."""
    sample = probe()
    if state == "trained" and not sample.real:
        return {net: pd.DataFrame(models.demo_metadata(DEMO_CHOICES[net].partition(":")[2])["layer_response_stds"])
                for net in NETS}
    return {net: rc.layer_response_stds(_net(net, state, depth), sample.images) for net in NETS}


@st.cache_data(max_entries=8, show_spinner="Measuring gradients…")
def gradient_norms(depth: int) -> dict[tuple[str, str], pd.DataFrame]:
    """Per-layer gradient norms of one batch, plain vs residual, at init (and trained, for the demo's depth)."""
    sample = probe()
    images, labels = sample.images[:GRADIENT_BATCH], sample.labels[:GRADIENT_BATCH]
    states = ("init", "trained") if depth == TRAINED_DEPTH else ("init",)
    norms = {}
    for state in states:
        for net in NETS:
            if state == "trained" and not sample.real:
                name = DEMO_CHOICES[net].partition(":")[2]
                norms[net, state] = pd.DataFrame(models.demo_metadata(name)["gradient_norms"])
            else:
                norms[net, state] = rc.gradient_norms(_net(net, state, depth), images, labels)
    return norms


# ------------------------------------------------------------------------------------------- test reports
def recorded_report(choice: str) -> dict | None:
    """A demo model's test report as recorded at export (no images needed), else None."""
    kind, _, name = choice.partition(":")
    return models.demo_metadata(name).get("report") if kind == "demo" else None


def report(choice: str) -> EvaluationReport:
    """The full test report, mistakes included; needs the model's dataset on this machine."""
    return _report(choice, models.checkpoint_path(choice).stat().st_mtime_ns)


@st.cache_data(max_entries=4, show_spinner="Classifying the test set…")
def _report(choice: str, _stamp: int) -> EvaluationReport:
    kind, _, name = choice.partition(":")
    if kind == "run":
        return evaluate_run(models.store(), int(name), device="cpu")
    model = models.classifier(choice)
    return evaluation_report(model.model, models.dataset_for(model, choice))


def mistake_images(choice: str, evaluation: EvaluationReport) -> list[tuple]:
    """(uint8 image (S, S, 3), caption) for each of the most confidently wrong test images."""
    model = models.classifier(choice)
    data = models.dataset_for(model, choice)
    return [(data.test_images[mistake.index].permute(1, 2, 0).numpy(),
             f"{mistake.true_class} → {mistake.predicted_class} ({mistake.confidence:.0%})")
            for mistake in evaluation.most_confident_mistakes]
