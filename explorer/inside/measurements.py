"""Inside page helpers: Fig. 7's layer responses, gradient norms and a model's test report, cached.

Trained nets are the shipped reference pairs (plain/ResNet-20 and plain/ResNet-56, docs/REFERENCE_NETS.md); nets
at initialisation are built here with a fixed seed. Both are measured on CIFAR-10 test images when they are on
this machine, else on synthetic images; without the dataset the trained nets fall back to what their files
recorded on 2,000 test images at export.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st
import torch

import resnet_core as rc
from explorer import models
from resnet_core.explain import catalog
from resnet_core.training.data import synthetic_data
from resnet_core.training.evaluate import EvaluationReport, evaluate_run, evaluation_report

NETS = ("plain", "residual")
TRAINED_DEPTHS = (20, 56)  # the reference pairs'
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


def trained_depths() -> tuple[tuple[int, ...], list[str]]:
    """The reference depths whose plain and residual files can both be read, and one line per file that cannot
    (the page names it and shows the others)."""
    depths, problems = [], []
    for depth in TRAINED_DEPTHS:
        missing = []
        for net in NETS:
            try:
                catalog.reference(trained_choice(net, depth).partition(":")[2])
            except catalog.ReferenceError as error:
                missing.append(str(error))
        if missing:
            problems.extend(missing)
        else:
            depths.append(depth)
    return tuple(depths), problems


def trained_choice(net: str, depth: int) -> str:
    """The reference net of `net` ("plain" or "residual") and `depth`, as a model choice."""
    return f"reference:{'resnet' if net == 'residual' else 'plain'}{depth}"


@st.cache_resource(max_entries=1, show_spinner="Preparing test images…")
def probe() -> Probe:
    depths = trained_depths()[0]
    # Whose normalisation and dataset: a trained residual net's (the demo's if no reference can be read).
    choice = trained_choice("residual", depths[0]) if depths else "demo:resnet20"
    demo = models.classifier(choice)
    data = models.dataset_for(demo, choice)
    real = data is not None
    if real:
        source = f"{len(data.test_labels):,} test images"
    else:
        data, source = synthetic_data(16, RESPONSE_IMAGES), "synthetic images (no CIFAR-10 here)"
    images, labels = data.test_images, data.test_labels
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[:RESPONSE_IMAGES]
    return Probe(demo.normalize(images[order]), labels[order], f"{len(order)} of the {source}" if real else source, real)


def _net(net: str, state: str, depth: int) -> rc.ResNet:
    if state == "trained":
        return models.classifier(trained_choice(net, depth)).model
    torch.manual_seed(INIT_SEED)
    return rc.build_model(rc.cifar_spec(depth, residual=net == "residual"))


@st.cache_data(max_entries=8, show_spinner="Measuring layer responses…")
def layer_responses(state: str, depth: int) -> dict[str, pd.DataFrame]:
    """Fig. 7's std per 3x3 layer for the plain and residual net of `depth`, trained (reference) or at init."""
    sample = probe()
    if state == "trained" and not sample.real:
        return {net: pd.DataFrame(models.shipped_metadata(trained_choice(net, depth))["layer_response_stds"])
                for net in NETS}
    return {net: rc.layer_response_stds(_net(net, state, depth), sample.images) for net in NETS}


def mean_response(responses: dict[str, pd.DataFrame]) -> dict[str, float]:
    """Net -> the mean std over its 3x3 layers: Fig. 7's comparison in one number."""
    return {net: float(table["std"].mean()) for net, table in responses.items()}


def short_run_caveat() -> str | None:
    """One line saying what the shipped 12-epoch nets do not show that the paper's do, measured from their files;
    None when they show it all."""
    depths = trained_depths()[0]
    if len(depths) < 2:
        return None  # nothing to compare across depth
    trained = {depth: mean_response(layer_responses("trained", depth)) for depth in depths}
    errors = {depth: models.classifier(trained_choice("residual", depth)).test_error for depth in depths}
    shallow, deep = depths
    missing = []
    if trained[deep]["residual"] >= trained[shallow]["residual"]:
        missing.append(f"ResNet-{deep}'s responses ({trained[deep]['residual']:.2f}) are not yet smaller than "
                       f"ResNet-{shallow}'s ({trained[shallow]['residual']:.2f}) as the paper's shrink with depth")
    if None not in errors.values() and errors[deep] >= errors[shallow]:
        missing.append(f"ResNet-{deep} ({100 * errors[deep]:.1f} % test error) is still behind ResNet-{shallow} "
                       f"({100 * errors[shallow]:.1f} %)")
    if not missing:
        return None
    return (f"These reference nets trained for 12 epochs, not the paper's 164: {' and '.join(missing)}; the full "
            "recipe (`python -m resnet_core reproduce table6` on a GPU) is what shows that.")


@st.cache_data(max_entries=8, show_spinner="Measuring gradients…")
def gradient_norms(depth: int) -> dict[tuple[str, str], pd.DataFrame]:
    """Per-layer gradient norms of one batch, plain vs residual, at init (and trained, for a reference depth)."""
    sample = probe()
    images, labels = sample.images[:GRADIENT_BATCH], sample.labels[:GRADIENT_BATCH]
    states = ("init", "trained") if depth in trained_depths()[0] else ("init",)
    norms = {}
    for state in states:
        for net in NETS:
            if state == "trained" and not sample.real:
                norms[net, state] = pd.DataFrame(models.shipped_metadata(trained_choice(net, depth))["gradient_norms"])
            else:
                norms[net, state] = rc.gradient_norms(_net(net, state, depth), images, labels)
    return norms


# ------------------------------------------------------------------------------------------- test reports
def recorded_report(choice: str) -> dict | None:
    """A shipped model's test report as recorded at export (no images needed), else None."""
    return models.shipped_metadata(choice).get("report") if choice.partition(":")[0] in models.SHIPPED else None


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
