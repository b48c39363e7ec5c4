"""Which input pixels decided one pixel's class: the Classify page's attributions (explain.attribution) of a
segmentation net's score for a class at one pixel.

    answer = pixel_attribution(model.segmenter, model.model_input(scene), x=20, y=31, method="saliency")
    answer.map  # (H, W) at the scene's size: an explain.attribution.Attribution; answer.target: the pixel's class

The net is a scene model's segmenter (pixels.segmenter) or one of torchvision's segmentation models
(torchvision_models: DeepLabV3, FCN), whose forward returns {"out": scores}. Both score every class at every pixel;
Captum explains a model with one score per class. `PixelScores` is that model: the net's scores at the chosen pixel
(the logits, before the softmax, as for a classifier). Its gradients reach only the pixels inside that pixel's
receptive field, so Saliency and Integrated Gradients are zero outside it. Grad-CAM weighs the last stage's channels
by the pixel's gradient averaged over the map (Vinogradova et al. 2020, "Towards interpretable semantic segmentation
via gradient-weighted class activation mapping", with a one-pixel region), so its map shows where the channels that
push the pixel's class fire anywhere in the image.
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from ..errors import UserError
from ..explain.attribution import Attribution, attribute

# torchvision's ResNet backbones (an IntermediateLayerGetter over its ResNet) name their stages so; a segmenter's
# backbone says its own (Backbone.stage_names).
TORCHVISION_STAGES = ("layer1", "layer2", "layer3", "layer4")


class PixelScores(nn.Module):
    """A segmentation net's class scores at one pixel: (B, 3, H, W) -> (B, classes)."""

    def __init__(self, net: nn.Module, x: int, y: int) -> None:
        super().__init__()
        self.net = net
        self.x, self.y = x, y  # column and row, from the image's top left

    @property
    def stages(self) -> list[nn.Module]:
        """The backbone's stages, where explain.attribution looks for Grad-CAM's layer."""
        backbone = self.net.backbone
        return [getattr(backbone, name) for name in getattr(backbone, "stage_names", TORCHVISION_STAGES)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.net(x)
        if isinstance(scores, dict):  # torchvision's segmentation models
            scores = scores["out"]
        return scores[:, :, self.y, self.x]  # (B, classes)


def pixel_attribution(net: nn.Module, model_input: torch.Tensor, x: int, y: int, method: str,
                      target: int | None = None, *, private_copy: bool = False, n_steps: int = 50,
                      internal_batch_size: int = 16) -> Attribution:
    """Attribute segmentation net `net`'s score for class `target` (default: the class it gives the pixel) at pixel
    (`x`, `y`) of one normalised input (1, 3, H, W) to the input's pixels, by `method` (explain.attribution.METHODS).
    A one-line UserError for a pixel outside the image. `private_copy`: as `attribute`'s, for a net others may use.
    The answer's `target` is the class explained, its `layer` Grad-CAM's block in the backbone ("layer3.2")."""
    height, width = model_input.shape[-2:]
    for name, value, size in (("x", x, width), ("y", y, height)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < size:
            raise UserError(f"{name} must be a whole number of pixels from 0 to {size - 1}; got {value!r}.")
    answer = attribute(PixelScores(net, x, y), model_input, method, target, private_copy=private_copy,
                       n_steps=n_steps, internal_batch_size=internal_batch_size)
    if answer.layer is not None:  # "net.backbone.layer3.2" -> "layer3.2", as the Classify page names it
        answer = replace(answer, layer=answer.layer.removeprefix("net.backbone."))
    return answer
