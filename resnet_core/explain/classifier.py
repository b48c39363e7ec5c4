"""Networks ready to classify a user's image: a model with its class names and input normalisation.

Three sources: the demo checkpoints shipped in `resnet_core/demo/` (plain-20 and ResNet-20 on CIFAR-10,
see docs/DEMO_MODELS.md), a finished run of the store, and torchvision's ImageNet weights for
ResNet-18/50 loaded into our `variant="torchvision"` nets. Every model is returned in eval mode.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from ..errors import UserError
from ..nets.model import ResNet, build_model
from ..training.augment import Normalization
from ..training.checkpoint import InvalidCheckpointError, load_model, one_line, save_model
from .images import IMAGENET_CROP_FRACTION, model_input_to_image, to_model_input

DEMO_DIR = Path(__file__).resolve().parents[1] / "demo"
DEMO_NAMES = ("plain20", "resnet20")
# An uploaded checkpoint may be at most this large: ResNet-110's with its optimizer state is 14 MB, ResNet-1202's
# 155 MB. The server's maxUploadSize (.streamlit/config.toml) refuses larger files before they reach Python.
MAX_UPLOAD_BYTES = 50 * 2**20
# CIFAR-10's class names (in its label order) and per-channel statistics of its 50,000 training images, [0, 1]
# units: what a run's checkpoint, which names neither, was trained with when it was trained on CIFAR-10.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
# torchvision's original ImageNet weights (IMAGENET1K_V1): trained with the paper's recipe, as close to
# Table 3/4 as public weights get.
IMAGENET_NAMES = ("resnet18", "resnet50")


class WeightsUnavailableError(UserError):
    """Pretrained weights that are neither in the local torch cache nor downloadable."""


@dataclass(frozen=True)
class Classifier:
    """A network in eval mode, the names of its classes and the normalisation it was trained with."""

    label: str
    model: ResNet
    classes: tuple[str, ...]
    normalization: Normalization  # what it was trained with: per pixel (a mean image) or per channel
    test_error: float | None = None  # fraction, where measured

    @property
    def input_size(self) -> int:
        return self.model.spec.input_size

    @property
    def crop_fraction(self) -> float:
        """How much of an image's shorter side the net sees (see images.to_model_input): ImageNet nets were tested on
        the centre 224 of images resized to 256 (§3.4), CIFAR nets on whole images."""
        return IMAGENET_CROP_FRACTION if self.model.spec.family == "imagenet" else 1.0

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, S, S) images, already of the net's input size, as the net sees them."""
        return self.normalization(images)

    def model_input(self, image: Image.Image) -> torch.Tensor:
        """(1, 3, S, S): `image` resized, cropped and normalised as this network was tested."""
        return to_model_input(image, self.input_size, self.normalization, crop_fraction=self.crop_fraction)

    def seen_image(self, x: torch.Tensor) -> Image.Image:
        """The picture in a (1, 3, S, S) `model_input`: the image as this network sees it."""
        return model_input_to_image(x, self.normalization)

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax (N, classes) for model input `x`; the model must stay in eval mode (BN's running stats)."""
        return self.model(x).softmax(-1)

    def top_k(self, x: torch.Tensor, k: int = 5) -> list[tuple[str, float]]:
        """The `k` likeliest classes of one image and their probabilities, likeliest first."""
        values, indices = self.probabilities(x)[0].topk(min(k, len(self.classes)))
        return [(self.classes[index], float(value)) for value, index in zip(values, indices.tolist())]


# ------------------------------------------------------------------------------------------- demo checkpoints
def demo_path(name: str) -> Path:
    if name not in DEMO_NAMES:
        raise UserError(f"Unknown demo model {name!r}; allowed: {', '.join(DEMO_NAMES)}.")
    return DEMO_DIR / f"{name}.safetensors"


def from_checkpoint(path: str | os.PathLike, label: str | None = None) -> Classifier:
    """A classifier from a checkpoint whose metadata carries `classes` and which records its normalisation (as
    `export_classifier` writes them; the demo and reference files, older, carry per-channel `mean` and `std`)."""
    model, metadata = load_model(path)
    return _with_classes(model, metadata, Path(path).name, label)


def _with_classes(model: ResNet, metadata: dict, name: str, label: str | None = None) -> Classifier:
    classes = model.classes or ()
    if model.normalization is None or len(classes) != model.spec.num_classes:
        raise InvalidCheckpointError(f"{name} lacks the class names or the normalisation a classifier "
                                     f"needs ({model.spec.num_classes} names in metadata 'classes', and "
                                     "'normalization' or per-channel 'mean' and 'std').")
    return Classifier(label or metadata.get("label") or model.spec.name, model, classes, model.normalization,
                      test_error=metadata.get("test_error"))


def uploaded_classifier(data: bytes, name: str, max_bytes: int = MAX_UPLOAD_BYTES) -> Classifier:
    """A classifier from the bytes of a `.safetensors` checkpoint of this project someone uploaded: a run's (as the
    Runs page downloads it) or an exported one. Read by `load_model`, so refused exactly as `load_checkpoint`
    refuses a file, and never unpickled, whatever its name says; raises `InvalidCheckpointError` in one sentence.

    A run's checkpoint records its dataset's class names; one from before they were recorded names none: a 10-class
    CIFAR net is then taken to be a CIFAR-10 one, the only such dataset the app trains on besides the synthetic
    patterns.
    """
    shown = Path(name).name
    if len(data) > max_bytes:
        raise InvalidCheckpointError(f"{shown} is {len(data) / 2**20:,.1f} MB; a checkpoint may be at most "
                                     f"{max_bytes / 2**20:,.0f} MB.")
    with tempfile.TemporaryDirectory(prefix="resnet-upload-") as folder:
        # This suffix makes load_model read safetensors: a pickle renamed .safetensors fails to parse, unexecuted.
        path = Path(folder) / f"{Path(shown).stem or 'upload'}.safetensors"
        path.write_bytes(data)
        model, metadata = load_model(path)
    label = f"{shown} ({model.spec.name})"
    if model.classes is not None:
        return _with_classes(model, metadata, shown, label)
    spec = model.spec
    if spec.family != "cifar" or spec.num_classes != len(CIFAR10_CLASSES):
        raise InvalidCheckpointError(f"{shown} names no classes, and only a 10-class CIFAR net's can be assumed "
                                     "(CIFAR-10's); export it with its class names (metadata 'classes').")
    # A run's checkpoint records its normalisation; one written before that was recorded was normalised per channel
    # with its dataset's statistics: CIFAR-10's, as assumed above.
    normalization = model.normalization or Normalization.from_stats(CIFAR10_MEAN, CIFAR10_STD)
    return Classifier(f"{label}, CIFAR-10 classes assumed", model, CIFAR10_CLASSES, normalization)


def demo_classifier(name: str) -> Classifier:
    """A demo model shipped with the package: `plain20` or `resnet20`, trained on CIFAR-10."""
    return from_checkpoint(demo_path(name))


def export_classifier(path: str | os.PathLike, classifier: Classifier, **metadata) -> None:
    """Write `classifier` as a model-only checkpoint that `from_checkpoint` reads back whole."""
    save_model(path, classifier.model, classifier.normalization, label=classifier.label,
               classes=list(classifier.classes), test_error=classifier.test_error, **metadata)


# ------------------------------------------------------------------------------------------- runs of the store
def run_classifier(store, run_id: int) -> Classifier:
    """A run's latest checkpoint, with the class names and normalisation it records. An old checkpoint records
    neither: its dataset, which must then be readable here, names the classes, and it was normalised per channel
    with that dataset's statistics."""
    from ..training.data import load_data, storage

    run = store.run(run_id)
    latest = store.latest_checkpoint(run_id)
    if latest is None:
        raise InvalidCheckpointError(f"Run {run_id} has no checkpoint yet; it writes one at every evaluation.")
    model, metadata = load_model(latest[1])
    # The error of exactly these weights: a run evaluates (its test or validation split) at each checkpoint it writes,
    # not at a cancel's.
    error = next((row["error"] for row in store.metrics(run_id, after_iteration=latest[0] - 1)
                  if row["kind"] != "train" and row["iteration"] == latest[0]), None)
    metadata = {**metadata, "label": f"run {run_id}: {run.name}", "test_error": error}
    if model.normalization is not None and model.classes is not None:
        return _with_classes(model, metadata, latest[1].name)
    spec = model.spec
    data = load_data(run.data, **storage(spec.family, spec.input_size), home=store.home)
    normalization = model.normalization or Normalization.of("per-channel", data)
    return Classifier(metadata["label"], model, tuple(data.classes), normalization, test_error=metadata["test_error"])


# ------------------------------------------------------------------------------------------- torchvision ImageNet
def imagenet_weights(name: str):
    """torchvision's weights enum entry for `name` (its url and measured accuracy)."""
    from torchvision.models import ResNet18_Weights, ResNet50_Weights

    if name not in IMAGENET_NAMES:
        raise UserError(f"No ImageNet weights for {name!r}; allowed: {', '.join(IMAGENET_NAMES)}.")
    return {"resnet18": ResNet18_Weights, "resnet50": ResNet50_Weights}[name].IMAGENET1K_V1


def torchvision_weights_path(weights) -> Path:
    """Where torch's hub cache keeps the file of torchvision's `weights` ($TORCH_HOME/hub/checkpoints/…)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / weights.url.rsplit("/", 1)[1]


def imagenet_weights_path(name: str) -> Path:
    return torchvision_weights_path(imagenet_weights(name))


def load_torchvision_weights(weights, label: str, into: Callable[[dict], nn.Module], *,
                             download: bool = False) -> nn.Module:
    """`into(state_dict)` of torchvision's published `weights` (a net built and loaded with them), read from the local
    torch cache with weights_only (torchvision's own builders would unpickle anything); with `download`, fetched
    first when missing. Raises `WeightsUnavailableError` saying where to put the file, `InvalidCheckpointError` for a
    file that is not those weights. `label` names them in the messages."""
    path = torchvision_weights_path(weights)
    if not path.is_file() and download:
        try:
            torch.hub.load_state_dict_from_url(weights.url, check_hash=True, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as error:  # offline, proxy, hash mismatch, disk full
            raise WeightsUnavailableError(f"Cannot download {weights.url} ({one_line(error)}); put that file at {path} "
                                          "instead.") from None
    if not path.is_file():
        raise WeightsUnavailableError(f"torchvision's {label} weights are not in the torch cache; download "
                                      f"{weights.url} and put it at {path} (or set TORCH_HOME).")
    try:
        return into(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as error:  # noqa: BLE001 — weights_only runs no code; any failure means a bad file
        raise InvalidCheckpointError(f"{path} is not torchvision's {label} weights ({one_line(error)}); "
                                     "delete it and download it again.") from None


def imagenet_classifier(name: str, *, download: bool = False) -> Classifier:
    """torchvision's ImageNet `resnet18` or `resnet50` (IMAGENET1K_V1) in our net, from the local torch cache;
    with `download`, fetched first when missing. Raises `WeightsUnavailableError` saying where to put the file."""
    weights = imagenet_weights(name)

    def into(state: dict) -> nn.Module:
        model = build_model(name, variant="torchvision")
        model.load_state_dict(state)
        return model

    model = load_torchvision_weights(weights, f"{name} ImageNet", into, download=download)
    transform = weights.transforms()
    return Classifier(f"ResNet-{name.removeprefix('resnet')} (ImageNet)", model.eval(),
                      tuple(weights.meta["categories"]),
                      Normalization.from_stats(transform.mean, transform.std))
