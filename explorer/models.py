"""Which networks the Classify and Inside pages can ask, loaded once per checkpoint file.

A choice is a short id kept in widget state (`reference:resnet56`, `demo:resnet20`, `run:3`, `imagenet:resnet50`:
the names of `resnet_core.explain.catalog`, which `python -m resnet_core models` lists too); the models
themselves live in `st.cache_resource`, keyed by the checkpoint's path and modification time, so a run that
writes a newer checkpoint is reloaded. A checkpoint someone uploads (`upload:<sha256 prefix>`) lives in their
session only. Cached models are in eval mode and shared by every session: callers
only run forward passes under no_grad, and attributions work on a private copy. A training job never sees
them: it is another process with its own copy read from the store.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import streamlit as st

import resnet_core as rc
from explorer.run_service import net_label, store  # store: one SQLite connection per thread
from resnet_core.explain import catalog
from resnet_core.explain import classifier as clf
from resnet_core.training.data import CIFAR_FOLDERS, ImageData, cifar_folder, load_data, stored_size

UPLOADS = "uploaded_models"  # st.session_state: upload choice id -> Classifier
IMAGENET_LABELS = {"resnet18": "ResNet-18 (torchvision, ImageNet)", "resnet50": "ResNet-50 (torchvision, ImageNet)"}
SHIPPED = ("reference", "demo")  # kinds of choice whose file is part of the package, with what its export measured


def model_choices() -> dict[str, str]:
    """Choice id → label, most accurate first within each kind: the reference nets, the demos, finished runs
    with a checkpoint, then the ImageNet weights (offered even when not downloaded yet: the page offers to)."""
    choices = {entry.name: _label(entry) for entry in catalog.available_models(store())
               if entry.source != "torchvision"}
    choices.update({f"imagenet:{name}": label for name, label in IMAGENET_LABELS.items()})
    return choices


def _label(entry: catalog.ModelEntry) -> str:
    error = "" if entry.test_error is None else f", {100 * entry.test_error:.1f} % test error"
    return f"{entry.label}{error}"


def default_pair(choices: dict[str, str]) -> tuple[str, str]:
    """The most accurate plain net and the most accurate residual net offered (choices come best first): the
    reference plain-20 and ResNet-20 while they are there, else what is."""
    def best(prefix: str) -> str:
        return next((choice for choice in choices if choice.partition(":")[2].startswith(prefix)), next(iter(choices)))

    return best("plain"), best("resnet")


def checkpoint_path(choice: str) -> Path:
    kind, _, name = choice.partition(":")
    if kind == "reference":
        return catalog.reference(name).path
    if kind == "demo":
        return clf.demo_path(name)
    if kind == "run":
        latest = store().latest_checkpoint(int(name))
        if latest is None:
            raise rc.InvalidCheckpointError(f"Run {name} has no checkpoint yet; it writes one at every evaluation.")
        return latest[1]
    if kind == "imagenet":
        return clf.imagenet_weights_path(name)
    raise ValueError(f"Unknown model choice {choice!r}.")


def classifier(choice: str, *, download: bool = False) -> clf.Classifier:
    """The network of `choice`; raises a `ValueError` with a one-line message when it cannot be loaded."""
    if choice.startswith("upload:"):
        try:
            return st.session_state[UPLOADS][choice]
        except KeyError:
            raise rc.InvalidCheckpointError("That uploaded checkpoint is no longer in this session; upload it "
                                            "again.") from None
    path = checkpoint_path(choice)
    stamp = path.stat().st_mtime_ns if path.exists() else None
    return _load(choice, str(path), stamp, download)


# Errors are not cached: a file put in place (or a download that now works) loads on the next try.
@st.cache_resource(max_entries=8, show_spinner="Loading the model…")
def _load(choice: str, path: str, stamp: int | None, download: bool) -> clf.Classifier:
    kind, _, name = choice.partition(":")
    if kind == "reference":
        return clf.from_checkpoint(path, catalog.reference(name).label)
    if kind == "demo":
        return clf.from_checkpoint(path, f"{net_label(name)} demo")
    if kind == "run":
        return clf.run_classifier(store(), int(name))
    return clf.imagenet_classifier(name, download=download)


def uploaded_choices(files: list[tuple[str, bytes]]) -> tuple[dict[str, str], list[str]]:
    """The checkpoints in this session's uploader: choice id -> label for each that loads, and one error line for
    each that does not. Each model is kept in this session's state while its file stays in the uploader: not in
    a cache every session shares, so nobody else's picker can offer it. The id is the file's hash, so the
    prediction caches (keyed by choice) never mix two files."""
    kept = st.session_state.get(UPLOADS, {})
    loaded, errors = {}, []
    for name, data in files:
        choice = f"upload:{hashlib.sha256(data).hexdigest()[:16]}"
        if choice not in kept:
            try:
                kept[choice] = clf.uploaded_classifier(data, name)
            except rc.InvalidCheckpointError as error:  # shown on the page: one sentence naming the file
                errors.append(str(error))
                continue
        loaded[choice] = kept[choice]
    st.session_state[UPLOADS] = loaded
    return {choice: f"yours: {model.label}" for choice, model in loaded.items()}, errors


def shipped_metadata(choice: str) -> dict:
    """What a reference or demo model recorded at export: test report, Fig. 7 stds, gradient norms."""
    path = checkpoint_path(choice)
    return _shipped_metadata(str(path), path.stat().st_mtime_ns)


@st.cache_data(max_entries=8)
def _shipped_metadata(path: str, _stamp: int) -> dict:
    return rc.load_checkpoint(path)[1]


# ------------------------------------------------------------------------------------------- datasets
def local_dataset_source(model: clf.Classifier, choice: str) -> str | None:
    """A dataset for this model's classes that can be read here without downloading, or None."""
    kind, _, name = choice.partition(":")
    if kind == "run":
        candidates = [store().run(int(name)).data]
    elif kind in SHIPPED:  # the folder it was trained on, else the official CIFAR-10 once downloaded
        candidates = [shipped_metadata(choice).get("data"), "cifar10"]
    elif kind == "upload":
        candidates = ["cifar10"] if model.classes == clf.CIFAR10_CLASSES else []
    else:
        return None  # ImageNet is never on this machine
    for source in filter(None, candidates):
        if source == "synthetic" or Path(source).is_dir():
            return source
        if source in CIFAR_FOLDERS and cifar_folder(source, store().home).is_dir():  # nothing to download
            return source
    return None


@st.cache_resource(max_entries=2, show_spinner="Reading the dataset (decoded once, then cached)…")
def dataset(source: str, image_size: int) -> ImageData:
    return load_data(source, image_size=image_size, home=store().home)


def dataset_for(model: clf.Classifier, choice: str) -> ImageData | None:
    source = local_dataset_source(model, choice)
    spec = model.model.spec
    return None if source is None else dataset(source, stored_size(spec.family, spec.input_size))
