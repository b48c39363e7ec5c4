"""Why did the network answer that? Captum attributions of one image for one class, ready to overlay.

Captum is imported inside `attribute` (importing `captum.attr` costs ~2.6 s), so importing
`resnet_core` stays fast for training processes that never explain anything.

The model is switched to `eval()` for the attribution (BN must use its running statistics, or one
image's own statistics would decide the answer) and every module's mode is restored afterwards.
Captum takes gradients with `torch.autograd.grad`, so no `.grad` is written. A model another thread
may use at the same time (a cached app model, a training job) must be passed with
`private_copy=True`: switching modes is not atomic, and the app must never share a model with a
running training job.
"""
from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..nets.model import ResNet

METHODS = ("integrated_gradients", "saliency", "grad_cam", "occlusion")
SIGNED_METHODS = ("integrated_gradients", "occlusion")
# Grad-CAM on a coarser map than this says little about where (on a 1x1 map, nothing at all).
GRAD_CAM_MIN_MAP_SIZE = 8
# Display maps are scaled so this percentile of |value| is 1: one hot pixel must not wash out the rest.
DISPLAY_PERCENTILE = 99.5
# Occlusion slides a window of 1/8 of the shorter side in half-window steps: 15 x 15 evaluations at
# any input size (4 px windows on CIFAR's 32, 28 px on ImageNet's 224).
OCCLUSION_WINDOWS_PER_SIDE = 8


@dataclass(frozen=True)
class Attribution:
    """One attribution map for display, with what it explains.

    `map` is (H, W) at the input's size: in [-1, 1] for signed methods (evidence for / against the
    target), in [0, 1] for Saliency and Grad-CAM; `scale` is the raw value shown as 1.
    """

    method: str
    target: int
    target_probability: float
    map: np.ndarray  # (H, W) float32
    signed: bool
    scale: float
    layer: str | None = None  # Grad-CAM's layer, e.g. "layer3.2"
    layer_map_size: tuple[int, int] | None = None  # that layer's (h, w) before upsampling


def attribute(model: ResNet, x: torch.Tensor, method: str, target: int | None = None, *,
              private_copy: bool = False, n_steps: int = 50, internal_batch_size: int = 16) -> Attribution:
    """Attribute `model`'s score for `target` (default: its predicted class) on one image `x` (1, 3, H, W).

    `method` is one of `METHODS`. Integrated Gradients integrates from a zero baseline (in normalised
    input space: the dataset's mean colour) in `n_steps` steps; it and Occlusion evaluate at most
    `internal_batch_size` images at once, which bounds memory at any `n_steps`. Grad-CAM uses the
    last block whose output map is at least 8x8 (see `grad_cam_layer`), upsampled bilinearly.
    """
    if method not in METHODS:
        raise ValueError(f"Unknown attribution method {method!r}; allowed: {', '.join(METHODS)}.")
    if x.dim() != 4 or x.shape[:2] != (1, 3):
        raise ValueError(f"Expected one RGB image as a (1, 3, H, W) tensor; got shape {tuple(x.shape)}.")
    if private_copy:
        model = copy.deepcopy(model)
    # Gradients flow to a private leaf: the caller's tensor is never marked or modified.
    x = x.detach().to(next(model.parameters()).device, torch.float32).requires_grad_()
    with _eval_mode(model):
        # Grad-CAM's layer is chosen by the blocks' map sizes, measured in the same forward pass (a segmentation net
        # on a photo takes seconds for one).
        with torch.no_grad(), _map_sizes(model if method == "grad_cam" else None) as sizes:
            probabilities = model(x).softmax(1)[0]  # (classes,)
        if target is None:
            target = int(probabilities.argmax())
        elif not 0 <= target < len(probabilities):
            raise ValueError(f"Unknown class {target}; allowed: 0 to {len(probabilities) - 1}.")
        layer = layer_map_size = None
        with torch.enable_grad():
            if method == "grad_cam":
                layer, layer_map_size = _grad_cam_choice(sizes)
                values = _grad_cam(model, x, target, model.get_submodule(layer))
            else:
                values = _input_attribution(model, x, target, method, n_steps, internal_batch_size)
    signed = method in SIGNED_METHODS
    display_map, scale = _for_display(values, signed)
    return Attribution(method=method, target=target, target_probability=float(probabilities[target]),
                       map=display_map, signed=signed, scale=scale, layer=layer, layer_map_size=layer_map_size)


def grad_cam_layer(model: ResNet, x: torch.Tensor) -> tuple[str, tuple[int, int]]:
    """The name and (h, w) output map of the last block whose map is at least 8x8 for input `x`.

    When the input is so small that no block reaches 8x8, the last block of the largest map.
    """
    with torch.no_grad(), _map_sizes(model) as sizes:
        model(x)
    return _grad_cam_choice(sizes)


@contextlib.contextmanager
def _map_sizes(model: nn.Module | None) -> Iterator[dict[str, tuple[int, int]]]:
    """Each block of `model` (None: none) -> the (h, w) of its output map in the forward passes run meanwhile."""
    sizes: dict[str, tuple[int, int]] = {}
    hooks = [] if model is None else [
        block.register_forward_hook(
            lambda _module, _inputs, output, name=name: sizes.__setitem__(name, tuple(output.shape[-2:])))
        for name, block in _blocks(model)]
    try:
        yield sizes
    finally:
        for hook in hooks:
            hook.remove()


def _grad_cam_choice(sizes: dict[str, tuple[int, int]]) -> tuple[str, tuple[int, int]]:
    large_enough = [name for name, size in sizes.items() if min(size) >= GRAD_CAM_MIN_MAP_SIZE]
    largest_area = max(h * w for h, w in sizes.values())
    fallback = [name for name, (h, w) in sizes.items() if h * w == largest_area]
    name = (large_enough or fallback)[-1]
    return name, sizes[name]


def _blocks(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """Every block of `model.stages`, by its name in `model` ("layer3.2" in a ResNet): a model that wraps a net
    (pixels.attribution's, around a segmenter) names them by their path in it, which `get_submodule` takes."""
    names = {id(module): name for name, module in model.named_modules()}
    for stage in model.stages:
        for block in stage:
            yield names[id(block)], block


def _grad_cam(model: ResNet, x: torch.Tensor, target: int, layer: nn.Module) -> torch.Tensor:
    from captum.attr import LayerGradCam

    # relu_attributions: the original Grad-CAM keeps only evidence for the class.
    cam = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)  # (1, 1, h, w)
    upsampled = nn.functional.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return upsampled[0, 0]  # (H, W)


def _input_attribution(model: ResNet, x: torch.Tensor, target: int, method: str, n_steps: int,
                       internal_batch_size: int) -> torch.Tensor:
    from captum.attr import IntegratedGradients, Occlusion, Saliency

    if method == "saliency":
        # Simonyan et al. (2014): the largest |gradient| over the colour channels.
        return Saliency(model).attribute(x, target=target, abs=True)[0].amax(0)  # (H, W)
    if method == "integrated_gradients":
        values = IntegratedGradients(model).attribute(x, target=target, n_steps=n_steps,
                                                      internal_batch_size=internal_batch_size)
    else:
        window = max(2, min(x.shape[-2:]) // OCCLUSION_WINDOWS_PER_SIDE)
        stride = max(1, window // 2)
        values = Occlusion(model).attribute(x, sliding_window_shapes=(3, window, window),
                                            strides=(3, stride, stride), target=target,
                                            perturbations_per_eval=internal_batch_size)
    return values[0].sum(0)  # (H, W): evidence summed over the colour channels


def _for_display(values: torch.Tensor, signed: bool) -> tuple[np.ndarray, float]:
    values = values.detach().float().cpu().numpy()
    magnitude = np.abs(values)
    scale = float(np.percentile(magnitude, DISPLAY_PERCENTILE)) or float(magnitude.max())
    if scale == 0 or not np.isfinite(scale):  # e.g. Grad-CAM with no evidence for the class at all
        return np.zeros_like(values), 0.0
    return np.clip(values / scale, -1.0 if signed else 0.0, 1.0).astype(np.float32), scale


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    # Restore each module's own flag: a caller may keep some BN layers frozen in eval while training.
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training
