"""torchvision's segmentation and detection nets on a ResNet backbone, ready to label the pixels of a photo.

Six published models: DeepLabV3 and FCN on ResNet-50/101 (semantic segmentation, trained on the part of COCO that
shows the 20 PASCAL VOC classes, so 21 labels with the background) and Faster R-CNN on ResNet-50-FPN, v1 and v2
(object detection, COCO's 80 classes under 91 ids). Their weights come from torch's hub cache
($TORCH_HOME/hub/checkpoints/…, as the Classify page's ImageNet weights do), are fetched only when asked
(`download=True`), and are read with `weights_only=True` into a skeleton built here: torchvision's own builders
unpickle the file with `weights_only=False`. Inference returns plain numpy arrays.

The paper's own detection numbers (Tables 7 and 8) are data here too, with what separates them from these models.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..explain.classifier import load_torchvision_weights, torchvision_weights_path
from ..errors import UserError

TASKS = ("segmentation", "detection")
# Every photo is resized to this shorter side before a net sees it (2 CPU cores: DeepLabV3-R50 ~2.6 s, Faster R-CNN
# v2 ~4.5 s at 512×683). torchvision evaluates its segmentation weights at 520 px and trained its detectors at 800.
SHORT_SIDE = 512  # pixels
MAX_LONG_SIDE = 1024  # pixels: a panorama keeps its shape and is not blown up past this
# Faster R-CNN keeps every box scoring at least this (torchvision's default); the page's slider filters above it.
MIN_SCORE = 0.05
# The attributions of a segmentation model's pixel that cost one forward and one backward pass (a few seconds on a
# CPU at SHORT_SIDE); Integrated Gradients (50 of each) and Occlusion (225 forward passes) would take minutes.
EXPLAIN_METHODS = ("grad_cam", "saliency")


@dataclass(frozen=True)
class PixelModel:
    """One published model: what it is and where torchvision keeps it."""

    name: str  # torchvision's builder, e.g. deeplabv3_resnet50
    task: str  # one of TASKS
    label: str
    backbone: str  # our spec table's name for its ResNet: resnet50 or resnet101
    module: str  # where torchvision defines the builder and its weights
    weights_enum: str
    weights_member: str
    head: str  # what replaces the classifier's pool · fc, one sentence
    # Weights kept channels-last (oneDNN's NHWC kernels) where that measured faster here: benchmarks/bench_pixels.py.
    channels_last: bool = False

    def weights(self):
        """torchvision's weights enum entry (its url, categories and measured metrics)."""
        return getattr(getattr(importlib.import_module(self.module), self.weights_enum), self.weights_member)


_SEGMENTATION, _DETECTION = "torchvision.models.segmentation", "torchvision.models.detection"
_DEEPLAB_HEAD = ("ASPP (atrous spatial pyramid pooling, rates 12/24/36, plus image pooling) on conv5_x's map, a 1×1 "
                 "convolution to the 21 classes, then bilinear upsampling to the input")
_FCN_HEAD = "a 3×3 convolution and a 1×1 convolution to the 21 classes on conv5_x's map, then bilinear upsampling"
_FPN_HEAD = ("a feature pyramid (FPN) over conv2_x…conv5_x feeding a region proposal network and, after RoI Align, "
             "a box head that classifies and refines each proposal")
MODELS: dict[str, PixelModel] = {model.name: model for model in (
    PixelModel("deeplabv3_resnet50", "segmentation", "DeepLabV3 · ResNet-50", "resnet50", _SEGMENTATION,
               "DeepLabV3_ResNet50_Weights", "COCO_WITH_VOC_LABELS_V1", _DEEPLAB_HEAD, channels_last=True),
    PixelModel("fcn_resnet50", "segmentation", "FCN · ResNet-50", "resnet50", _SEGMENTATION,
               "FCN_ResNet50_Weights", "COCO_WITH_VOC_LABELS_V1", _FCN_HEAD),
    PixelModel("deeplabv3_resnet101", "segmentation", "DeepLabV3 · ResNet-101", "resnet101", _SEGMENTATION,
               "DeepLabV3_ResNet101_Weights", "COCO_WITH_VOC_LABELS_V1", _DEEPLAB_HEAD, channels_last=True),
    PixelModel("fcn_resnet101", "segmentation", "FCN · ResNet-101", "resnet101", _SEGMENTATION,
               "FCN_ResNet101_Weights", "COCO_WITH_VOC_LABELS_V1", _FCN_HEAD),
    PixelModel("fasterrcnn_resnet50_fpn", "detection", "Faster R-CNN · ResNet-50-FPN (v1)", "resnet50", _DETECTION,
               "FasterRCNN_ResNet50_FPN_Weights", "COCO_V1", _FPN_HEAD),
    PixelModel("fasterrcnn_resnet50_fpn_v2", "detection", "Faster R-CNN · ResNet-50-FPN v2", "resnet50", _DETECTION,
               "FasterRCNN_ResNet50_FPN_V2_Weights", "COCO_V1", _FPN_HEAD),
)}
# v1 is the one trained "following a similar training recipe as on the paper" (torchvision's docs), so it comes first.
DEFAULT_MODEL = {"segmentation": "deeplabv3_resnet50", "detection": "fasterrcnn_resnet50_fpn"}


def model_info(name: str) -> PixelModel:
    try:
        return MODELS[name]
    except KeyError:
        raise UserError(f"Unknown model {name!r}; allowed: {', '.join(MODELS)}.") from None


def models_for(task: str) -> tuple[str, ...]:
    if task not in TASKS:
        raise UserError(f"Unknown task {task!r}; allowed: {', '.join(TASKS)}.")
    return tuple(name for name, model in MODELS.items() if model.task == task)


def categories(name: str) -> tuple[str, ...]:
    """The class names by output index: `__background__` first; detection's 91 ids hold 'N/A' for unused ones."""
    return tuple(model_info(name).weights().meta["categories"])


def weights_path(name: str) -> Path:
    """Where torch's hub cache keeps torchvision's file for `name` ($TORCH_HOME/hub/checkpoints/…)."""
    return torchvision_weights_path(model_info(name).weights())


# ------------------------------------------------------------------------------------------- what torchvision measured
@dataclass(frozen=True)
class PublishedMetric:
    dataset: str
    metric: str
    value: float  # % for accuracies and mAP


_METRIC_NAMES = {"miou": "mIoU", "pixel_acc": "pixel accuracy", "box_map": "box mAP@[.5, .95]"}
_DATASET_NAMES = {"COCO-val2017-VOC-labels": "COCO val2017, VOC's 20 classes", "COCO-val2017": "COCO val2017"}


def published_metrics(name: str) -> list[PublishedMetric]:
    """The accuracy torchvision measured for the published weights (its docs' table, from the weights' meta)."""
    measured = model_info(name).weights().meta.get("_metrics", {})
    return [PublishedMetric(_DATASET_NAMES.get(dataset, dataset), _METRIC_NAMES.get(key, key), float(value))
            for dataset, values in measured.items() for key, value in values.items()]


def published_size(name: str) -> tuple[int, float]:
    """(parameters, GFLOPs per image at torchvision's evaluation size) as torchvision publishes them."""
    meta = model_info(name).weights().meta
    return int(meta["num_params"]), float(meta.get("_ops", float("nan")))


# ------------------------------------------------------------------------------------------- the paper's numbers
@dataclass(frozen=True)
class PaperDetectionRow:
    """One row of the paper's Table 7 or 8: Faster R-CNN with VGG-16 against the same with ResNet-101, mAP in %."""

    table: str
    test_set: str
    training_data: str
    metric: str
    vgg16: float
    resnet101: float


# §4.3 and appendix A (checked against the paper's text): the baseline Faster R-CNN, single-scale at a 600-px shorter
# side; ResNet-101's conv1…conv4_x (stride 16) shared by the RPN (300 proposals) and Fast R-CNN, RoI pooling before
# conv5_1, conv5_x run per region; BatchNorm frozen at its ImageNet statistics.
PAPER_DETECTION = (
    PaperDetectionRow("Table 7", "PASCAL VOC 2007 test", "VOC 07+12 trainval", "mAP@.5", 73.2, 76.4),
    PaperDetectionRow("Table 7", "PASCAL VOC 2012 test", "VOC 07++12", "mAP@.5", 70.4, 73.8),
    PaperDetectionRow("Table 8", "COCO val (40k images)", "COCO train (80k images)", "mAP@.5", 41.5, 48.4),
    PaperDetectionRow("Table 8", "COCO val (40k images)", "COCO train (80k images)", "mAP@[.5, .95]", 21.2, 27.2),
)
# Which of the paper's tables a model is compared with: COCO detection with Table 8 (then Table 7); segmentation,
# which the paper does not report, with detection on the same 20 VOC classes.
PAPER_TABLES = {"detection": ("Table 8", "Table 7"), "segmentation": ("Table 7",)}


def paper_rows(name: str) -> list[PaperDetectionRow]:
    tables = PAPER_TABLES[model_info(name).task]
    return sorted((row for row in PAPER_DETECTION if row.table in tables), key=lambda row: tables.index(row.table))


def differences(name: str) -> list[str]:
    """What separates this model from the paper's ResNet-101 Faster R-CNN, one sentence each."""
    model = model_info(name)
    depth = model.backbone.removeprefix("resnet")
    if model.task == "segmentation":
        return [
            "The paper reports no semantic segmentation; its nearest numbers are detection on the same 20 PASCAL VOC "
            "classes (Table 7).",
            f"Backbone: ResNet-{depth} (torchvision's v1.5: the stride in each bottleneck's 3×3), with conv4_x and "
            "conv5_x dilated instead of strided, so the last map is 1/8 of the image, not 1/32.",
            f"Head: {model.head}; the classifier's pool · fc is gone.",
            "Trained by torchvision on COCO train2017 images labelled with VOC's 20 classes; measured on COCO val2017 "
            "with those labels, not on VOC's test sets.",
            f"Here the photo is resized to a {SHORT_SIDE}-px shorter side (torchvision evaluated at 520 px).",
        ]
    recipe = ("v1 follows torchvision's reference recipe (its docs: \"a similar training recipe as on the paper\"), "
              "its backbone's BatchNorm frozen at the ImageNet statistics as in appendix A"
              if name == "fasterrcnn_resnet50_fpn" else
              "v2 follows torchvision's \"enhanced training recipe\", with BatchNorm in a box head of four 3×3 "
              "convolutions and a 2-conv RPN head")
    return [
        f"Backbone: ResNet-{depth}, not the paper's ResNet-101 (torchvision publishes no ResNet-101 Faster R-CNN).",
        "Features: an FPN over conv2_x…conv5_x serves the RPN and the box head; the paper shared conv1…conv4_x "
        "(stride 16) and ran conv5_x on each RoI-pooled region (appendix A).",
        f"Training: {recipe}; on COCO train2017 at an 800-px shorter side by default, measured on val2017 (5k "
        "images). The paper trained on COCO train (80k images) at 600 px and measured on val (40k).",
        f"Here the photo is resized to a {SHORT_SIDE}-px shorter side for speed on a CPU: small objects may be missed.",
    ]


# ------------------------------------------------------------------------------------------- building and loading
def skeleton(name: str) -> torch.nn.Module:
    """The architecture of the published weights with random weights (no download, no ImageNet backbone):
    what `load` fills, and what benchmarks and tests time or save without the published file."""
    model = model_info(name)
    builder = getattr(importlib.import_module(model.module), model.name)
    options = dict(weights=None, weights_backbone=None, num_classes=len(categories(name)))
    if model.task == "segmentation":
        return builder(**options, aux_loss=True)  # the published files hold the auxiliary head too
    # The detector's own transform resizes to min_size; the photo arrives at SHORT_SIDE already, so keep it there.
    return builder(**options, min_size=SHORT_SIDE, max_size=MAX_LONG_SIDE, box_score_thresh=MIN_SCORE)


def _load_state(model: torch.nn.Module, state: dict, name: str) -> None:
    # The v1 detector's published backbone uses FrozenBatchNorm2d, which has no num_batches_tracked; the skeleton's
    # BatchNorm2d in eval mode computes the same thing from the same four tensors.
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [key for key in missing if not key.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"{len(missing)} missing and {len(unexpected)} unexpected tensors, e.g. "
                         f"{(missing + unexpected)[0]}")
    if name == "fasterrcnn_resnet50_fpn":  # torchvision's builder sets these weights' eps to 0 (overwrite_eps)
        for module in model.backbone.body.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eps = 0.0


def load(name: str, *, download: bool = False) -> PixelNet:
    """The published model `name` in eval mode, from the local torch cache; with `download`, fetched first when
    missing. Raises `WeightsUnavailableError` saying where to put the file, `InvalidCheckpointError` for a bad one."""
    model = model_info(name)

    def into(state: dict) -> torch.nn.Module:
        net = skeleton(name)
        _load_state(net, state, name)
        return net

    return PixelNet(name, load_torchvision_weights(model.weights(), model.label, into, download=download))


# ------------------------------------------------------------------------------------------- inference
@dataclass(frozen=True)
class Segmentation:
    """Every pixel's likeliest class and its softmax probability, on the working image."""

    classes: np.ndarray  # (H, W) uint8: index into categories
    confidence: np.ndarray  # (H, W) float32 in [0, 1]
    categories: tuple[str, ...]

    def present(self) -> list[int]:
        """The classes some pixel is labelled with, by index."""
        return np.unique(self.classes).tolist()


@dataclass(frozen=True)
class Detection:
    """Boxes in the working image's pixels, likeliest first, each scoring at least MIN_SCORE."""

    boxes: np.ndarray  # (N, 4) float32: x0, y0, x1, y1
    labels: np.ndarray  # (N,) int64: index into categories
    scores: np.ndarray  # (N,) float32 in [0, 1], descending
    categories: tuple[str, ...]

    def above(self, threshold: float) -> Detection:
        """The boxes scoring at least `threshold`."""
        keep = self.scores >= threshold
        return Detection(self.boxes[keep], self.labels[keep], self.scores[keep], self.categories)


def working_image(image: Image.Image) -> Image.Image:
    """`image` in RGB at a SHORT_SIDE shorter side (up or down), its longer side at most MAX_LONG_SIDE."""
    width, height = image.size
    scale = min(SHORT_SIDE / min(width, height), MAX_LONG_SIDE / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if image.mode != "RGB":  # converting first: Pillow resizes palette images by nearest neighbour only
        image = image.convert("RGB")
    return image if size == image.size else image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)


def _pixels(image: Image.Image) -> torch.Tensor:
    """(3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255


@dataclass(frozen=True)
class PixelNet:
    """A published model in eval mode, shared read-only: callers run forward passes only."""

    name: str
    model: torch.nn.Module

    def __post_init__(self) -> None:
        self.model.eval()
        # DeepLabV3's dilated convolutions and ASPP run 9–30 % faster on channels-last weights (so channels-last
        # maps) on this project's Intel Xeon; FCN and Faster R-CNN v2 ran up to 16 % slower so, v1 the same
        # (docs/PIXELS.md). bf16 autocast was slower still (DeepLabV3-R50 5.0 s against 3.1), so weights stay fp32.
        if self.info.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if hasattr(self.model, "aux_classifier"):  # a training loss only: it would double conv4_x's head's work
            self.model.aux_classifier = None

    @property
    def info(self) -> PixelModel:
        return model_info(self.name)

    @property
    def categories(self) -> tuple[str, ...]:
        return categories(self.name)

    def run(self, image: Image.Image) -> Segmentation | Detection:
        """The task's answer for `image`, already a working image (`working_image`)."""
        return self.segment(image) if self.info.task == "segmentation" else self.detect(image)

    def model_input(self, image: Image.Image) -> torch.Tensor:
        """A segmentation model's (1, 3, H, W) input for the working image: normalised as its weights were trained
        (the detectors normalise their own)."""
        transform = self.info.weights().transforms()
        mean, std = torch.tensor(transform.mean).view(3, 1, 1), torch.tensor(transform.std).view(3, 1, 1)
        return ((_pixels(image) - mean) / std).unsqueeze(0)

    @torch.inference_mode()
    def segment(self, image: Image.Image) -> Segmentation:
        logits = self.model(self.model_input(image))["out"][0]  # (classes, H, W), upsampled to the input by the model
        confidence, classes = logits.softmax(0).max(0)
        return Segmentation(classes.to(torch.uint8).numpy(), confidence.float().numpy(), self.categories)

    @torch.inference_mode()
    def detect(self, image: Image.Image) -> Detection:
        (found,) = self.model([_pixels(image)])  # the detector normalises and resizes itself
        return Detection(found["boxes"].float().numpy(), found["labels"].numpy().astype(np.int64),
                         found["scores"].float().numpy(), self.categories)
