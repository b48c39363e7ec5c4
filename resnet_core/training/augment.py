"""Augmentation and normalisation in batches on the training device, and the random draws that pick them.

Augmentation (§4.2: pad 4 + random 32x32 crop + horizontal flip; §3.4: scale jitter + 224 crop) is a few tensor
ops on a whole uint8 batch, ~100k images/s, instead of per-sample PIL transforms in DataLoader workers that steal
the two cores the model needs. Random draws come from generators seeded by (seed, epoch) and (seed, iteration),
so a resumed run sees exactly the batches the uninterrupted one would have.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

CIFAR_PADDING = 4  # pixels on each side before the random crop (§4.2)


def resize_square(images: torch.Tensor, size: int) -> torch.Tensor:
    """Shorter side to `size`, then the central square: uint8 (B, 3, H, W) -> (B, 3, size, size)."""
    height, width = images.shape[-2:]
    if (height, width) == (size, size):
        return images
    scale = size / min(height, width)
    new_size = (max(size, round(height * scale)), max(size, round(width * scale)))
    resized = F.interpolate(images.float(), size=new_size, mode="bilinear", antialias=True, align_corners=False)
    top, left = (new_size[0] - size) // 2, (new_size[1] - size) // 2
    return resized[..., top:top + size, left:left + size].round().clamp(0, 255).to(torch.uint8)



def epoch_order(count: int, seed: int, epoch: int) -> torch.Tensor:
    """The training images' order in `epoch`: a function of (seed, epoch) alone, so a resumed run repeats it."""
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def iteration_generator(seed: int, iteration: int) -> torch.Generator:
    # Offset from the epoch orders' seeds so the two streams never coincide.
    return torch.Generator().manual_seed(seed * 1_000_003 + 500_000 + iteration)


def pad_crop_flip(images: torch.Tensor, generator: torch.Generator, padding: int = CIFAR_PADDING) -> torch.Tensor:
    """§4.2: zero-pad `padding` pixels, take a random crop of the original size, flip half: uint8 (B, 3, S, S)."""
    batch, _, size, _ = images.shape
    offsets = torch.randint(2 * padding + 1, (2, batch), generator=generator).to(images.device)
    flips = (torch.rand(batch, generator=generator) < 0.5).to(images.device)
    padded = F.pad(images, (padding,) * 4)  # (B, 3, S+2p, S+2p)
    steps = torch.arange(size, device=images.device)
    rows = offsets[0, :, None] + steps  # (B, S)
    cols = offsets[1, :, None] + torch.where(flips[:, None], steps.flip(0), steps)  # a flip is reversed columns
    batch_index = torch.arange(batch, device=images.device)[:, None, None, None]
    channel_index = torch.arange(3, device=images.device)[None, :, None, None]
    return padded[batch_index, channel_index, rows[:, None, :, None], cols[:, None, None, :]]


def scale_crop_flip(images: torch.Tensor, generator: torch.Generator, crop: int,
                    scale_range: tuple[int, int] = (256, 480)) -> torch.Tensor:
    """§3.4: shorter side resized at random in `scale_range` (one scale per batch, so the batch stays one
    tensor), a random `crop`-square, flipped half the time: uint8 (B, 3, S, S) -> (B, 3, crop, crop)."""
    batch = images.shape[0]
    scale = int(torch.randint(scale_range[0], scale_range[1] + 1, (1,), generator=generator))
    scaled = resize_square(images, scale)
    top, left = torch.randint(scale - crop + 1, (2,), generator=generator).tolist()
    crops = scaled[..., top:top + crop, left:left + crop]
    flips = (torch.rand(batch, generator=generator) < 0.5).to(images.device)[:, None, None, None]
    return torch.where(flips, crops.flip(-1), crops)


def center_crop(images: torch.Tensor, crop: int) -> torch.Tensor:
    offset = (images.shape[-1] - crop) // 2
    return images[..., offset:offset + crop, offset:offset + crop]


def ten_crops(images: torch.Tensor, crop: int) -> torch.Tensor:
    """The standard 10-crop test (§3.4, [21]): four corners and the centre, and their mirrors: (10, B, 3, crop, crop)."""
    size = images.shape[-1]
    corners = [(0, 0), (0, size - crop), (size - crop, 0), (size - crop, size - crop)]
    crops = [images[..., top:top + crop, left:left + crop] for top, left in corners] + [center_crop(images, crop)]
    return torch.stack(crops + [view.flip(-1) for view in crops])


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 (x/255 - mean) / std; `mean` is (3,) per channel (§4.2) or (3, S, S) per pixel (§3.4)."""
    if mean.dim() == 1:
        mean = mean[:, None, None]
    return (images.float() / 255 - mean) / std[:, None, None]


@dataclass(frozen=True)
class Pipeline:
    """How a recipe turns uint8 images into a network's float input, on the images' device."""

    augmentation: str  # "pad-crop" (§4.2) or "scale-crop" (§3.4)
    crop: int  # network input side, pixels
    mean: torch.Tensor  # (3,) per channel or (3, crop, crop) per pixel, [0, 1] units
    std: torch.Tensor  # (3,)
    scale_range: tuple[int, int] = (256, 480)

    @classmethod
    def for_recipe(cls, recipe, data: ImageData, input_size: int) -> "Pipeline":
        if recipe.per_pixel_mean:  # §3.4 subtracts the mean image and does not divide
            return cls(recipe.augmentation, input_size, center_crop(data.pixel_mean, input_size),
                       torch.ones(3, device=data.pixel_mean.device), tuple(recipe.scale_range))
        return cls(recipe.augmentation, input_size, data.channel_mean, data.channel_std, tuple(recipe.scale_range))

    def train_batch(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.augmentation == "scale-crop":
            crops = scale_crop_flip(images, generator, self.crop, self.scale_range)
        else:
            crops = pad_crop_flip(center_crop(images, self.crop), generator)
        return normalize(crops, self.mean, self.std)

    def test_batch(self, images: torch.Tensor) -> torch.Tensor:
        return normalize(center_crop(images, self.crop), self.mean, self.std)

    def ten_crop_batch(self, images: torch.Tensor) -> torch.Tensor:
        """(10, B, 3, crop, crop): the views whose softmax scores 10-crop testing averages."""
        return normalize(ten_crops(images, self.crop), self.mean, self.std)
