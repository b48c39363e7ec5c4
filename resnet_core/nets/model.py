"""Block → stage → network, built from a `NetSpec`."""
from __future__ import annotations

import torch
from torch import nn

from .blocks import BLOCKS
from .specs import NetSpec, Shortcut, Variant, get_spec


class ResNet(nn.Module):
    """A residual or plain net of the paper; `self.spec` says which.

    Module names are torchvision's (`conv1`, `bn1`, `relu`, `maxpool`, `layer1…`, `avgpool`, `fc`).
    """

    def __init__(self, spec: NetSpec) -> None:
        super().__init__()
        self.spec = spec
        if spec.family == "imagenet":  # Table 1, conv1 and the pool before conv2_x
            self.conv1 = nn.Conv2d(3, spec.stem_width, 7, stride=2, padding=3, bias=False)
        else:  # §4.2: "the first layer is 3x3 convolutions"
            self.conv1 = nn.Conv2d(3, spec.stem_width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(spec.stem_width)
        self.relu = nn.ReLU()
        if spec.family == "imagenet":
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        block = BLOCKS[spec.block]
        in_channels = spec.stem_width
        for index, (count, width) in enumerate(zip(spec.blocks_per_stage, spec.widths)):
            blocks = []
            for position in range(count):
                stride = 2 if index > 0 and position == 0 else 1
                blocks.append(block(in_channels, width, stride, residual=spec.residual, shortcut=spec.shortcut,
                                    variant=spec.variant))
                in_channels = width * block.expansion
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(in_channels, spec.num_classes)
        # The input normalisation (training.augment.Normalization) its checkpoint records, so every consumer feeds it
        # what it was trained on; None for a net built here, or read from a checkpoint that records none.
        self.normalization = None
        # Its dataset's class names in label order, as its checkpoint records them; None where it records none.
        self.classes: tuple[str, ...] | None = None
        self._init_weights()

    @property
    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, f"layer{i + 1}") for i in range(len(self.spec.widths))]

    def _init_weights(self) -> None:
        # §3.4: "We initialize the weights as in [13]" (He et al., 2015: N(0, 2/fan)); BN starts as identity.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # (B, stem, H, W) or (B, 64, H/2, W/2)
        if self.spec.family == "imagenet":
            x = self.maxpool(x)  # (B, 64, H/4, W/4)
        for stage in self.stages:
            x = stage(x)  # (B, C_k, H_k, W_k)
        return self.fc(self.flatten(self.avgpool(x)))  # (B, classes)


def build_model(name: str | NetSpec, *, num_classes: int | None = None, shortcut: Shortcut | None = None,
                variant: Variant = "paper") -> ResNet:
    """Build a named net of the paper (`"resnet56"`, `"plain34"`, …) or any `NetSpec`.

    `shortcut` (A/B/C) defaults to A on CIFAR and B on ImageNet; `variant="torchvision"` strides
    bottlenecks in the 3x3 conv so torchvision's state dicts load with `strict=True`. Options given
    with a spec override its fields.
    """
    if isinstance(name, NetSpec):
        overrides = {key: value for key, value in
                     (("num_classes", num_classes), ("shortcut", shortcut)) if value is not None}
        if variant != name.variant and variant != "paper":
            overrides["variant"] = variant
        spec = name.replace(**overrides) if overrides else name
    else:
        spec = get_spec(name, num_classes=num_classes, shortcut=shortcut, variant=variant)
    return ResNet(spec)
