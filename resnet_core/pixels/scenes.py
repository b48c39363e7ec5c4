"""Scenes to segment, composed of a classification dataset's images: each pastes one to three of them, resized to
squares of random sides, at random places on a canvas, later ones over earlier ones, and labels every pixel with the
class of the image on top there (0: the background).

    scenes = compose_scenes(load_data("cifar10"), train_count=10_000, test_count=2_000, seed=0)
    scenes.classes                   # ("background", "airplane", …, "truck"): label k + 1 is the dataset's class k
    scenes.background_share("test")  # the pixel accuracy of a net that answers "background" everywhere

Train scenes are made of the training images, test scenes of the test images, so no test pixel was seen in
training. A pure function of (data, layout, counts, seed): two calls give identical tensors, and the test scenes do
not depend on the number of train scenes (each split draws from a generator of its own).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch

from ..errors import UserError
from ..training.augment import resize_square
from ..training.data import ImageData

Background = Literal["flat", "noise"]
Split = Literal["train", "test"]
BACKGROUNDS = ("flat", "noise")
SPLITS = ("train", "test")
BACKGROUND_CLASS = "background"  # label 0 of every mask
# Masks are uint8: 10,000 scenes of 64 x 64 cost 41 MB, not int64's 328 MB. Label 0 is the background.
MOST_OBJECT_CLASSES = 255
NOISE_STD = 32.0  # pixel levels (of 0-255): the spread of the noise background around its scene's colour
# Scenes composed at once: a float canvas of 10,000 64 x 64 scenes would cost 490 MB.
COMPOSE_CHUNK = 1024
# A scene's boxes (N, most objects, 5) hold, per pasted image in paste order: its index among the split's images,
# its label in the scenes' classes, the top and left of its square and the square's side, in pixels. A scene with
# fewer images than the most has rows of zeros (side 0) after its own.
BOX_COLUMNS = ("source", "label", "top", "left", "side")
# Offsets of each split's generator from the seed, so neither stream depends on the other's length.
SPLIT_STREAMS = {"train": 0, "test": 1}


@dataclass(frozen=True)
class SceneLayout:
    """How a scene is composed."""

    canvas: int = 64  # pixels, the side of the square scene
    objects: tuple[int, int] = (1, 3)  # fewest and most images pasted per scene
    # pixels: a pasted image's square side is drawn uniformly from these (CIFAR's 32 shrunk or enlarged)
    object_sides: tuple[int, int] = (16, 40)
    background: Background = "noise"  # one random colour per scene, with per-pixel Gaussian noise, or flat

    def __post_init__(self) -> None:
        if not _whole(self.canvas, 1):
            raise UserError(f"The canvas must be a whole number of pixels of at least 1; got {self.canvas!r}.")
        fewest, most = self.objects
        if not (_whole(fewest, 1) and _whole(most, fewest)):
            raise UserError(f"objects must be two whole numbers, the fewest (at least 1) and the most images per "
                            f"scene; got {self.objects!r}.")
        smallest, largest = self.object_sides
        if not (_whole(smallest, 1) and _whole(largest, smallest) and largest <= self.canvas):
            raise UserError(f"object_sides must be two whole numbers of pixels, from at least 1 up to the canvas "
                            f"({self.canvas}); got {self.object_sides!r}.")
        if self.background not in BACKGROUNDS:
            raise UserError(f"Unknown background {self.background!r}; allowed: {', '.join(BACKGROUNDS)}.")


def _whole(value, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


@dataclass(frozen=True)
class Scenes:
    """Composed scenes and their per-pixel labels: images uint8 (N, 3, canvas, canvas), masks uint8
    (N, canvas, canvas), boxes int64 (N, most objects, 5) as BOX_COLUMNS describes."""

    source: str  # the ImageData's name
    classes: tuple[str, ...]  # ("background", *the data's classes)
    layout: SceneLayout
    seed: int
    train_images: torch.Tensor
    train_masks: torch.Tensor
    train_boxes: torch.Tensor
    test_images: torch.Tensor
    test_masks: torch.Tensor
    test_boxes: torch.Tensor

    def split(self, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
        """The images and masks of `split` (train or test)."""
        if split not in SPLITS:
            raise UserError(f"Unknown split {split!r}; allowed: {', '.join(SPLITS)}.")
        return getattr(self, f"{split}_images"), getattr(self, f"{split}_masks")

    def pixel_counts(self, split: Split) -> torch.Tensor:
        """int64 (classes,): how many pixels of `split`'s masks each class labels; they add up to N x canvas²."""
        return torch.bincount(self.split(split)[1].flatten(), minlength=len(self.classes))

    def background_share(self, split: Split) -> float:
        """The fraction of `split`'s pixels that are background."""
        counts = self.pixel_counts(split)
        return counts[0].item() / counts.sum().item()

    def to(self, device: torch.device | str) -> "Scenes":
        return replace(self, **{f"{split}_{part}": getattr(self, f"{split}_{part}").to(device)
                                for split in SPLITS for part in ("images", "masks", "boxes")})


def compose_scenes(data: ImageData, layout: SceneLayout = SceneLayout(), *, train_count: int = 10_000,
                   test_count: int = 2_000, seed: int = 0) -> Scenes:
    """`train_count` scenes of `data`'s training images and `test_count` of its test images (see the module)."""
    check_counts(train_count, test_count)
    if len(data.classes) > MOST_OBJECT_CLASSES:
        raise UserError(f"Scenes label their pixels in uint8 masks, so at most {MOST_OBJECT_CLASSES} classes; "
                        f"{data.name} has {len(data.classes)}.")
    if data.train_sizes is not None or data.test_sizes is not None:
        raise UserError(f"{data.name} holds images of different sizes; load it as squares (load_data without "
                        "shorter_side) to compose scenes of it.")
    splits = {}
    for split in SPLITS:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + SPLIT_STREAMS[split])
        images, labels = (getattr(data, f"{split}_{part}").cpu() for part in ("images", "labels"))
        count = train_count if split == "train" else test_count
        splits.update(zip((f"{split}_images", f"{split}_masks", f"{split}_boxes"),
                          _compose(images, labels, count, layout, generator)))
    return Scenes(source=data.name, classes=(BACKGROUND_CLASS, *data.classes), layout=layout, seed=seed, **splits)


def check_counts(train_count: int, test_count: int) -> None:
    """A one-line UserError unless both counts are whole numbers of scenes of at least 1."""
    for name, count in (("train_count", train_count), ("test_count", test_count)):
        if not _whole(count, 1):
            raise UserError(f"{name} must be a whole number of scenes of at least 1; got {count!r}.")


def _compose(images: torch.Tensor, labels: torch.Tensor, count: int, layout: SceneLayout,
             generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`count` scenes of `images` (uint8 (M, 3, S, S)) with their masks and boxes; every draw from `generator`."""
    side, (fewest, most) = layout.canvas, layout.objects
    shown = torch.randint(fewest, most + 1, (count, 1), generator=generator)
    sources = torch.randint(len(images), (count, most), generator=generator)
    sides = torch.randint(layout.object_sides[0], layout.object_sides[1] + 1, (count, most), generator=generator)
    tops = (torch.rand(count, most, generator=generator) * (side - sides + 1)).long()
    lefts = (torch.rand(count, most, generator=generator) * (side - sides + 1)).long()
    present = torch.arange(most) < shown  # (count, most): the first `shown` of each scene's draws
    boxes = torch.stack([sources, labels[sources] + 1, tops, lefts, sides], dim=-1) * present[..., None]
    colours = torch.randint(256, (count, 3, 1, 1), generator=generator).float()
    scenes = torch.empty(count, 3, side, side, dtype=torch.uint8)
    masks = torch.zeros(count, side, side, dtype=torch.uint8)
    for start in range(0, count, COMPOSE_CHUNK):
        chunk = slice(start, min(start + COMPOSE_CHUNK, count))
        background = colours[chunk].expand(-1, -1, side, side)
        if layout.background == "noise":
            background = background + NOISE_STD * torch.randn(background.shape, generator=generator)
        scenes[chunk] = background.round().clamp(0, 255).to(torch.uint8)
        _paste(scenes[chunk], masks[chunk], boxes[chunk], images)
    return scenes, masks, boxes


def _paste(scenes: torch.Tensor, masks: torch.Tensor, boxes: torch.Tensor, images: torch.Tensor) -> None:
    """Paste the boxes' images into `scenes` and their labels into `masks`, in place, each scene's in box order."""
    scene_index, position = (boxes[..., 4] > 0).nonzero(as_tuple=True)  # scene by scene, each in paste order
    placed = boxes[scene_index, position]  # (P, 5)
    pasted: list[torch.Tensor | None] = [None] * len(placed)
    # One resize per side rather than per image: at most 25 calls per chunk instead of ~2,000.
    for side in placed[:, 4].unique().tolist():
        which = (placed[:, 4] == side).nonzero().flatten()
        for index, image in zip(which.tolist(), resize_square(images[placed[which, 0]], side)):
            pasted[index] = image
    for scene, (_, label, top, left, side), image in zip(scene_index.tolist(), placed.tolist(), pasted):
        scenes[scene, :, top:top + side, left:left + side] = image
        masks[scene, top:top + side, left:left + side] = label
