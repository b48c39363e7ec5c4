"""The loss landscape around a trained net's weights (Li, Xu, Taylor, Studer & Goldstein 2018, "Visualizing the
Loss Landscape of Neural Nets", §4 and Fig. 5): training loss and error at θ + α·δ + β·η along one or two
filter-normalised random directions δ, η, on a fixed subset of training images, BN in eval mode.

    result = loss_landscape(model, data, dims=2, points=21, span=1.0, images=500, seed=0)
    result.loss[j][i]                      # at (result.alphas[i], result.betas[j]): rows are betas
    for row in iter_landscape_rows(model, data, dims=2, points=21):   # row by row, as computed
        store(row.index, row.loss, row.error)

Definitions are the paper's and its authors' code's (github.com/tomgoldstein/loss-landscape, `net_plotter.py` with
`--xignore biasbn --xnorm filter`, `evaluation.py`): Gaussian directions, each filter rescaled to the norm of the
weights' filter, biases and BN parameters left at 0, running BN statistics kept, mean cross-entropy and the fraction
misclassified, training images without augmentation. Where we differ (a seeded subset instead of all 50,000
images, the 2-D rows) docs/EXPERIMENTS.md says why.

The caller's model is never touched: a cached model may be in use elsewhere while this runs. One copy is made per
landscape, not per point, and each point's weights are written into it in place. In that copy every BN is folded
into the conv before it: in eval mode BN is a fixed per-channel affine map and the directions leave its parameters
at 0, so conv + BN is one conv whose weight moves along the direction scaled per filter by γ/√(σ²+ε). Same function
up to float rounding, ~10 % faster on a CPU, where the convs alone already run near the cores' fp32 peak.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import UserError
from ..nets.model import ResNet
from ..training.data import ImageData
from .trained import test_pipeline

BATCH_SIZE = 100  # images per forward pass: the fastest of 32 to 500 for ResNet-56 on 2 CPU cores
MAX_POINTS = 401  # per axis; the authors' finest 1-D plots have 401 points
# Steps along a filter-normalised direction: at 1 the weights move by their own size (Li et al. plot up to 1); far
# beyond, float32 weights overflow.
MAX_SPAN = 100.0
DEFAULT_IMAGES = 1000  # training images of the subset, when not given

Progress = Callable[[int, int, float], None]  # (points done, points in all, the error at the last point)
Direction = dict[str, torch.Tensor]  # parameter name -> a tensor of its shape


class LandscapeRow(NamedTuple):
    index: int  # j: the row at betas[j]; 0 for a 1-D slice
    loss: list[float]  # mean cross-entropy (nats) at (alphas[i], betas[j]), i = 0 … points-1
    error: list[float]  # fraction of the images misclassified there


@dataclass(frozen=True)
class Landscape:
    """A 1-D slice (`betas` None, `loss[i]` at alphas[i]) or a 2-D surface (`loss[j][i]` at (alphas[i], betas[j]):
    one row per beta, the orientation of numpy's meshgrid and of Plotly's contour `z` with x=alphas, y=betas).
    Loss is the mean cross-entropy in nats, error the fraction misclassified."""

    alphas: list[float]
    betas: list[float] | None
    loss: list[float] | list[list[float]]
    error: list[float] | list[list[float]]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SliceShape:
    """Numbers for "smooth and nearly convex" against "sharp and chaotic" along a 1-D slice. Ratios are to the loss
    at the trained weights; "halfway" and "end" are the grid points nearest ±span/2 and at ±span."""

    centre_loss: float  # nats, at α = 0
    halfway_ratio: tuple[float, float]  # L(-span/2) / L(0), L(span/2) / L(0)
    end_ratio: tuple[float, float]  # L(-span) / L(0), L(span) / L(0)
    basin_width: float  # in α: the grid interval around 0 where L < 2·L(0); 2·span when the slice never leaves it
    # The same where L < L(0) + 1 nat: a threshold that does not grow with the centre's loss, for nets whose minima
    # lie at different heights (a badly trained plain net's "2×" allows it more).
    basin_width_1nat: float
    local_minima: int  # interior points lower than both neighbours
    concave_points: int  # interior points whose second difference is negative
    curvature_sign_changes: int  # sign changes of the second difference along the slice

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SurfaceShape:
    """The same question over a 2-D surface, on its interior grid points."""

    centre_loss: float  # nats, at (0, 0)
    basin_fraction: float  # of all grid points, those with L < 2·L(0, 0)
    local_minima: int  # interior points lower than all 8 neighbours
    # Interior points where the finite-difference Hessian in the plane has a negative eigenvalue: the plane's cut of
    # Li et al.'s §6 map of |λmin/λmax|, at no extra cost.
    nonconvex_fraction: float
    # The same in the central square |α|, |β| ≤ span/2, around the minimum, away from the high plateaus at the edges.
    nonconvex_fraction_centre: float

    def to_dict(self) -> dict:
        return asdict(self)


def axis(points: int, span: float) -> list[float]:
    """`points` steps evenly from -span to span, symmetric; for an odd count the middle one is exactly 0, the trained
    weights themselves."""
    return [span * (2 * i - (points - 1)) / (points - 1) for i in range(points)]


def filter_normalized_direction(model: nn.Module, generator: torch.Generator) -> Direction:
    """A Gaussian direction shaped like `model`'s parameters with each filter scaled to the norm of the same filter
    of the weights (§4: d_i,j ← d_i,j / ‖d_i,j‖ · ‖θ_i,j‖).

    A filter is one output channel of a conv (`weight[k]`); the fc layer's output neurons count as filters (its rows
    `weight[k]`), as the paper treats an FC layer as a 1×1 conv and the authors' code normalises it. Biases and BN
    parameters, every 1-D parameter, get 0, as the paper and the code's `ignore='biasbn'` do. Drawn on the CPU, so a
    seed gives the same direction on every device."""
    direction = {}
    for name, weight in model.named_parameters():
        if weight.dim() <= 1:
            direction[name] = torch.zeros_like(weight)
        else:
            draw = torch.randn(weight.shape, generator=generator, dtype=weight.dtype).to(weight.device)
            scale = weight.detach().flatten(1).norm(dim=1) / draw.flatten(1).norm(dim=1)  # (filters,)
            direction[name] = draw * scale.view(-1, *[1] * (weight.dim() - 1))
    return direction


def random_directions(model: nn.Module, count: int, seed: int) -> list[Direction]:
    """`count` filter-normalised directions, drawn one after another from one generator seeded with `seed`: the
    first is the same for a 1-D slice and a 2-D surface."""
    generator = torch.Generator().manual_seed(seed)
    return [filter_normalized_direction(model, generator) for _ in range(count)]


def training_subset(model: ResNet, data: ImageData, images: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`images` training images drawn without replacement by a generator seeded with `seed` (its own, so a slice and a
    surface of one seed see the same images), normalised once as the model's test pass does, without augmentation:
    (float inputs (N, 3, S, S), labels (N,)), on the model's device."""
    device = next(model.parameters()).device
    chosen = torch.randperm(len(data.train_labels), generator=torch.Generator().manual_seed(seed))[:images]
    chosen = chosen.to(data.train_labels.device)
    inputs = test_pipeline(model, data).test_batch(data.train_images[chosen])
    return inputs.to(device, memory_format=torch.channels_last), data.train_labels[chosen].to(device)


def image_count(data: ImageData, images: int | None = None) -> int:
    """The training images of a landscape's subset: `images`, else DEFAULT_IMAGES or all of a smaller training set."""
    return min(DEFAULT_IMAGES, len(data.train_labels)) if images is None else images


def iter_landscape_rows(model: ResNet, data: ImageData, *, dims: int = 1, points: int = 41, span: float = 1.0,
                        images: int | None = None, seed: int = 0,
                        progress: Progress | None = None) -> Iterator[LandscapeRow]:
    """Each row of the landscape as soon as it is computed: `points` rows of a 2-D surface (betas[j], j = 0 …), or
    the one row of a 1-D slice, on `images` training images (default DEFAULT_IMAGES, or all of a smaller training
    set). Bad arguments raise a one-line UserError here, before any work."""
    images = image_count(data, images)
    _check(data, dims, points, span, images)
    return _rows(model, data, dims, points, span, images, seed, progress)


def loss_landscape(model: ResNet, data: ImageData, *, dims: int = 1, points: int = 41, span: float = 1.0,
                   images: int | None = None, seed: int = 0, progress: Progress | None = None) -> Landscape:
    """Training loss and error of `model` around its weights: along one direction from -span to span (`dims=1`) or
    on the square spanned by two (`dims=2`), `points` per axis, on `images` training images, all drawn from `seed`."""
    rows = list(iter_landscape_rows(model, data, dims=dims, points=points, span=span, images=images, seed=seed,
                                    progress=progress))
    alphas = axis(points, span)
    if dims == 1:
        return Landscape(alphas, None, rows[0].loss, rows[0].error)
    return Landscape(alphas, alphas, [row.loss for row in rows], [row.error for row in rows])


def _check(data: ImageData, dims: int, points: int, span: float, images: int) -> None:
    available = len(data.train_labels)
    if dims not in (1, 2):
        raise UserError(f"dims must be 1 (a slice) or 2 (a surface); got {dims!r}.")
    if not isinstance(points, int) or not 2 <= points <= MAX_POINTS:
        raise UserError(f"points must be a whole number from 2 to {MAX_POINTS} per axis; got {points!r}.")
    if not isinstance(images, int) or not 1 <= images <= available:
        raise UserError(f"images must be a whole number from 1 to {available}, the training images of {data.name}; "
                        f"got {images!r}.")
    if not 0 < span <= MAX_SPAN:
        raise UserError(f"span must be a positive number of filter-normalised steps, at most {MAX_SPAN:g}; got "
                        f"{span!r}.")


def _rows(model: ResNet, data: ImageData, dims: int, points: int, span: float, images: int, seed: int,
          progress: Progress | None) -> Iterator[LandscapeRow]:
    alphas = axis(points, span)
    betas = alphas if dims == 2 else [0.0]
    directions = random_directions(model, dims, seed)
    inputs, labels = training_subset(model, data, images, seed)
    net, filter_scales = _folded_copy(model)
    parameters = dict(net.named_parameters())
    moving = [name for name, weight in model.named_parameters() if weight.dim() > 1]  # the rest stay at 0
    weights = [parameters[name] for name in moving]
    origin = [weight.clone() for weight in weights]
    steps = [[direction[name] * filter_scales.get(name, 1.0) for name in moving] for direction in directions]
    for j, beta in enumerate(betas):
        losses, errors = [], []
        for i, alpha in enumerate(alphas):
            _move(weights, origin, steps, (alpha, beta)[:dims])
            loss, error = _loss_and_error(net, inputs, labels)
            losses.append(loss)
            errors.append(error)
            if progress is not None:
                progress(j * points + i + 1, len(betas) * points, error)
        yield LandscapeRow(j, losses, errors)


def _folded_copy(model: nn.Module) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A copy of `model` for evaluation only: eval mode, each BN folded into the conv before it, ReLUs in place,
    channels-last (faster on a CPU); and each folded conv weight's per-filter factor γ/√(σ²+ε), shaped
    (filters, 1, 1, 1), by parameter name."""
    net = copy.deepcopy(model).eval().requires_grad_(False)
    filter_scales = {}
    for name, conv in list(net.named_modules()):
        if not isinstance(conv, nn.Conv2d):
            continue
        parent_name, _, leaf = name.rpartition(".")
        parent = net.get_submodule(parent_name)
        # Every conv of these nets is followed by its BN: convK by bnK, downsample.0 by downsample.1 (the pairing
        # analysis.response_layers relies on too).
        bn_leaf = "1" if leaf == "0" else leaf.replace("conv", "bn")
        bn = parent.get_submodule(bn_leaf)
        scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).view(-1, 1, 1, 1)
        conv.weight.mul_(scale)
        conv.bias = nn.Parameter(bn.bias - bn.running_mean * scale.flatten(), requires_grad=False)
        setattr(parent, bn_leaf, nn.Identity())
        filter_scales[f"{name}.weight"] = scale
    for relu in (module for module in net.modules() if isinstance(module, nn.ReLU)):
        # Each ReLU's input is a fresh conv or addition output nobody reads again: in place saves ~7 % a point.
        relu.inplace = True
    return net.to(memory_format=torch.channels_last), filter_scales


def _move(weights: list[torch.Tensor], origin: list[torch.Tensor], steps: list[list[torch.Tensor]],
          coordinates: tuple[float, ...]) -> None:
    """weights ← origin + α·δ (+ β·η), in place; at (0, 0) exactly the origin."""
    for index, weight in enumerate(weights):
        weight.copy_(origin[index])
        for step, coordinate in zip(steps, coordinates):
            weight.add_(step[index], alpha=coordinate)


@torch.inference_mode()
def _loss_and_error(net: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    loss_sum, wrong = 0.0, 0
    for batch, batch_labels in zip(inputs.split(BATCH_SIZE), labels.split(BATCH_SIZE)):
        logits = net(batch)  # (B, classes)
        loss_sum += F.cross_entropy(logits.float(), batch_labels, reduction="sum").item()
        wrong += int((logits.argmax(-1) != batch_labels).sum())
    return loss_sum / len(labels), wrong / len(labels)


def slice_shape(alphas: list[float], loss: list[float]) -> SliceShape:
    """How a 1-D slice (`Landscape.alphas`, `.loss`, an odd number of points) bends around its centre."""
    values = torch.tensor(loss, dtype=torch.float64)
    centre = _centre_index(alphas)
    last = len(alphas) - 1
    halfway = round(last / 4)
    curvature = values[2:] - 2 * values[1:-1] + values[:-2]  # second differences at the interior points
    signs = curvature.sign()[curvature != 0]
    return SliceShape(
        centre_loss=loss[centre],
        halfway_ratio=(loss[halfway] / loss[centre], loss[last - halfway] / loss[centre]),
        end_ratio=(loss[0] / loss[centre], loss[last] / loss[centre]),
        basin_width=_basin_width(alphas, values, centre, 2 * values[centre]),
        basin_width_1nat=_basin_width(alphas, values, centre, values[centre] + 1),
        local_minima=int(((values[1:-1] < values[:-2]) & (values[1:-1] < values[2:])).sum()),
        concave_points=int((curvature < 0).sum()),
        curvature_sign_changes=int((signs[1:] != signs[:-1]).sum()),
    )


def surface_shape(alphas: list[float], loss: list[list[float]]) -> SurfaceShape:
    """How a 2-D surface (`Landscape.alphas`, `.loss`; betas = alphas, an odd number of points) bends around its
    centre."""
    values = torch.tensor(loss, dtype=torch.float64)  # (betas, alphas)
    centre = _centre_index(alphas)
    interior = values[1:-1, 1:-1]
    neighbours = torch.stack([values[1 + dj:values.shape[0] - 1 + dj, 1 + di:values.shape[1] - 1 + di]
                              for dj in (-1, 0, 1) for di in (-1, 0, 1) if (dj, di) != (0, 0)])
    step = alphas[1] - alphas[0]
    along_alpha = (values[1:-1, 2:] - 2 * interior + values[1:-1, :-2]) / step ** 2
    along_beta = (values[2:, 1:-1] - 2 * interior + values[:-2, 1:-1]) / step ** 2
    mixed = (values[2:, 2:] - values[2:, :-2] - values[:-2, 2:] + values[:-2, :-2]) / (4 * step ** 2)
    # The smaller eigenvalue of [[a, m], [m, b]] is negative exactly when a + b < 0 or a·b < m².
    nonconvex = (along_alpha + along_beta < 0) | (along_alpha * along_beta < mixed ** 2)
    near = torch.tensor(alphas[1:-1]).abs() <= alphas[-1] / 2
    central = near[:, None] & near[None, :]
    return SurfaceShape(
        centre_loss=loss[centre][centre],
        basin_fraction=float((values < 2 * values[centre, centre]).double().mean()),
        local_minima=int((interior < neighbours).all(dim=0).sum()),
        nonconvex_fraction=float(nonconvex.double().mean()),
        nonconvex_fraction_centre=float(nonconvex[central].double().mean()),
    )


def _basin_width(alphas: list[float], values: torch.Tensor, centre: int, limit: torch.Tensor) -> float:
    """The length in α of the run of grid points around the centre whose loss stays below `limit`."""
    inside = (values < limit).tolist()
    left, right = centre, centre
    while left > 0 and inside[left - 1]:
        left -= 1
    while right < len(inside) - 1 and inside[right + 1]:
        right += 1
    return alphas[right] - alphas[left]


def _centre_index(alphas: list[float]) -> int:
    if 0.0 not in alphas:
        raise UserError(f"The shape of a landscape is measured around its centre; {len(alphas)} points per axis have "
                        "none: use an odd number.")
    return alphas.index(0.0)
