"""A trained net and the data to probe it with, for the experiments (lesion study, loss landscape): named as the CLI
and the Experiments page name them, checked to be a CIFAR net of this project whose classes the data matches.

    model, data = trained_with_data("3", "cifar10")                       # run 3 of the store, on CIFAR-10
    model, data = trained_with_data("resnet_core/reference/resnet56.safetensors", "/data/cifar10-jpeg")
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import UserError
from ..nets.model import ResNet
from ..training.augment import Pipeline
from ..training.checkpoint import load_model
from ..training.data import ImageData, check_classes, load_data, storage
from ..training.recipe import Recipe

logger = logging.getLogger(__name__)


def trained_model(name: str, home: str | os.PathLike | None = None) -> ResNet:
    """The net of `name`: a run id of the store in `home` (its latest checkpoint), `reference:NET` (a shipped
    reference net), or a checkpoint file's path; in eval mode. One-line UserError for anything else, and for a net
    that is not one of this project's CIFAR nets."""
    if name.startswith("reference:"):
        from .catalog import reference

        path = reference(name.partition(":")[2]).path
    elif name.lstrip("-").isdigit():
        from ..runs.store import Store

        store = Store(home)
        kind = store.run(int(name)).kind  # no such run: its own message
        if kind != "train":
            raise UserError(f"Run {name} is a {kind} run, not a classifier's; name a training run, reference:NET or "
                            "a checkpoint's path.")
        latest = store.latest_checkpoint(int(name))
        if latest is None:
            raise UserError(f"Run {name} has no checkpoint yet; it writes one at every evaluation.")
        path = latest[1]
    else:
        path = Path(name)
    model, _ = load_model(path)  # InvalidCheckpointError (a UserError) for a file that is not ours
    if model.spec.family != "cifar":
        raise UserError(f"{name} holds {model.spec.name}, an ImageNet net; the experiments and the segmenter take "
                        "the CIFAR nets of §4.2 (resnet20, plain56, …).")
    return model.eval()


def probe_data(model: ResNet, source: str, home: str | os.PathLike | None = None) -> ImageData:
    """`source` loaded as `model` sees it, refused in one line when it has another number of classes than the
    model, and logged when it is another dataset than the one its checkpoint records (other class names): the
    `synthetic` patterns are a fast stand-in for any data, but a real dataset of as many classes is likely a
    mistake."""
    data = load_data(source, **storage(model.spec.family, model.spec.input_size), home=home)
    check_classes(data, model.spec.name, model.spec.num_classes)
    if model.classes is not None and model.classes != data.classes and source != "synthetic":
        logger.warning("The classes of %s (%s) are not those %s was trained on (%s); its errors there do not mean "
                       "what they would on its own dataset.", data.name, ", ".join(data.classes), model.spec.name,
                       ", ".join(model.classes))
    return data


def trained_with_data(name: str, source: str, home: str | os.PathLike | None = None) -> tuple[ResNet, ImageData]:
    model = trained_model(name, home)
    return model, probe_data(model, source, home)


def test_pipeline(model: ResNet, data: ImageData) -> Pipeline:
    """How test images become `model`'s input: the normalisation its checkpoint records or, for a checkpoint that
    records none (written before it was recorded), per channel with `data`'s statistics, as its run tested it."""
    return Pipeline.for_recipe(Recipe(per_pixel_mean=False), data, model.spec.input_size,
                               normalization=model.normalization)
