"""Shattered gradients (Balduzzi et al. 2017, Fig. 1–3): how the input gradient of a net at initialisation varies
along a line of inputs, for plain and residual CIFAR nets of growing depth.

Balduzzi et al. feed evenly spaced points of a 1-D input into fully connected rectifier nets at initialisation and
plot the derivative of the (scalar) output at each point: a shallow net or a resnet gives "brown noise"
(neighbouring gradients alike), a deep feedforward net "white noise" (neighbours unrelated), which the
autocorrelation of that sequence measures. Our nets take 32x32 images, so the line runs through image space:

    x(t) = x0 + t·v,   t = `points` evenly spaced values in [-1, 1],   x0, v ~ N(0, I) images (seeded)

and the gradient at each point is d logit0(x(t)) / dt, the input gradient of the first logit projected onto the
line's direction v (their nets have one output; a random net's first logit is as good as any).

Batch norm: each BN normalises with the mean and variance that the line's inputs have at its layer, as a
training-mode pass over that batch would (their nets at initialisation normalise over the batch of inputs),
but the statistics are held fixed when differentiating, as their analysis treats BN: a rescaling. The
gradient at x(t) is then that of a fixed function of x(t) alone, so batched backward passes give every
point's own derivative. With BN's initial running statistics instead (mean 0, variance 1), BN would be the
identity and a residual net's signal would double with every block: their "resnet without BN" case.

Precision: float32. Measured in float64, a deep plain net's gradient is already a different one when t moves
by 1e-6 (plain-56) or 1e-8 (plain-110), far below the spacing of the points (2/255): the sequence is white
noise at any precision, and float32's rounding only draws another sample of it. float64 costs 4x here and
gives the same autocorrelations (docs/EXPERIMENTS.md, "Shattered gradients"); a residual net's gradient moves by 0.4%.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UserError
from ..nets.model import ResNet, build_model
from ..nets.specs import cifar_spec

MAX_LAG = 32  # autocorrelation kept for lags 0..MAX_LAG (Fig. 2 reads the first few dozen)
MIN_DEPTH, MAX_DEPTH = 8, 110  # CIFAR depths 6n+2; 110 is the deepest that stays within seconds on a CPU
MIN_POINTS, MAX_POINTS = 2 * MAX_LAG, 1024  # at least MAX_LAG pairs at the longest lag; 1024 bounds the time
# A gradient whose standard deviation along the line is below this fraction of its largest magnitude is constant:
# far above float32 rounding (~1e-7 per operation), far below a real change of slope (one block: std ~0.5 of it).
CONSTANT_RTOL = 1e-4
OUTPUT = 0  # the logit differentiated
CHUNK = 64  # points per backward pass
PRECISION = torch.float32  # see the module's docstring


@dataclass(frozen=True)
class Line:
    """Inputs x(t) = origin + t·direction at the positions t."""

    positions: torch.Tensor  # (P,)
    origin: torch.Tensor  # (1, C, H, W)
    direction: torch.Tensor  # (1, C, H, W)

    def inputs(self) -> torch.Tensor:
        return self.origin + self.positions[:, None, None, None] * self.direction  # (P, C, H, W)


@dataclass(frozen=True)
class ShatteringPoint:
    """One net's gradient along the line, and its autocorrelation."""

    model: str  # "plain56", "resnet56"
    depth: int
    residual: bool
    seed: int
    lag1_autocorrelation: float
    positions: list[float]  # t of each input along the line
    gradients: list[float]  # d logit0 / dt at each position (Fig. 1)
    autocorrelation: list[float]  # lags 0..MAX_LAG (Fig. 2); lag 0 is 1

    def to_dict(self) -> dict:
        """The CLI's `--json` record; the sequences stay out of it."""
        return {"model": self.model, "depth": self.depth, "lag1_autocorrelation": self.lag1_autocorrelation}


def allowed_depths() -> list[int]:
    return list(range(MIN_DEPTH, MAX_DEPTH + 1, 6))


def check_depths(depths) -> list[int]:
    """The depths, sorted without repeats; a UserError naming what is allowed for any other."""
    allowed = allowed_depths()
    wrong = [depth for depth in depths if not isinstance(depth, int) or isinstance(depth, bool) or depth not in allowed]
    if wrong or not depths:
        got = ", ".join(map(str, wrong)) if wrong else "none"
        raise UserError(f"Depths must be CIFAR depths 6n+2 from {MIN_DEPTH} to {MAX_DEPTH} "
                        f"({', '.join(map(str, allowed))}); got {got}.")
    return sorted(set(depths))


def make_line(points: int, seed: int, *, size: int = 32, channels: int = 3, dtype: torch.dtype = PRECISION) -> Line:
    """`points` inputs evenly spaced along a random line through image space (seeded: the same line, whatever
    the dtype, for every net)."""
    generator = torch.Generator().manual_seed(seed)
    origin = torch.randn(1, channels, size, size, generator=generator)
    direction = torch.randn(1, channels, size, size, generator=generator)
    return Line(torch.linspace(-1.0, 1.0, points, dtype=dtype), origin.to(dtype), direction.to(dtype))


@contextlib.contextmanager
def line_statistics(model: nn.Module, inputs: torch.Tensor) -> Iterator[None]:
    """Within: every BN of `model` (in eval mode) normalises with the mean and biased variance that `inputs`, as
    one batch, have at its layer: the outputs are those of a training-mode pass over that batch, but the
    statistics are constants, so each input's output (and gradient) depends on that input alone.

    One forward pass without gradients takes the statistics, layer by layer (each BN's depend on the ones
    before it, so this pass cannot be split into chunks); the running statistics are restored on exit.
    """

    def use_batch(module: nn.BatchNorm2d, batch: tuple[torch.Tensor]) -> None:
        # Two passes, mean then centred squares: 4x faster than torch.var_mean over (0, 2, 3), as exact.
        mean = batch[0].mean(dim=(0, 2, 3))  # (C,)
        module.running_mean.copy_(mean)
        module.running_var.copy_((batch[0] - mean[:, None, None]).square().mean(dim=(0, 2, 3)))

    norms = [module for module in model.modules() if isinstance(module, nn.BatchNorm2d)]
    saved = [(module.running_mean.clone(), module.running_var.clone()) for module in norms]
    handles = [module.register_forward_pre_hook(use_batch) for module in norms]
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    try:
        yield
    finally:
        for module, (mean, var) in zip(norms, saved):
            module.running_mean.copy_(mean)
            module.running_var.copy_(var)


@contextlib.contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    """Parameters without gradients: the backward pass neither computes weight gradients nor leaves them in the
    caller's `.grad` (and 8 nets take ~10% less time)."""
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    for parameter in trainable:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter in trainable:
            parameter.requires_grad_(True)


def line_gradient(model: nn.Module, line: Line, *, chunk: int = CHUNK) -> torch.Tensor:
    """d logit0(x(t)) / dt at every position of the line, (P,) in float64, by batched backward passes.

    The model must be in eval mode: then each input's output depends on that input alone, so the gradient of
    the sum of the outputs with respect to the positions t is every point's own derivative. `chunk` points go
    through each pass, which bounds the memory the backward pass keeps (ResNet-110: ~0.75 GB for 64 points).
    """
    if model.training:
        raise ValueError("line_gradient needs the model in eval mode, where inputs do not affect each other.")
    gradients = []
    with _frozen(model):
        for positions in line.positions.split(chunk):
            positions = positions.clone().requires_grad_()
            inputs = line.origin + positions[:, None, None, None] * line.direction  # (chunk, C, H, W)
            model(inputs)[:, OUTPUT].sum().backward()
            gradients.append(positions.grad.double())
    return torch.cat(gradients)


def autocorrelation(signal: torch.Tensor, max_lag: int = MAX_LAG) -> list[float]:
    """The sample autocorrelation function of a sequence, lags 0..max_lag.

    r(k) = sum_i (g_i - mean)(g_{i+k} - mean) / sum_i (g_i - mean)^2, the standard (Box-Jenkins) estimator: its
    sum over all N points at every lag keeps |r(k)| <= 1. A constant sequence (standard deviation below
    CONSTANT_RTOL of its largest magnitude, zero included) has no variance to normalise by; it is returned as
    perfectly correlated, r(k) = 1 at every lag: a gradient that does not change along the line is the
    opposite of shattered (a linear function's).
    """
    values = signal.double().flatten()
    if not 0 <= max_lag < len(values):
        raise ValueError(f"max_lag must be from 0 to {len(values) - 1} for {len(values)} points; got {max_lag}.")
    centred = values - values.mean()
    if centred.std(correction=0) <= CONSTANT_RTOL * values.abs().max():
        return [1.0] * (max_lag + 1)
    energy = centred.square().sum()
    return [1.0] + [float((centred[:-lag] * centred[lag:]).sum() / energy) for lag in range(1, max_lag + 1)]


def init_model(depth: int, residual: bool, seed: int, *, dtype: torch.dtype = PRECISION) -> ResNet:
    """The CIFAR net at initialisation, its weights seeded: a plain net and its residual twin get the same
    weights (option A shortcuts have none), so the shortcuts are all that differs between them."""
    with torch.random.fork_rng(devices=[]):  # the caller's random stream stays untouched
        torch.manual_seed(seed)
        return build_model(cifar_spec(depth, residual=residual)).to(dtype).eval()


def net_shattering(model: ResNet, line: Line, seed: int) -> ShatteringPoint:
    with line_statistics(model, line.inputs()):
        gradients = line_gradient(model, line)
    correlation = autocorrelation(gradients)
    return ShatteringPoint(model=model.spec.name, depth=model.spec.depth, residual=model.spec.residual, seed=seed,
                           lag1_autocorrelation=correlation[1], positions=line.positions.tolist(),
                           gradients=gradients.tolist(), autocorrelation=correlation)


def shattering(depths, *, points: int = 256, seed: int = 0, dtype: torch.dtype = PRECISION,
               progress: Callable[[int, int], None] | None = None) -> list[ShatteringPoint]:
    """The plain and the residual net of each depth (sorted), at initialisation, along one seeded line.

    `progress(done, total)` is called once before the first net and after each.
    """
    depths = check_depths(depths)
    if isinstance(points, bool) or not isinstance(points, int) or not MIN_POINTS <= points <= MAX_POINTS:
        raise UserError(f"--points must be a whole number from {MIN_POINTS} to {MAX_POINTS}; got {points!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"--seed must be a whole number of at least 0; got {seed!r}.")
    line = make_line(points, seed, dtype=dtype)
    nets = [(depth, residual) for depth in depths for residual in (False, True)]
    results = []
    for done, (depth, residual) in enumerate(nets):
        if progress is not None:
            progress(done, len(nets))
        results.append(net_shattering(init_model(depth, residual, seed, dtype=dtype), line, seed))
    if progress is not None:
        progress(len(nets), len(nets))
    return results
