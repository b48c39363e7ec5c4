"""Lesion study (Veit, Wilber, Belongie 2016, "Residual Networks Behave Like Ensembles of Relatively Shallow
Networks", §4, Fig. 3 and 5): delete blocks of a trained net at test time and measure its test error.

    study = lesion_study(model, data, images=1000, random_k=10, draws=10, seed=0)
    for record in iter_lesions(model, data, images=1000):   # IntactNet, then BlockLesion…, then RandomLesion…
        store(record)

What a deleted block computes. Veit et al. change y_i = y_{i-1} + f_i(y_{i-1}) into y_i = y_{i-1}, "leaving the skip
connection (or downsampling projection, if any) untouched". Our blocks (He et al. Fig. 2) add, then apply a ReLU, so
a deleted block computes relu_out(shortcut(x)): what zeroing its residual branch gives. Every block's input comes out
of a ReLU, so with the identity and zero-pad shortcuts of the CIFAR nets the ReLU changes nothing and the output is
y_{i-1} exactly. A plain block has no shortcut; it gets the one its residual twin has: the identity, or option A's
zero-pad where it changes shape. A plain net of option B or C has no trained projection to stand in for a
shape-changing block, so such a net cannot be lesioned (UserError).

Speed. Nothing is copied per deletion and nothing is recomputed that a deletion cannot change: deleting block i
leaves blocks 0…i-1 as they were, so the single-block pass walks the intact activations of all the images forward
one block at a time and runs only blocks i+1… for deletion i (ResNet-56: 404 block passes, against 756 for a full
pass per deletion). Memory: the normalised images and two activations of every image at one block's input (~140 KB
an image for CIFAR nets, 0.14 GB for 1,000 images).
"""
from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..errors import UserError
from ..nets.blocks import ZeroPadShortcut
from ..nets.model import ResNet
from ..training.data import ImageData
from .trained import test_pipeline

# Images per forward pass: for ResNet-56 on 2 CPU threads (fp32, channels-last) 100 and 250 ran alike, 1,000 2x
# slower.
BATCH_SIZE = 250
DEFAULT_IMAGES = 1000  # test images, when not given


class SkipPath(nn.Module):
    """A deleted block: its shortcut and its output ReLU, without its residual branch. Shares the block's modules."""

    def __init__(self, shortcut: nn.Module, relu_out: nn.Module) -> None:
        super().__init__()
        self.shortcut, self.relu_out = shortcut, relu_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu_out(self.shortcut(x))


@dataclass(frozen=True)
class LesionSite:
    """A block that can be deleted: its name in the net (`layer2.3`), the block, and what stands in for it."""

    name: str
    block: nn.Module
    skip: SkipPath
    downsampling: bool  # it changes the shape (stride 2, more channels): its skip path is a zero-pad or projection


@dataclass(frozen=True)
class IntactNet:
    images: int
    error: float  # fraction of the chosen test images classified wrong, no block deleted


@dataclass(frozen=True)
class BlockLesion:
    block: str
    downsampling: bool
    error: float


@dataclass(frozen=True)
class RandomLesion:
    k: int
    draw: int  # 0-based, within this k
    blocks: tuple[str, ...]  # the k deleted blocks, in forward order
    error: float


LesionRecord = IntactNet | BlockLesion | RandomLesion


@dataclass(frozen=True)
class RandomDeletions:
    k: int
    errors: list[float]  # one per draw, in draw order


@dataclass(frozen=True)
class LesionStudy:
    images: int
    baseline_error: float
    blocks: list[BlockLesion]  # every block, in forward order
    random: list[RandomDeletions]  # k = 1…K

    def to_dict(self) -> dict:
        """The CLI's `--json`: errors as fractions."""
        return {"baseline_error": self.baseline_error, "blocks": [asdict(block) for block in self.blocks],
                "random": [asdict(deletions) for deletions in self.random]}


def lesion_sites(model: ResNet) -> list[LesionSite]:
    """Every block of `model` in forward order, with its skip path; UserError for a plain net whose shape-changing
    blocks have no parameter-free shortcut (option B or C)."""
    sites = []
    for stage_index, stage in enumerate(model.stages, start=1):
        for block_index, block in enumerate(stage):
            name = f"layer{stage_index}.{block_index}"
            in_channels, out_channels, stride = _shape_change(block)
            downsampling = stride != 1 or in_channels != out_channels
            if block.residual:
                shortcut = block.downsample
            elif not downsampling:
                shortcut = nn.Identity()
            elif model.spec.shortcut == "A":
                shortcut = ZeroPadShortcut(in_channels, out_channels, stride)
            else:
                raise UserError(
                    f"{model.spec.name} (shortcut option {model.spec.shortcut}) cannot lose block {name}: it changes "
                    f"the shape ({in_channels}→{out_channels} channels, stride {stride}) and a plain net has no "
                    "trained projection to stand in for it; only plain nets of option A (zero-pad) can.")
            sites.append(LesionSite(name, block, SkipPath(shortcut, block.relu_out), downsampling))
    return sites


def _shape_change(block: nn.Module) -> tuple[int, int, int]:
    """(input channels, output channels, stride) of a block, read off the convs of its residual branch (the
    block's own Conv2d children; a projection shortcut is a Sequential, not one of them)."""
    convs = [child for child in block.children() if isinstance(child, nn.Conv2d)]
    return convs[0].in_channels, convs[-1].out_channels, math.prod(conv.stride[0] for conv in convs)


def image_count(data: ImageData, images: int | None = None) -> int:
    """The test images a study measures on: `images`, else DEFAULT_IMAGES or all of a smaller test set."""
    return min(DEFAULT_IMAGES, len(data.test_labels)) if images is None else images


def iter_lesions(model: ResNet, data: ImageData, *, images: int | None = None, random_k: int = 0, draws: int = 10,
                 seed: int = 0, batch_size: int = BATCH_SIZE) -> Iterator[LesionRecord]:
    """Measure and yield, one at a time: the intact net's error, the error with each block deleted (forward order),
    then for k = 1…`random_k` the error with k blocks deleted at once, `draws` times each.

    The test images are `images` (default DEFAULT_IMAGES, or all of a smaller test set) of `data`'s test set drawn
    without replacement with `seed`; the k blocks of a draw are drawn without replacement from all blocks by
    `random.Random(seed)`, k = 1 first, so a larger `random_k` keeps the smaller k's draws. A set of blocks already
    measured (every single block) is not measured again.
    `model` is left as it was: the study runs on a copy in eval mode (BN with its running statistics), fp32,
    channels-last (NCHW convs of ResNet-56 ran 2-20x slower on our CPUs, depending on the batch), on the model's
    device. Bad counts and undeletable blocks raise UserError at the call, before any record.
    """
    images = image_count(data, images)
    _check_counts(data, len(lesion_sites(model)), images, random_k, draws)
    return _lesions(model, data, images, random_k, draws, seed, batch_size)


def _lesions(model: ResNet, data: ImageData, images: int, random_k: int, draws: int, seed: int,
             batch_size: int) -> Iterator[LesionRecord]:
    net = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)
    sites = lesion_sites(net)
    steps = _steps(net, sites)  # step 0 is the stem, step i + 1 the block of site i, the last one the head
    device = next(net.parameters()).device
    chosen = torch.randperm(len(data.test_labels), generator=torch.Generator().manual_seed(seed))[:images]
    labels = data.test_labels[chosen].to(device)
    # Not a `with` around the yields: inference mode is per thread and would leak into the caller between records.
    with torch.inference_mode():
        inputs = test_pipeline(net, data).test_batch(data.test_images[chosen].to(device))
    inputs = inputs.contiguous(memory_format=torch.channels_last)

    def error(activations: torch.Tensor, start: int, deleted: dict[int, nn.Module]) -> float:
        logits = _run(steps, activations, start, len(steps), deleted, batch_size)  # (N, classes)
        return int((logits.argmax(-1) != labels).sum()) / images  # a count over N: no float32 rounding

    activations = _run(steps, inputs, 0, 1, {}, batch_size)  # the input of site 0's block, (N, C, H, W)
    yield IntactNet(images, error(activations, 1, {}))
    measured: dict[frozenset[int], float] = {}
    for index, site in enumerate(sites):
        measured[frozenset({index})] = error(activations, index + 1, {index + 1: site.skip})
        yield BlockLesion(site.name, site.downsampling, measured[frozenset({index})])
        if index + 1 < len(sites):
            activations = _run(steps, activations, index + 1, index + 2, {}, batch_size)
    del activations  # the random draws start from the images
    draw_blocks = random.Random(seed)
    for k in range(1, random_k + 1):
        for draw in range(draws):
            deleted = frozenset(draw_blocks.sample(range(len(sites)), k))
            if deleted not in measured:
                measured[deleted] = error(inputs, 0, {index + 1: sites[index].skip for index in deleted})
            yield RandomLesion(k, draw, tuple(sites[index].name for index in sorted(deleted)), measured[deleted])


def lesion_study(model: ResNet, data: ImageData, *, images: int | None = None, random_k: int = 0, draws: int = 10,
                 seed: int = 0, progress: Callable[[int, int, float | None], None] | None = None,
                 batch_size: int = BATCH_SIZE) -> LesionStudy:
    """`iter_lesions` collected into one result; `progress(done, total, error)` after each measurement with its
    error (and once at 0, with None)."""
    records = iter_lesions(model, data, images=images, random_k=random_k, draws=draws, seed=seed,
                           batch_size=batch_size)  # bad input raises here, before any progress is drawn
    total = 1 + len(lesion_sites(model)) + random_k * draws
    if progress:
        progress(0, total, None)
    intact, blocks, random_errors = None, [], {}
    for done, record in enumerate(records, start=1):
        if isinstance(record, IntactNet):
            intact = record
        elif isinstance(record, BlockLesion):
            blocks.append(record)
        else:
            random_errors.setdefault(record.k, []).append(record.error)
        if progress:
            progress(done, total, record.error)
    return LesionStudy(intact.images, intact.error, blocks,
                       [RandomDeletions(k, errors) for k, errors in random_errors.items()])


def _check_counts(data: ImageData, blocks: int, images: int, random_k: int, draws: int) -> None:
    test_images = len(data.test_labels)
    if not 1 <= images <= test_images:
        raise UserError(f"The lesion study takes between 1 and {test_images} test images of {data.name}; "
                        f"got {images}.")
    if not 0 <= random_k <= blocks:
        raise UserError(f"The net has {blocks} blocks, so random deletions take k from 1 to at most {blocks} "
                        f"(0: none); got {random_k}.")
    if random_k and draws < 1:
        raise UserError(f"Random deletions need at least 1 draw per k; got {draws}.")


def _steps(net: ResNet, sites: list[LesionSite]) -> list[nn.Module]:
    """The net as the list ResNet.forward runs: stem, every block, head (modules shared with `net`, not copied)."""
    stem = [net.conv1, net.bn1, net.relu] + ([net.maxpool] if net.spec.family == "imagenet" else [])
    return [nn.Sequential(*stem), *(site.block for site in sites), nn.Sequential(net.avgpool, net.flatten, net.fc)]


@torch.inference_mode()
def _run(steps: list[nn.Module], activations: torch.Tensor, start: int, stop: int, replaced: dict[int, nn.Module],
         batch_size: int) -> torch.Tensor:
    """steps[start:stop] applied to `activations` (the input of steps[start]), those in `replaced` swapped, batch by
    batch; the outputs of all the images."""
    outputs = []
    for batch in activations.split(batch_size):
        for index in range(start, stop):
            batch = replaced.get(index, steps[index])(batch)
        outputs.append(batch)
    return torch.cat(outputs)
