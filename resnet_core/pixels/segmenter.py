"""A fully convolutional network (Long, Shelhamer & Darrell 2015, "FCN") on a CIFAR net of the paper: the net's stem
and stages as the backbone, a 1x1 convolution that scores every class at every position of the last stage's map, and
a bilinear upsampling of the scores to the input's size.

    segmenter = load_backbone(build_segmenter("resnet56", classes=11), "reference:resnet56", freeze=True)
    scores = segmenter(images)  # (B, 11, H, W) for (B, 3, H, W), H and W multiples of 4

The CIFAR nets of §4.2 are convolutional up to their global pooling, so they take any input size: their three stages
see a 64 x 64 scene at 64, 32 and 16 pixels. `skip=True` adds FCN-16s's skip: scores of the second-to-last stage (at
twice the last one's resolution) are added to the last stage's, upsampled 2x, before the final upsampling.
ImageNet nets are refused: their stride-32 maps (2 x 2 for a 64-pixel scene) leave nothing to segment.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError
from ..explain.trained import trained_model
from ..nets.model import ResNet
from ..nets.specs import NetSpec, get_spec
from ..training.augment import Normalization
from ..training.checkpoint import (FORMAT, METADATA_KEY, InvalidCheckpointError, add_normalization, one_line,
                                   optimizer_state, optimizer_tensors, read_normalization, write_file)

ALLOWED_BACKBONES = "a CIFAR net of §4.2, resnet{6n+2} or plain{6n+2} (resnet20, resnet56, plain56, …)"
RANDOM_BACKBONE = "random"  # load_backbone's source that keeps the He initialisation (§3.4)
# The NetSpec fields a backbone's weights depend on; the classifier's classes and the input size they were trained at
# do not (its fc is left out, and its convolutions take any size).
BACKBONE_FIELDS = ("family", "block", "blocks_per_stage", "widths", "residual", "shortcut", "variant")


@dataclass(frozen=True)
class SegmenterSpec:
    """A segmenter: its backbone's spec, the pixel classes it scores (the background included) and FCN-16s's skip."""

    backbone: NetSpec
    classes: int
    skip: bool = False

    def __post_init__(self) -> None:
        if self.backbone.family != "cifar":
            raise UserError(f"{self.backbone.name} is an ImageNet net; the segmenter's backbone must be "
                            f"{ALLOWED_BACKBONES}.")
        if not isinstance(self.classes, int) or isinstance(self.classes, bool) or self.classes < 2:
            raise UserError(f"A segmenter scores at least 2 classes (the background and one more); got "
                            f"{self.classes!r}.")
        if self.skip and len(self.backbone.widths) < 2:
            raise UserError(f"The skip adds scores of the second-to-last stage; {self.backbone.name} has one stage.")

    @property
    def name(self) -> str:
        """`fcn-resnet56`, or `fcn16s-resnet56` with the skip."""
        return f"{'fcn16s' if self.skip else 'fcn'}-{self.backbone.name}"

    @property
    def output_stride(self) -> int:
        """Input pixels per position of the last stage's map: each stage after the first halves it (§4.2)."""
        return 2 ** (len(self.backbone.widths) - 1)

    def to_dict(self) -> dict:
        return {"backbone": self.backbone.to_dict(), "classes": self.classes, "skip": self.skip}

    @classmethod
    def from_dict(cls, data: dict) -> "SegmenterSpec":
        return cls(NetSpec.from_dict(data["backbone"]), data["classes"], data["skip"])


class Backbone(nn.Module):
    """A CIFAR net's stem and stages: its own modules under its own names (`conv1`, `bn1`, `relu`, `layer1`, …), so
    its classifier's state dict, less the `fc`, loads as it is. The global pooling and the fc are left out: a module
    here that no forward called would be dead weight, and training would decay it for nothing."""

    def __init__(self, net: ResNet) -> None:
        super().__init__()
        self.stage_names = [f"layer{index + 1}" for index in range(len(net.spec.widths))]
        for name in ("conv1", "bn1", "relu", *self.stage_names):
            self.add_module(name, getattr(net, name))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's output, first to last: (B, C_k, H / 2^k, W / 2^k) for stage k = 0, 1, …"""
        x = self.relu(self.bn1(self.conv1(x)))  # ResNet.forward's CIFAR stem (§4.2: a 3x3 conv), (B, 16, H, W)
        features = []
        for name in self.stage_names:
            x = getattr(self, name)(x)
            features.append(x)
        return features


class SkipAdd(nn.Module):
    """FCN-16s's fusion: the upsampled coarse scores plus the finer stage's scores, a module so it can be hooked."""

    def forward(self, coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        return coarse + fine


class Segmenter(nn.Module):
    """Class scores for every pixel: (B, 3, H, W) -> (B, classes, H, W); `self.spec` says which segmenter.

    `normalization`: how its input is normalised, as the checkpoint of its backbone records it (`load_backbone`),
    or the scenes' statistics it was trained on; None until either sets it.
    """

    def __init__(self, spec: SegmenterSpec) -> None:
        super().__init__()
        self.spec = spec
        self.backbone = Backbone(ResNet(spec.backbone))
        channels = spec.backbone.out_channels
        self.classifier = nn.Conv2d(channels[-1], spec.classes, 1)
        final_stride = spec.output_stride
        if spec.skip:
            self.skip_classifier = nn.Conv2d(channels[-2], spec.classes, 1)
            self.upsample_to_skip = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            self.add = SkipAdd()
            final_stride //= 2
        # Fixed bilinear upsampling, as torchvision's FCN does (F.interpolate, align_corners=False); FCN learned it
        # from a bilinear start and found learning it gained little (Long et al. §3.3).
        self.upsample = nn.Upsample(scale_factor=final_stride, mode="bilinear", align_corners=False)
        # FCN §4.3: "We initialize the class scoring convolution layer to zero, finding random initialization to
        # yield neither better performance nor faster convergence": the skip starts adding nothing.
        for classifier in (self.classifier, getattr(self, "skip_classifier", None)):
            if classifier is not None:
                nn.init.zeros_(classifier.weight)
                nn.init.zeros_(classifier.bias)
        self.normalization: Normalization | None = None
        self.backbone_frozen = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stride = self.spec.output_stride
        if x.shape[-2] % stride or x.shape[-1] % stride:
            raise UserError(f"{self.spec.name} segments images whose sides are multiples of {stride} pixels; got "
                            f"{x.shape[-2]} x {x.shape[-1]}.")
        features = self.backbone(x)
        scores = self.classifier(features[-1])  # (B, classes, H / stride, W / stride)
        if self.spec.skip:
            scores = self.add(self.upsample_to_skip(scores), self.skip_classifier(features[-2]))  # (B, classes, 2x)
        return self.upsample(scores)  # (B, classes, H, W)

    def freeze_backbone(self) -> None:
        """Train the head alone: the backbone's parameters get no gradients and its BN stays in eval mode."""
        self.backbone.requires_grad_(False)
        self.backbone_frozen = True
        self.train(self.training)

    def train(self, mode: bool = True) -> "Segmenter":
        super().train(mode)
        if self.backbone_frozen:
            # In train mode BN would normalise with each batch's statistics and pull its running averages toward the
            # scenes': a "frozen" backbone would still change under the head. Eval mode keeps it the net it was.
            self.backbone.eval()
        return self


def build_segmenter(backbone: str | NetSpec, classes: int, *, skip: bool = False, seed: int = 0) -> Segmenter:
    """A segmenter of `classes` pixel classes on `backbone` (a name such as "resnet56" or a CIFAR NetSpec), its
    backbone He-initialised (§3.4) from `seed` (the global RNG is left as it was), its classifiers zero."""
    if isinstance(backbone, str):
        try:
            backbone = get_spec(backbone)
        except ValueError:
            raise UserError(f"Unknown backbone {backbone!r}; allowed: {ALLOWED_BACKBONES}.") from None
    spec = SegmenterSpec(backbone, classes, skip)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Segmenter(spec)


def load_backbone(segmenter: Segmenter, source: str, home: str | os.PathLike | None = None, *,
                  freeze: bool = False) -> Segmenter:
    """`segmenter` with the stem and stages of the trained net `source`, and that net's input normalisation;
    returned for chaining. `source` is what `explain.trained.trained_model` takes (`reference:NET`, a run id of the
    store in `home`, a checkpoint's path) or `random` (the backbone keeps its initialisation). One-line UserError for
    a net of another architecture than the segmenter's backbone. `freeze`: see `Segmenter.freeze_backbone`."""
    if source != RANDOM_BACKBONE:
        net = trained_model(source, home)
        wanted = segmenter.spec.backbone
        if _architecture(net.spec) != _architecture(wanted):
            raise UserError(f"{source} holds a {net.spec.name}, but this segmenter's backbone is a {wanted.name}; "
                            f"pass a {wanted.name}, '{RANDOM_BACKBONE}', or build the segmenter on {net.spec.name}.")
        segmenter.backbone.load_state_dict({key: value for key, value in net.state_dict().items()
                                            if not key.startswith("fc.")})
        segmenter.normalization = _positionless(net.normalization)
    if freeze:
        segmenter.freeze_backbone()
    return segmenter


def _architecture(spec: NetSpec) -> dict:
    return {field: getattr(spec, field) for field in BACKBONE_FIELDS}


def _positionless(normalization: Normalization | None) -> Normalization | None:
    """A normalisation that holds anywhere in a scene: a per-pixel mean image (§4.2) belongs to the 32 x 32 frame of
    a CIFAR image, and a pasted image sits anywhere in the scene, so its per-channel average is subtracted instead.
    None (a checkpoint that records none) stays None: the scenes' statistics are used, as its run used its data's."""
    if normalization is None or normalization.kind == "per-channel":
        return normalization
    return Normalization("per-channel", normalization.mean.mean(dim=(1, 2)), normalization.std)


# ------------------------------------------------------------------ segmenter files
# The checkpoint format of training.checkpoint (safetensors, `model.*` tensors, JSON under METADATA_KEY), with the
# segmenter's spec under `segmenter` instead of a net's under `spec`: `load_checkpoint` refuses it in one line, and
# `load_segmenter` refuses a classifier's file. A run's file also holds where its training stood (`training` and the
# optimizer's `optimizer.*` tensors), so a run stopped or killed goes on from it.

@dataclass(frozen=True)
class SegmenterTraining:
    """Where a segmentation run stood when its segmenter was saved: enough, with the segmenter, to go on from there."""

    iteration: int
    optimizer_state: dict  # torch.optim's state_dict
    trainer_state: dict  # JSON-able: the loop's smoothed values and seconds trained so far


def save_segmenter(path: str | os.PathLike, segmenter: Segmenter, training: SegmenterTraining | None = None,
                   **metadata) -> None:
    """Write `segmenter`'s weights, spec and normalisation, with JSON-able `metadata` (class names, scores, …) and,
    for a run, where its `training` stood; to a temporary file renamed into place (training.checkpoint.write_file)."""
    tensors = {f"model.{key}": value.detach().cpu().contiguous() for key, value in segmenter.state_dict().items()}
    header = {"format": FORMAT, "segmenter": segmenter.spec.to_dict(), **metadata}
    add_normalization(tensors, header, segmenter.normalization)
    if training is not None:
        tensors.update(optimizer_tensors(training.optimizer_state))
        header["training"] = {"iteration": training.iteration, "trainer": training.trainer_state,
                              "param_groups": training.optimizer_state["param_groups"]}
    write_file(Path(path), tensors, header)


def load_segmenter(path: str | os.PathLike) -> tuple[Segmenter, dict]:
    """The segmenter `save_segmenter` wrote, in eval mode, and its metadata; InvalidCheckpointError (one line) for
    any other file."""
    segmenter, metadata, _ = _read_segmenter(Path(path))
    return segmenter, metadata


def load_segmenter_training(path: str | os.PathLike) -> tuple[Segmenter, SegmenterTraining | None]:
    """The segmenter `save_segmenter` wrote and where its run's training stood (None for a file that does not say:
    one written outside a run, or before runs recorded it); InvalidCheckpointError (one line) for any other file."""
    path = Path(path)
    segmenter, metadata, tensors = _read_segmenter(path)
    training = metadata.get("training")
    if training is None:
        return segmenter, None
    try:
        return segmenter, SegmenterTraining(int(training["iteration"]),
                                            optimizer_state(tensors, training["param_groups"]),
                                            dict(training["trainer"]))
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidCheckpointError(f"{path.name} records where its run stood in a form this version does not "
                                     f"read ({one_line(error)}).") from None


def _read_segmenter(path: Path) -> tuple[Segmenter, dict, dict[str, torch.Tensor]]:
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise InvalidCheckpointError(f"There is no segmenter file at {str(path)!r}.")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = json.loads((handle.metadata() or {}).get(METADATA_KEY, "{}"))
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise InvalidCheckpointError(f"{path.name} is truncated or not a safetensors file ({one_line(error)}).") \
            from None
    if not isinstance(metadata, dict) or "segmenter" not in metadata:
        spec = metadata.get("spec") if isinstance(metadata, dict) else None
        net = spec.get("name") if isinstance(spec, dict) else None
        raise InvalidCheckpointError(f"{path.name} holds {f'a classifier ({net})' if net else 'no segmenter'}; "
                                     "pass a file that save_segmenter wrote.")
    if metadata.get("format") != FORMAT:
        raise InvalidCheckpointError(f"{path.name} has format {metadata.get('format')!r}; this version reads format "
                                     f"{FORMAT}.")
    try:
        spec = SegmenterSpec.from_dict(metadata["segmenter"])
        segmenter = Segmenter(spec)
        segmenter.load_state_dict({key[len("model."):]: value for key, value in tensors.items()
                                   if key.startswith("model.")})
    except (KeyError, TypeError, ValueError, RuntimeError) as error:  # RuntimeError: weights of another net
        raise InvalidCheckpointError(f"{path.name} does not hold the segmenter its metadata names "
                                     f"({one_line(error)}).") from None
    segmenter.normalization = read_normalization(path, metadata, tensors)
    return segmenter.eval(), metadata, tensors
